package acpi

import "fmt"

// Differentiated System Description Table (ACPI 6.5 §5.2.11.1): the
// definition block of AML the OS loads into its namespace. gvmm's holds
//
//	Name (\_S5, Package () { 5, 0, 0, 0 })
//	Scope (\_SB) {                             // only with virtio-mmio devices
//	    Device (V000) {
//	        Name (_HID, "LNRO0005")
//	        Name (_UID, 0)
//	        Name (_CRS, ResourceTemplate () {
//	            Memory32Fixed (ReadWrite, addr, size)
//	            Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) { irq }
//	        })
//	    }
//	    ...
//	}
const (
	// dsdtRevision 2 makes the AML interpreter's integers 64 bits wide
	// (§5.2.11.1; revisions below 2 mean 32-bit integers).
	dsdtRevision = 2
)

// SleepTypeS5 is the SLP_TYP value the DSDT's \_S5 object gives for the soft
// off state (ACPI 6.5 §7.4.2, \_Sx: the first package element is the value
// for SLP_TYPa). The OS powers off by writing SleepTypeS5<<10 | 1<<13
// (SLP_TYP in bits 12:10, SLP_EN in bit 13 of PM1 control, §4.8.3.2.1),
// that is 0x3400, to the PM1a control register, as a 16-bit write that also
// carries the bits it preserves (Linux: 0x3401, with SCI_EN); the PM1
// control device must power off on it.
const SleepTypeS5 = 5

// virtioMMIOHID is the _HID Linux's virtio_mmio driver matches
// (drivers/virtio/virtio_mmio.c, virtio_mmio_acpi_match), the ID Linaro
// registered for virtio-mmio; Firecracker and cloud-hypervisor use it too.
const virtioMMIOHID = "LNRO0005"

// maxVirtioMMIO is how many virtio-mmio devices the DSDT can name: their
// Device names are "V" and three hex digits.
const maxVirtioMMIO = 0x1000

// virtioMMIOInterruptFlags describes a virtio-mmio transport's interrupt as
// Interrupt(ResourceConsumer, Edge, ActiveHigh, Exclusive) (§6.4.3.6).
//
// Edge, active-high is what ISA IRQs 0-15 are when the MADT has no
// Interrupt Source Override (§5.2.12.5), so a virtio-mmio IRQ below 16
// agrees with how Linux sets up the legacy I/O APIC pins; for an Extended
// Interrupt descriptor Linux takes the mode as written and programs the
// pin so (acpi_dev_resource_interrupt, acpi_register_gsi), so above 15 edge
// keeps all virtio-mmio GSIs alike. It is also what a VMM signals through a
// KVM irqfd without a resample eventfd (or KVM_IRQ_LINE 1 then 0): a pulse.
// The virtio-mmio driver reads and acknowledges InterruptStatus on each
// interrupt, and the device pulses again for any later event, so edges lose
// nothing. Firecracker and cloud-hypervisor describe virtio-mmio the same
// way.
//
// Exclusive: each transport has its own GSI.
const virtioMMIOInterruptFlags = intConsumer | intEdge

// buildDSDT returns the DSDT for cfg, whose virtio-mmio devices
// checkVirtioMMIO accepted.
func buildDSDT(cfg Config) []byte {
	aml := amlName(`\_S5`, amlPackage(
		amlInteger(SleepTypeS5), // SLP_TYPa, written to PM1a control
		amlInteger(0),           // SLP_TYPb, unused: there is no PM1b
		amlInteger(0),           // reserved
		amlInteger(0),           // reserved
	))
	var devices [][]byte
	for i, d := range cfg.VirtioMMIO {
		devices = append(devices, virtioMMIODevice(i, d))
	}
	if cfg.PCI != nil {
		devices = append(devices, pciDevice(cfg.PCI))
	}
	if len(devices) > 0 {
		aml = append(aml, amlScope(`\_SB`, devices...)...)
	}
	t := newTable("DSDT", dsdtRevision, headerLen+len(aml))
	copy(t[headerLen:], aml)
	return finishTable(t)
}

// virtioMMIODevice returns Device(Vnnn) for the i-th virtio-mmio transport.
// _UID is i, distinguishing devices that share a _HID (§6.1.12).
func virtioMMIODevice(i int, d MMIODevice) []byte {
	return amlDevice(fmt.Sprintf("V%03X", i),
		amlName("_HID", amlString(virtioMMIOHID)), // §6.1.5
		amlName("_UID", amlInteger(uint64(i))),    // §6.1.12
		amlName("_CRS", amlResourceTemplate( // §6.2.2
			amlMemory32Fixed(true, uint32(d.Addr), uint32(d.Size)),
			amlInterrupt(virtioMMIOInterruptFlags, d.IRQ),
		)),
	)
}

// checkVirtioMMIO reports whether the DSDT can describe devs: at most
// maxVirtioMMIO of them, each a non-empty register window that lies below
// 4 GiB, as Memory32Fixed requires.
func checkVirtioMMIO(devs []MMIODevice) error {
	if len(devs) > maxVirtioMMIO {
		return fmt.Errorf("acpi: %d virtio-mmio devices: at most %d", len(devs), maxVirtioMMIO)
	}
	for i, d := range devs {
		if d.Size == 0 {
			return fmt.Errorf("acpi: virtio-mmio device %d at %#x: size is zero", i, d.Addr)
		}
		if d.Size > 0xFFFF_FFFF || d.Addr > 1<<32-d.Size {
			return fmt.Errorf("acpi: virtio-mmio device %d: [%#x, +%#x) does not lie below 4 GiB", i, d.Addr, d.Size)
		}
	}
	return nil
}
