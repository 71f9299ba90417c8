package devices

// Device is emulated hardware reached through port I/O or MMIO.
//
// offset is relative to the base the device was inserted at on a Bus, and
// len(data) is the access size. Read fills data; Write consumes it. Both are
// called on vCPU threads, possibly from several vCPUs at once, and with
// whatever the guest chose to do: any offset (including ones beyond the range
// the device was inserted with, if it is called directly) and any size
// (1, 2, 4 or 8 bytes, or an odd size from a malformed exit). An
// implementation must never panic, must return promptly, and must not grow
// memory in response to guest accesses.
//
// Port I/O and MMIO data are little-endian (x86): data[0] is the byte at
// offset, data[1] the byte at offset+1, and so on.
type Device interface {
	Read(offset uint64, data []byte)
	Write(offset uint64, data []byte)
}

// RegisterNamer is implemented by devices that can name the register an
// access at offset hits, for exit statistics ("LSR", "THR"). It returns ""
// for offsets that decode to no register. The result must be a constant
// string: RegisterName is called on the exit path and must not allocate.
type RegisterNamer interface {
	RegisterName(offset uint64, write bool) string
}

// IRQLine is an interrupt line a device can drive. The VMM implements it with
// KVM_IRQ_LINE or an irqfd.
//
// Devices in this package call SetLevel only when the level changes, and they
// call it with their own lock held so that the line's level always matches
// the device state (two threads computing levels cannot reorder their calls).
// SetLevel must therefore be quick and must not call back into the device.
type IRQLine interface {
	SetLevel(high bool)
}
