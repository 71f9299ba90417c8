// Package devices holds the port-I/O and MMIO buses and the legacy devices a
// Linux guest needs on a PC-like machine: an 8250/16550A UART, enough of an
// i8042 keyboard controller to probe and to reset the machine, an MC146818
// CMOS RTC, a test-exit port like QEMU's isa-debug-exit, and the
// ACPI PM1 and reset registers.
//
// A device knows nothing of the VMM around it. It sees offsets relative to
// the base it was inserted at (see Device), an IRQLine it may raise or lower,
// and callbacks (reset, poweroff, exit) through which it reports machine-level
// events. The port numbers, IRQs and memory map are fixed in docs/design.md:
//
//	0x3F8-0x3FF  Serial, COM1 (IRQ 4)      Insert(com1, "com1", 0x3F8, SerialSize)
//	0x60, 0x64   I8042                     Insert(kbd, "i8042", 0x60, I8042Size)
//	0x70-0x71    RTC (IRQ 8, never raised) Insert(rtc, "rtc", 0x70, RTCSize)
//	0xF4         TestExit                  Insert(exit, "test-exit", 0xF4, 1 to 4)
//	0x600-0x607  ACPIPower                 Insert(acpi, "acpi-power", 0x600, ACPIPowerSize)
//
// # The guest is untrusted
//
// Every Read and Write tolerates any offset and any access size without
// panicking, blocking for long or allocating unboundedly; the fuzz targets in
// this package check that. Devices made of byte-wide registers (the UART,
// i8042, RTC and ACPI registers) treat a wider access the way an ISA bus
// treats a 16- or 32-bit cycle to an 8-bit device: as consecutive byte
// accesses at offset, offset+1, ... Bytes that decode to no register read
// as 0xFF (the floating ISA data bus) and are dropped on write.
//
// # Threading
//
// Bus.Lookup is lock-free and allocation-free and may be called from any
// number of vCPU threads. Bus.Insert is meant for machine setup, before any
// vCPU runs. Every device is safe for concurrent use: those with state hold
// an internal mutex for the duration of one access, so vCPU threads and host
// goroutines (Serial.Receive) may call into a device at the same time. Callbacks given to
// devices (reset, poweroff, exit) are called on the vCPU thread that made the
// access, without any device lock held; they must not block for long and may
// be called more than once (a guest retries its reset loop, several vCPUs may
// race to power off).
package devices
