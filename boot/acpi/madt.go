package acpi

import (
	"encoding/binary"
	"fmt"
)

// Multiple APIC Description Table (ACPI 6.5 §5.2.12): the local APIC
// address, one processor entry per vCPU and the I/O APIC, which KVM's
// in-kernel irqchip (KVM_CREATE_IRQCHIP) provides, and one Interrupt Source
// Override, for the SCI.
//
// Without an override ISA IRQ n is GSI n, edge-triggered and active-high
// (§5.2.12.5, ISA conformity), which is exactly KVM's default IRQ routing:
// GSI n drives IOAPIC pin n, and also PIC pin n for n < 16 (arch/x86/kvm,
// kvm_setup_default_irq_routing). The VMM must keep that routing for these
// tables to be true.
//
//   - The SCI override (bus 0, source Config.SCIIRQ, GSI Config.SCIIRQ,
//     level-triggered, active-high) changes only the SCI's trigger mode and
//     polarity, as QEMU's does. Without it Linux would program the pin as
//     the SCI's default, level-triggered and active-low
//     (acpi_sci_ioapic_setup), which is not how a VMM drives a KVM GSI:
//     KVM_IRQ_LINE with level 1 asserts it. Nothing raises the SCI today
//     (devices/ never signals an ACPI event), but the table should say
//     what raising it would mean.
//   - There is no IRQ0 override. KVM's in-kernel PIT raises GSI 0, so the
//     timer arrives at IOAPIC pin 0. QEMU describes IRQ0 -> GSI 2 only
//     because it replaces KVM's routing with one that sends GSI 0 to pin 2,
//     as PC chipsets wire it; declaring the override here would send Linux
//     looking for the timer on pin 2, where nothing arrives.
//
// What it deliberately leaves out:
//
//   - Local APIC NMI structures (§5.2.12.7, §5.2.12.13). They tell the OS
//     which LINT pin the platform wires to NMI. Linux on x86 only prints
//     them; it programs LINT1 as NMI on the boot CPU by itself
//     (setup_local_APIC), and a VMM injects NMIs with KVM_NMI, not through
//     a wire. With no device that raises LINT1, the entry would describe
//     nothing.
const (
	madtLocalAPICAddress = 36 // uint32 Local Interrupt Controller Address
	madtFlags            = 40 // uint32 Flags
	madtEntries          = 44 // first Interrupt Controller Structure
)

const (
	// madtRevision is the MADT revision of ACPI 6.5 (§5.2.12).
	madtRevision = 6
	// madtPCATCompat (Flags bit 0): the system also has dual 8259 PICs,
	// which KVM's in-kernel irqchip provides. The OS must mask them before
	// using the I/O APIC.
	madtPCATCompat = 1 << 0
)

// Interrupt Controller Structure types and lengths (ACPI 6.5 §5.2.12).
const (
	madtTypeLocalAPIC      = 0  // §5.2.12.2 Processor Local APIC
	madtTypeIOAPIC         = 1  // §5.2.12.3 I/O APIC
	madtTypeIntSrcOverride = 2  // §5.2.12.5 Interrupt Source Override
	madtTypeLocalX2APIC    = 9  // §5.2.12.12 Processor Local x2APIC
	madtLocalAPICLen       = 8  // §5.2.12.2
	madtIOAPICLen          = 12 // §5.2.12.3
	madtIntSrcOverrideLen  = 10 // §5.2.12.5
	madtLocalX2APICLen     = 16 // §5.2.12.12
)

// MPS INTI flags of an Interrupt Source Override (ACPI 6.5 §5.2.12.5,
// "MPS INTI Flags"): polarity in bits 1:0, trigger mode in bits 3:2.
const (
	intiActiveHigh = 0b01 << 0
	intiLevel      = 0b11 << 2
	// sciINTIFlags is the SCI's: level-triggered, active-high (0x000D).
	sciINTIFlags = intiLevel | intiActiveHigh
	// isaBus is the Bus field of an override: 0, ISA.
	isaBus = 0
)

const (
	// lapicEnabled (Local APIC Flags bit 0, §5.2.12.2): the processor is
	// usable. Every vCPU exists from boot, so none is merely online-capable.
	lapicEnabled = 1 << 0
	// maxXAPICID is the largest APIC ID a Processor Local APIC structure
	// carries: 0xFF is the xAPIC broadcast ID, and §5.2.12.12 requires
	// processors with IDs of 255 and above to use Processor Local x2APIC
	// structures.
	maxXAPICID = 254
	// maxX2APICID is the largest x2APIC ID: 0xFFFFFFFF is the x2APIC
	// broadcast ID.
	maxX2APICID = 0xFFFF_FFFE
	// ioapicID is the I/O APIC's ID. KVM's in-kernel I/O APIC resets its ID
	// register to 0 (virt/kvm/ioapic.c, kvm_ioapic_reset), and the table
	// says what the hardware says. I/O APIC and local APIC IDs share one
	// namespace only on the P6-era serial APIC bus; 64-bit Linux checks
	// I/O APIC IDs only against each other (io_apic_unique_id), and a
	// one-byte ID of CPUs would not fit above 255 vCPUs anyway.
	ioapicID = 0
	// ioapicGSIBase is the first GSI the I/O APIC handles: its pin n is
	// GSI n, matching KVM's default routing.
	ioapicGSIBase = 0
)

// madtLen returns the length of the MADT for cpus vCPUs: the fixed part,
// one I/O APIC, the SCI override, a Processor Local APIC structure for each
// of the first 255 vCPUs (APIC IDs 0-254), and a Processor Local x2APIC
// structure for each beyond. It computes in uint64 so that a huge cpus
// cannot overflow.
func madtLen(cpus int) uint64 {
	n := uint64(cpus)
	xapic := min(n, maxXAPICID+1)
	return madtEntries + madtIOAPICLen + madtIntSrcOverrideLen + xapic*madtLocalAPICLen + (n-xapic)*madtLocalX2APICLen
}

// checkMADTCPUs reports whether the MADT can describe cpus vCPUs with APIC
// IDs 0 to cpus-1.
func checkMADTCPUs(cpus int) error {
	if cpus < 1 {
		return fmt.Errorf("acpi: %d CPUs: need at least 1", cpus)
	}
	if uint64(cpus)-1 > maxX2APICID {
		return fmt.Errorf("acpi: %d CPUs: APIC IDs end at %#x", cpus, maxX2APICID)
	}
	if l := madtLen(cpus); l > 0xFFFF_FFFF {
		return fmt.Errorf("acpi: %d CPUs: the MADT would be %d bytes, more than its 32-bit length can hold", cpus, l)
	}
	return nil
}

// buildMADT returns the MADT for cfg, whose CPUs checkMADTCPUs accepted.
// vCPU i has APIC ID i and ACPI Processor UID i, which is how the VMM
// creates them (KVM_CREATE_VCPU with id i gives APIC ID i).
//
// The table describes APIC IDs above 254 correctly, but a guest only brings
// those vCPUs up in x2APIC mode: CPUID must advertise x2APIC, and Linux,
// having no interrupt remapping in a VM, then needs the KVM CPUID leaves
// with KVM_FEATURE_MSI_EXT_DEST_ID to address APIC IDs above 255 (its
// try_to_enable_x2apic caps them at 255 otherwise).
func buildMADT(cfg Config) []byte {
	t := newTable("APIC", madtRevision, int(madtLen(cfg.CPUs)))
	binary.LittleEndian.PutUint32(t[madtLocalAPICAddress:], cfg.LAPICAddr)
	binary.LittleEndian.PutUint32(t[madtFlags:], madtPCATCompat)
	e := t[madtEntries:]
	for i := 0; i < cfg.CPUs; i++ {
		if i <= maxXAPICID {
			// §5.2.12.2: Type, Length, ACPI Processor UID (u8), APIC ID
			// (u8), Flags (u32).
			e[0] = madtTypeLocalAPIC
			e[1] = madtLocalAPICLen
			e[2] = byte(i)
			e[3] = byte(i)
			binary.LittleEndian.PutUint32(e[4:], lapicEnabled)
			e = e[madtLocalAPICLen:]
			continue
		}
		// §5.2.12.12: Type, Length, Reserved (u16), X2APIC ID (u32), Flags
		// (u32, as for the local APIC), ACPI Processor UID (u32).
		e[0] = madtTypeLocalX2APIC
		e[1] = madtLocalX2APICLen
		binary.LittleEndian.PutUint32(e[4:], uint32(i))
		binary.LittleEndian.PutUint32(e[8:], lapicEnabled)
		binary.LittleEndian.PutUint32(e[12:], uint32(i))
		e = e[madtLocalX2APICLen:]
	}
	// §5.2.12.3: Type, Length, I/O APIC ID (u8), Reserved (u8), I/O APIC
	// Address (u32), Global System Interrupt Base (u32).
	e[0] = madtTypeIOAPIC
	e[1] = madtIOAPICLen
	e[2] = ioapicID
	binary.LittleEndian.PutUint32(e[4:], cfg.IOAPICAddr)
	binary.LittleEndian.PutUint32(e[8:], ioapicGSIBase)
	e = e[madtIOAPICLen:]
	// §5.2.12.5: Type, Length, Bus (u8), Source (u8, the ISA IRQ), Global
	// System Interrupt (u32), Flags (u16, MPS INTI flags).
	e[0] = madtTypeIntSrcOverride
	e[1] = madtIntSrcOverrideLen
	e[2] = isaBus
	e[3] = cfg.SCIIRQ
	binary.LittleEndian.PutUint32(e[4:], uint32(cfg.SCIIRQ))
	binary.LittleEndian.PutUint16(e[8:], sciINTIFlags)
	return finishTable(t)
}
