// Package acpi builds the ACPI tables a Linux guest needs on gvmm's x86-64
// machine: an RSDP, an XSDT, a FADT with its FACS, a MADT and a DSDT, laid
// out as one blob for the VMM to copy into guest memory (ACPI 6.5, chapter
// 5).
//
// The machine is a classic ACPI platform, as a PC is, not a hardware-reduced
// one (ACPI 6.5 §4.1): a Linux guest that sees HW_REDUCED_ACPI replaces its
// legacy 8259 PIC with a null one and never sets up ISA IRQs 0-15, so the
// i8042, the CMOS RTC and the 8250 UART on IRQ 4 all fail (see fadt.go). Its
// ACPI fixed hardware (§4.8) is the minimum a classic platform has, I/O
// registers that devices/ implements:
//
//   - PM1a event block (FADT PM1a_EVT_BLK, 4 bytes, §4.8.3.1): the 16-bit
//     PM1 status register at Config.PM1EventPort and the 16-bit PM1 enable
//     register after it. No fixed event is ever signalled, but the enable
//     bits must stick: ACPICA enables GBL_EN at boot and reports the global
//     lock missing if it reads back 0.
//   - PM1a control block (FADT PM1a_CNT_BLK, 2 bytes, §4.8.3.2) at
//     Config.PM1ControlPort. SCI_EN always reads 1: the platform is always
//     in ACPI mode, so SMI_CMD is zero and there is no ACPI enable
//     handshake. To power off, Linux writes SLP_TYP (bits 12:10) from the
//     DSDT's \_S5 object, SleepTypeS5, first alone and then with SLP_EN
//     (bit 13): 0x1401 then 0x3401 (SCI_EN, bit 0, preserved from its
//     read). The device powers off when SLP_EN is written with SLP_TYP =
//     SleepTypeS5.
//   - Reset register (FADT RESET_REG, 8 bits, §4.8.3.6) at
//     Config.ResetPort. To reboot, Linux writes Config.ResetValue to it.
//
// The SCI is ISA IRQ Config.SCIIRQ, level-triggered and active-high (a MADT
// Interrupt Source Override says so); with no event ever signalled, nothing
// raises it. There is no PM timer, PM2 block or GPE block. The FACS (§5.2.10)
// that a classic platform must have holds the global lock and waking vector,
// which only the OS uses.
//
// The MADT describes KVM's in-kernel local APICs, I/O APIC and 8259 PICs,
// with KVM's default GSI routing (see madt.go). The DSDT describes the
// virtio-mmio transports, if any, for kernels that find them through ACPI
// rather than virtio_mmio.device= on the command line.
//
// Build does no I/O and knows nothing of KVM or guest memory; each table's
// layout is in its own file with the spec sections it follows.
package acpi

import (
	"fmt"
	"math"
)

// Config is the machine the tables describe. The values for gvmm's machine
// (in parentheses below) are fixed by docs/design.md.
type Config struct {
	// CPUs is the number of vCPUs; vCPU i has APIC ID and ACPI Processor
	// UID i.
	CPUs int
	// Base is the guest-physical address where the blob will be written
	// (0xE0000). It must be non-zero and 16-byte aligned, as the RSDP at
	// its start must be (§5.2.5.1).
	Base uint64
	// Size is how many bytes the blob may occupy from Base (0x20000).
	Size uint64
	// IOAPICAddr is the I/O APIC's MMIO base (0xFEC00000). Its ID is 0, the
	// ID KVM's in-kernel I/O APIC reports (see ioapicID).
	IOAPICAddr uint32
	// LAPICAddr is the local APICs' MMIO base (0xFEE00000).
	LAPICAddr uint32
	// SCIIRQ is the ISA IRQ of the SCI, FADT SCI_INT (9, as on a PC). The
	// MADT maps it to the GSI of the same number, level-triggered and
	// active-high. It must be 1-15 and not 2 (the PIC cascade).
	SCIIRQ uint8
	// PM1EventPort is the I/O port of the 4-byte PM1a event block (0x600):
	// PM1 status at PM1EventPort, PM1 enable at PM1EventPort+2.
	PM1EventPort uint16
	// PM1ControlPort is the I/O port of the 2-byte PM1a control block
	// (0x604).
	PM1ControlPort uint16
	// ResetPort is the I/O port of the 8-bit reset register (0x606).
	ResetPort uint16
	// ResetValue is the byte the OS writes to ResetPort to reset (0x01).
	ResetValue uint8
	// VirtioMMIO lists the virtio-mmio transports to describe in the DSDT,
	// in order; device i gets _UID i. Empty leaves them to the kernel
	// command line.
	VirtioMMIO []MMIODevice
	// PCI describes the PCI host bridge (DSDT device PCI0 and the MCFG
	// table); nil for a machine without PCI.
	PCI *PCIHostBridge
}

// MMIODevice is a virtio-mmio transport as the DSDT describes it: a
// "LNRO0005" device with its register window and interrupt.
type MMIODevice struct {
	// Addr is the guest-physical base of the register window; the window
	// must lie below 4 GiB.
	Addr uint64
	// Size is the length of the register window (0x200 or more for
	// virtio-mmio; commonly 0x1000).
	Size uint64
	// IRQ is the GSI the transport raises, edge-triggered and active-high;
	// with KVM's in-kernel irqchip it is an I/O APIC pin (0-23).
	IRQ uint32
}

// tableAlign is where each table starts within the blob. The spec only
// requires the RSDP's 16-byte alignment; aligning every table the same way
// keeps their 64-bit fields naturally aligned.
const tableAlign = 16

// layout is where each table lies in the blob, as offsets from its start.
type layout struct {
	xsdt, fadt, facs, madt, dsdt uint64
	// mcfg follows the DSDT when there is one (0 otherwise).
	mcfg uint64
	// total is the blob's length: the DSDT ends it.
	total uint64
}

// layoutFor places the tables of a blob written at base, for cpus vCPUs and
// a DSDT of dsdtLen bytes: the RSDP, then the XSDT, FADT, FACS, MADT and
// DSDT, each tableAlign-aligned, the FACS 64-byte aligned in guest-physical
// memory (§5.2.10). The offsets are computed modulo 2^64; the caller checks
// total against the room it has before forming addresses from them.
func layoutFor(base uint64, cpus int, dsdtLen, mcfgLen uint64) layout {
	var l layout
	l.xsdt = alignUp(rsdpLen, tableAlign)
	entries := 2
	if mcfgLen > 0 {
		entries = 3
	}
	l.fadt = alignUp(l.xsdt+uint64(xsdtLen(entries)), tableAlign)
	end := l.fadt + fadtLen
	// Pad so that base+l.facs is a multiple of facsAlign.
	l.facs = end + ((-(base + end)) & (facsAlign - 1))
	l.madt = alignUp(l.facs+facsLen, tableAlign)
	l.dsdt = alignUp(l.madt+madtLen(cpus), tableAlign)
	l.total = l.dsdt + dsdtLen
	if mcfgLen > 0 {
		l.mcfg = alignUp(l.total, tableAlign)
		l.total = l.mcfg + mcfgLen
	}
	return l
}

// Build returns the ACPI tables for cfg, to be written at guest-physical
// address cfg.Base, and the guest-physical address of the RSDP, which is
// cfg.Base. The blob is at most cfg.Size bytes; its layout is the RSDP, then
// the XSDT, FADT, FACS, MADT and DSDT, each 16-byte aligned and the FACS
// 64-byte aligned, and every address in it is an absolute guest-physical
// address computed from cfg.Base.
//
// It fails if cfg.CPUs is below 1 or more than the MADT can describe, if
// cfg.SCIIRQ is not an ISA IRQ the SCI can use, if a register block is at
// port 0, runs past port 0xFFFF or overlaps another, if an APIC address is
// zero, if cfg.Base is zero or unaligned, if a virtio-mmio device cannot be
// described, or if the blob would exceed cfg.Size.
func Build(cfg Config) (tables []byte, rsdp uint64, err error) {
	if err := cfg.validate(); err != nil {
		return nil, 0, err
	}
	dsdt := buildDSDT(cfg)

	const rsdpOff = 0
	var mcfg []byte
	if cfg.PCI != nil {
		mcfg = buildMCFG(cfg.PCI)
	}
	l := layoutFor(cfg.Base, cfg.CPUs, uint64(len(dsdt)), uint64(len(mcfg)))
	if l.total > cfg.Size {
		return nil, 0, fmt.Errorf("acpi: tables for %d CPUs and %d virtio-mmio devices need %d bytes, only %d available",
			cfg.CPUs, len(cfg.VirtioMMIO), l.total, cfg.Size)
	}

	blob := make([]byte, l.total)
	copy(blob[rsdpOff:], buildRSDP(cfg.Base+l.xsdt))
	if mcfg != nil {
		copy(blob[l.xsdt:], buildXSDT(cfg.Base+l.fadt, cfg.Base+l.madt, cfg.Base+l.mcfg))
		copy(blob[l.mcfg:], mcfg)
	} else {
		copy(blob[l.xsdt:], buildXSDT(cfg.Base+l.fadt, cfg.Base+l.madt))
	}
	copy(blob[l.fadt:], buildFADT(cfg, cfg.Base+l.facs, cfg.Base+l.dsdt))
	copy(blob[l.facs:], buildFACS())
	copy(blob[l.madt:], buildMADT(cfg))
	copy(blob[l.dsdt:], dsdt)
	return blob, cfg.Base + rsdpOff, nil
}

// validate reports the first reason Build cannot describe cfg.
func (cfg Config) validate() error {
	if err := checkMADTCPUs(cfg.CPUs); err != nil {
		return err
	}
	if cfg.Base == 0 || cfg.Base%rsdpAlign != 0 {
		return fmt.Errorf("acpi: base %#x: must be non-zero and %d-byte aligned for the RSDP", cfg.Base, rsdpAlign)
	}
	if cfg.Size > math.MaxUint64-cfg.Base {
		return fmt.Errorf("acpi: base %#x + size %#x overflows", cfg.Base, cfg.Size)
	}
	// IRQ 0 is the timer and IRQ 2 the cascade of the slave PIC; an SCI
	// above 15 would need an I/O APIC pin but no ISA IRQ, which the
	// override the MADT carries for it cannot express.
	if cfg.SCIIRQ == 0 || cfg.SCIIRQ == 2 || cfg.SCIIRQ > 15 {
		return fmt.Errorf("acpi: SCI IRQ %d: must be an ISA IRQ from 1 to 15 other than 2", cfg.SCIIRQ)
	}
	if err := checkIORegisters(cfg); err != nil {
		return err
	}
	if cfg.LAPICAddr == 0 || cfg.IOAPICAddr == 0 {
		return fmt.Errorf("acpi: local APIC address %#x, I/O APIC address %#x: must be non-zero", cfg.LAPICAddr, cfg.IOAPICAddr)
	}
	if err := checkPCI(cfg.PCI); err != nil {
		return err
	}
	return checkVirtioMMIO(cfg.VirtioMMIO)
}

// checkIORegisters reports whether the FADT can describe cfg's register
// blocks: each lies within the 64 KiB I/O space and off port 0, and none
// overlaps another. ACPICA reads an address of 0 as "no such block" (PM1a
// blocks are mandatory; Linux would lose poweroff and warn at every boot),
// refuses accesses past port 0xFFFF (acpi_hw_validate_io_request), and
// overlapping blocks would make one register's writes another's.
func checkIORegisters(cfg Config) error {
	blocks := []struct {
		name       string
		port, size uint32
	}{
		{"PM1 event block", uint32(cfg.PM1EventPort), pm1EventLen},
		{"PM1 control block", uint32(cfg.PM1ControlPort), pm1ControlLen},
		{"reset register", uint32(cfg.ResetPort), 1},
	}
	for i, b := range blocks {
		if b.port == 0 {
			return fmt.Errorf("acpi: %s is at port 0", b.name)
		}
		if b.port+b.size > 0x10000 {
			return fmt.Errorf("acpi: %s [%#x, +%d) runs past port 0xFFFF", b.name, b.port, b.size)
		}
		for _, o := range blocks[:i] {
			if b.port < o.port+o.size && o.port < b.port+b.size {
				return fmt.Errorf("acpi: %s [%#x, +%d) overlaps the %s [%#x, +%d)", b.name, b.port, b.size, o.name, o.port, o.size)
			}
		}
	}
	return nil
}
