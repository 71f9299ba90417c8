package acpi

import "encoding/binary"

// Fixed ACPI Description Table, revision 6 (ACPI 6.5 §5.2.9), for a classic
// (not hardware-reduced) ACPI platform: the pointers to the FACS and the
// DSDT, the SCI interrupt, the PM1a event and control blocks (§4.8.3.1,
// §4.8.3.2), the reset register (§4.8.3.6), and the boot architecture flags.
//
// Why not hardware-reduced (HW_REDUCED_ACPI, §4.1), which would need no SCI,
// FACS or PM1 blocks: Linux on x86 then assumes a platform without legacy
// hardware and installs null_legacy_pic in place of the 8259 PIC
// (arch/x86/kernel/acpi/boot.c, acpi_reduced_hw_init), so ISA IRQs 0-15
// never get their I/O APIC routes and the legacy devices fail to probe or
// to request their IRQ: the i8042, the CMOS RTC (probe fails with -22) and
// the 8250 on IRQ 4. A classic platform is what a PC is, and what QEMU's pc
// and q35 machines describe.
//
// What the platform leaves out, as the spec and ACPICA allow:
//
//   - SMI_CMD, ACPI_ENABLE and ACPI_DISABLE are zero: the platform is always
//     in ACPI mode (SCI_EN reads 1), and ACPICA skips the mode switch when
//     SMI_CMD is zero (acpi_hw_get_mode).
//   - No PM timer (PM_TMR_BLK and PM_TMR_LEN zero): it is optional since
//     ACPI 5.0A, ACPICA checks only that its address and length are both
//     zero or both set, and Linux then does without the acpi_pm clocksource.
//   - No PM1b blocks, no PM2 control block, no GPE blocks.
//   - SLEEP_CONTROL_REG and SLEEP_STATUS_REG are zero: they are for
//     hardware-reduced platforms only.
//
// Each PM1a block is given twice, as a 32-bit port with a length (the
// ACPI 1.0 fields) and as a Generic Address Structure (the X_ fields),
// describing the same registers: ACPICA (tbfadt.c, acpi_tb_convert_fadt)
// warns at every boot when the two addresses differ or when the GAS bit
// width is not 8 times the length, and it resets a bit width other than
// its default (32 for PM1 event, 16 for PM1 control) with another warning.
//
// Field offsets, from the FADT format table of §5.2.9. Fields not listed
// stay zero.
const (
	fadtFirmwareCtrl  = 36  // uint32 FIRMWARE_CTRL, the FACS
	fadtDSDT          = 40  // uint32 DSDT
	fadtSCIInt        = 46  // uint16 SCI_INT
	fadtPM1aEvtBlk    = 56  // uint32 PM1a_EVT_BLK
	fadtPM1aCntBlk    = 64  // uint32 PM1a_CNT_BLK
	fadtPM1EvtLen     = 88  // uint8 PM1_EVT_LEN
	fadtPM1CntLen     = 89  // uint8 PM1_CNT_LEN
	fadtPLvl2Lat      = 96  // uint16 P_LVL2_LAT
	fadtPLvl3Lat      = 98  // uint16 P_LVL3_LAT
	fadtIAPCBootArch  = 109 // uint16 IAPC_BOOT_ARCH
	fadtFlags         = 112 // uint32 Flags
	fadtResetReg      = 116 // GAS RESET_REG
	fadtResetValue    = 128 // uint8 RESET_VALUE
	fadtMinorVersion  = 131 // uint8 FADT Minor Version
	fadtXFirmwareCtrl = 132 // uint64 X_FIRMWARE_CTRL
	fadtXDSDT         = 140 // uint64 X_DSDT
	fadtXPM1aEvtBlk   = 148 // GAS X_PM1a_EVT_BLK
	fadtXPM1aCntBlk   = 172 // GAS X_PM1a_CNT_BLK
	fadtHypervisorID  = 268 // uint64 Hypervisor Vendor Identity
	fadtLen           = 276 // length of a revision 6 FADT
)

const (
	// fadtRevision is the FADT Major Version of ACPI 6.x (§5.2.9).
	fadtRevision = 6
	// fadtMinor is the FADT Minor Version: ACPI 6.5.
	fadtMinor = 5
)

// PM1 block lengths in bytes (§4.8.3.1, §4.8.3.2): the event block holds the
// 16-bit status and enable registers, the control block one 16-bit register.
const (
	pm1EventLen   = 4
	pm1ControlLen = 2
)

// cStateUnsupported in P_LVL2_LAT and P_LVL3_LAT says that C2 and C3 are not
// supported (§5.2.9: a latency above 100 and 1000 microseconds
// respectively); QEMU writes the same value. Processors idle with HLT (C1).
const cStateUnsupported = 0x0FFF

// FADT Flags (ACPI 6.5 §5.2.9, "Fixed ACPI Description Table Fixed Feature
// Flags"). HW_REDUCED_ACPI (bit 20) stays clear.
const (
	// fadtWBINVD (bit 0): WBINVD flushes the caches correctly. The spec
	// requires processors of new systems to set it.
	fadtWBINVD = 1 << 0
	// fadtProcC1 (bit 2): C1 (HLT) is supported on all processors.
	fadtProcC1 = 1 << 2
	// fadtPwrButton (bit 4) says the power button, if any, is a control
	// method device rather than fixed hardware (with no such device: there
	// is no power button). Left clear, Linux would add a fixed-hardware
	// power button (LNXPWRBN) that nothing can press.
	fadtPwrButton = 1 << 4
	// fadtSlpButton (bit 5) says the same of the sleep button.
	fadtSlpButton = 1 << 5
	// fadtResetRegSup (bit 10) says RESET_REG is supported. Linux's
	// acpi_reboot, the first method of its default x86 reboot sequence,
	// requires it.
	fadtResetRegSup = 1 << 10
)

// IA-PC Boot Architecture Flags (ACPI 6.5 §5.2.9.3).
const (
	// bootArch8042 (bit 1): an 8042 keyboard controller is present. gvmm
	// emulates one. With the bit clear in an FADT of revision 2 or more,
	// Linux (acpi_parse_fadt) marks the i8042 firmware-absent and, as no
	// PNP device describes it either, its i8042 driver never probes ports
	// 0x60/0x64. (reboot=k writes the reset command 0xFE to port 0x64
	// directly and works either way.)
	bootArch8042 = 1 << 1
	// bootArchVGANotPresent (bit 2): there is no VGA hardware to probe.
	bootArchVGANotPresent = 1 << 2
)

// hypervisorVendorID is the FADT Hypervisor Vendor Identity (§5.2.9, ACPI
// 6.0 and later): eight bytes naming the hypervisor. Linux does not read it
// on x86; it tells a reader of the tables who wrote them.
const hypervisorVendorID = "GVMM    "

// buildFADT returns the FADT for cfg, pointing at the FACS at facsAddr and
// the DSDT at dsdtAddr.
func buildFADT(cfg Config, facsAddr, dsdtAddr uint64) []byte {
	t := newTable("FACP", fadtRevision, fadtLen)
	le := binary.LittleEndian
	// The FACS is given by exactly one pointer: FIRMWARE_CTRL when it lies
	// below 4 GiB, X_FIRMWARE_CTRL otherwise. ACPI 4.0 and 5.0 require
	// the other to be zero (ACPI 6 only says an OS that can use
	// X_FIRMWARE_CTRL ignores FIRMWARE_CTRL), fwts fails a FADT with both,
	// and Linux installs and logs the FACS twice when both are set. QEMU
	// and EDK2 set just one the same way.
	if facsAddr <= 0xFFFF_FFFF {
		le.PutUint32(t[fadtFirmwareCtrl:], uint32(facsAddr))
	} else {
		le.PutUint64(t[fadtXFirmwareCtrl:], facsAddr)
	}
	// §5.2.9: an OS that can use a non-zero X_DSDT ignores DSDT. ACPICA
	// warns when both are set and differ, so the 32-bit copy is written
	// only when the address fits, and is then equal.
	if dsdtAddr <= 0xFFFF_FFFF {
		le.PutUint32(t[fadtDSDT:], uint32(dsdtAddr))
	}
	le.PutUint64(t[fadtXDSDT:], dsdtAddr)

	le.PutUint16(t[fadtSCIInt:], uint16(cfg.SCIIRQ))
	le.PutUint32(t[fadtPM1aEvtBlk:], uint32(cfg.PM1EventPort))
	le.PutUint32(t[fadtPM1aCntBlk:], uint32(cfg.PM1ControlPort))
	t[fadtPM1EvtLen] = pm1EventLen
	t[fadtPM1CntLen] = pm1ControlLen
	// The PM1 registers are 16 bits wide and accessed as words; ACPICA
	// splits the event block into its status and enable halves itself.
	putIORegister(t[fadtXPM1aEvtBlk:], cfg.PM1EventPort, pm1EventLen*8, gasAccessWord)
	putIORegister(t[fadtXPM1aCntBlk:], cfg.PM1ControlPort, pm1ControlLen*8, gasAccessWord)

	le.PutUint16(t[fadtPLvl2Lat:], cStateUnsupported)
	le.PutUint16(t[fadtPLvl3Lat:], cStateUnsupported)
	le.PutUint16(t[fadtIAPCBootArch:], bootArch8042|bootArchVGANotPresent)
	le.PutUint32(t[fadtFlags:], fadtWBINVD|fadtProcC1|fadtPwrButton|fadtSlpButton|fadtResetRegSup)
	// §4.8.3.6: the reset register is 8 bits wide at bit offset 0.
	putIORegister(t[fadtResetReg:], cfg.ResetPort, 8, gasAccessByte)
	t[fadtResetValue] = cfg.ResetValue
	t[fadtMinorVersion] = fadtMinor
	copy(t[fadtHypervisorID:fadtHypervisorID+8], hypervisorVendorID)
	return finishTable(t)
}
