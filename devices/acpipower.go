package devices

import "sync"

// Offsets of the ACPI fixed-hardware registers from their base (0x600), and
// the size to insert ACPIPower with. The FADT describes 0x600-0x603 as the
// PM1a event block (PM1a_EVT_BLK, PM1_EVT_LEN 4), 0x604-0x605 as the PM1a
// control block (PM1a_CNT_BLK, PM1_CNT_LEN 2) and 0x606 as RESET_REG.
const (
	acpiPM1Status  = 0 // 16-bit PM1 status, 0x600
	acpiPM1Enable  = 2 // 16-bit PM1 enable, 0x602
	acpiPM1Control = 4 // 16-bit PM1 control, 0x604
	acpiReset      = 6 // 8-bit reset register, 0x606; 0x607 is reserved

	// ACPIPowerSize is the size to insert an ACPIPower with, at 0x600.
	ACPIPowerSize = 8
)

// PM1 status register bits (ACPI 6.x, §4.8.3.1.1 "PM1 Status Registers"):
// TMR_STS (0), BM_STS (4), GBL_STS (5), PWRBTN_STS (8), SLPBTN_STS (9),
// RTC_STS (10), PCIEXP_WAKE_STS (14) and WAK_STS (15), all write 1 to clear.
// Only WAK_STS is ever set here: there is no timer, bus master, firmware,
// button or RTC alarm to raise the others.
const acpiWakSts = 1 << 15

// acpiPM1EnableBits are the bits of the PM1 enable register (§4.8.3.1.2
// "PM1 Enable Registers"): TMR_EN (0), GBL_EN (5), PWRBTN_EN (8), SLPBTN_EN
// (9), RTC_EN (10) and PCIEXP_WAKE_DIS (14). They read back what was
// written, which ACPICA checks: it enables GBL_EN at boot and reports the
// global lock missing if the bit does not stick (acpi_enable_event). The
// reserved bits read 0.
const acpiPM1EnableBits = 1<<0 | 1<<5 | 1<<8 | 1<<9 | 1<<10 | 1<<14

// PM1 control register bits (§4.8.3.2.1 "PM1 Control Registers").
const (
	// acpiSCIEn (bit 0) selects SCI rather than SMI for power management
	// events. It always reads 1: the platform is always in ACPI mode (the
	// FADT has no SMI_CMD to switch modes with), and writes do not change
	// it.
	acpiSCIEn = 1 << 0
	// acpiBMRld (bit 1) lets bus master requests wake a processor from C3.
	// Read/write; with no C3 it has no effect.
	acpiBMRld = 1 << 1
	// acpiSlpTypShift and acpiSlpTypMask locate SLP_TYPx (bits 12:10),
	// read/write: the sleep type the OS is about to enter.
	acpiSlpTypShift = 10
	acpiSlpTypMask  = 0x7 << acpiSlpTypShift
	// acpiSlpEn (bit 13), write-only and read as 0, enters the sleep type
	// in SLP_TYPx.
	acpiSlpEn = 1 << 13
	// GBL_RLS (bit 2, write-only) would signal the firmware that the OS
	// released the global lock; there is no firmware, so it is ignored
	// and reads 0, like the reserved bits 3-8, 9 ("ignored") and 14-15.

	// acpiPM1ControlStored are the bits the register keeps.
	acpiPM1ControlStored = acpiBMRld | acpiSlpTypMask
)

const (
	// ACPISleepTypeS5 is the SLP_TYP value that powers the machine off:
	// the value the DSDT's \_S5 package must give. No other sleep state is
	// implemented, so the DSDT should not define \_S1 to \_S4.
	ACPISleepTypeS5 = 5

	// ACPIResetValue is the value that, written to the reset register,
	// resets the machine: the FADT's RESET_VALUE (ACPI 6.x, §4.8.3.6
	// "Reset Register"; §5.2.9 "Fixed ACPI Description Table").
	ACPIResetValue = 0x01
)

// ACPIPower is the fixed hardware of a classic (not hardware-reduced) ACPI
// platform that a guest uses to power off and reset: the PM1a event block
// (ACPI 6.x §4.8.3.1, "PM1 Event Grouping"), the PM1a control block
// (§4.8.3.2, "PM1 Control Grouping") and the reset register (§4.8.3.6).
//
//	0x600  PM1 status, 16-bit, write 1 to clear: only WAK_STS (bit 15)
//	       is ever set
//	0x602  PM1 enable, 16-bit, read/write
//	0x604  PM1 control, 16-bit: SCI_EN (bit 0) reads 1; writing SLP_EN
//	       (bit 13) with SLP_TYP (bits 12:10) = ACPISleepTypeS5 calls
//	       poweroff. Linux writes 0x1401, then 0x3401.
//	0x606  reset, 8-bit, write-only: writing ACPIResetValue calls reset
//	0x607  reserved
//
// No fixed event is ever signalled, so the SCI is never raised and
// ACPIPower needs no IRQ line.
//
// A sleep request for any other state is not entered. The register then
// sets WAK_STS at once, as if the machine had woken immediately: ACPICA
// (acpi_hw_legacy_sleep) spins reading PM1 status until WAK_STS is set, and
// a request that is never entered would otherwise hang the vCPU forever.
// With no \_S1-\_S4 in the DSDT, Linux never asks.
//
// Accesses of any size at any offset are split into bytes, each updating
// its half of a 16-bit register: SLP_TYP and SLP_EN share the high byte of
// PM1 control, so a byte write to 0x605 powers off just as a 16-bit write
// to 0x604 does. The write-only reset register and the reserved byte read
// as 0 and 0xFF. ACPIPower is safe for concurrent use.
type ACPIPower struct {
	poweroff func()
	reset    func()

	mu sync.Mutex
	// sts, en and cnt are PM1 status, enable and control, holding only the
	// bits that can be set: WAK_STS, acpiPM1EnableBits and
	// acpiPM1ControlStored.
	sts, en, cnt uint16
}

// NewACPIPower returns the PM1 and reset registers, calling poweroff when
// the guest enters S5 and reset when it writes the reset value. Callbacks
// run on the vCPU thread, without the device's lock held, and may be called
// more than once; nil callbacks are ignored.
func NewACPIPower(poweroff, reset func()) *ACPIPower {
	if poweroff == nil {
		poweroff = func() {}
	}
	if reset == nil {
		reset = func() {}
	}
	return &ACPIPower{poweroff: poweroff, reset: reset}
}

// Read implements Device.Read.
func (a *ACPIPower) Read(offset uint64, data []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := range data {
		off := offset + uint64(i)
		if offset >= ACPIPowerSize || off >= ACPIPowerSize {
			data[i] = 0xFF
			continue
		}
		var reg uint16
		switch off &^ 1 {
		case acpiPM1Status:
			reg = a.sts
		case acpiPM1Enable:
			reg = a.en
		case acpiPM1Control:
			reg = a.cnt | acpiSCIEn
		case acpiReset:
			reg = 0xFF00 // reset reads 0, the reserved byte 0xFF
		}
		data[i] = byte(reg >> (8 * (off & 1)))
	}
}

// Write implements Device.Write.
func (a *ACPIPower) Write(offset uint64, data []byte) {
	var poweroff, reset bool
	a.mu.Lock()
	for i, v := range data {
		off := offset + uint64(i)
		if offset >= ACPIPowerSize || off >= ACPIPowerSize {
			break
		}
		shift := 8 * (off & 1)
		lane := uint16(0xFF) << shift // the half of the register v covers
		w := uint16(v) << shift
		switch off &^ 1 {
		case acpiPM1Status:
			a.sts &^= w
		case acpiPM1Enable:
			a.en = a.en&^lane | w&acpiPM1EnableBits
		case acpiPM1Control:
			a.cnt = a.cnt&^lane | w&acpiPM1ControlStored
			if w&acpiSlpEn == 0 {
				break
			}
			if (a.cnt&acpiSlpTypMask)>>acpiSlpTypShift == ACPISleepTypeS5 {
				poweroff = true
			} else {
				a.sts |= acpiWakSts
			}
		case acpiReset:
			if off == acpiReset && v == ACPIResetValue {
				reset = true
			}
		}
	}
	a.mu.Unlock()
	if poweroff {
		a.poweroff()
	}
	if reset {
		a.reset()
	}
}

// RegisterName implements RegisterNamer.
func (a *ACPIPower) RegisterName(offset uint64, write bool) string {
	switch offset {
	case acpiPM1Status, acpiPM1Status + 1:
		return "PM1_STS"
	case acpiPM1Enable, acpiPM1Enable + 1:
		return "PM1_EN"
	case acpiPM1Control, acpiPM1Control + 1:
		return "PM1_CNT"
	case acpiReset:
		return "RESET"
	}
	return ""
}
