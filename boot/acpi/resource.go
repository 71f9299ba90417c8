package acpi

import (
	"encoding/binary"
	"fmt"
)

// This file encodes the resource data descriptors (ACPI 6.5 §6.4, "Resource
// Data Types for ACPI") that a _CRS ResourceTemplate holds. Each function
// returns one descriptor; amlResourceTemplate wraps them in a Buffer.

// Resource descriptor tags (ACPI 6.5 §6.4.2 small and §6.4.3 large resource
// data types). A small tag byte is 0 tttt lll (type, length); a large one is
// 1 ttttttt followed by a 16-bit length.
const (
	resEndTag            = 0x79 // §6.4.2.9 End Tag: small type 0xF, length 1
	resMemory32Fixed     = 0x86 // §6.4.3.4 32-Bit Fixed Memory Range Descriptor
	resMemory32FixedLen  = 9    // §6.4.3.4 bytes after the 3-byte header
	resExtendedInterrupt = 0x89 // §6.4.3.6 Extended Interrupt Descriptor
)

// Extended Interrupt Descriptor flags (ACPI 6.5 §6.4.3.6, byte 3).
const (
	intConsumer  = 1 << 0 // ResourceConsumer (0 is ResourceProducer)
	intEdge      = 1 << 1 // edge-triggered (0 is level-triggered)
	intActiveLow = 1 << 2 // active-low (0 is active-high)
	intShared    = 1 << 3 // shared (0 is exclusive)
)

// amlMemory32Fixed encodes Memory32Fixed(ReadWrite or ReadOnly, base, length)
// (ACPI 6.5 §6.4.3.4): tag, length 9, information byte (bit 0: writeable),
// base and length as little-endian 32-bit values.
func amlMemory32Fixed(writeable bool, base, length uint32) []byte {
	out := []byte{resMemory32Fixed, resMemory32FixedLen, 0, 0}
	if writeable {
		out[3] = 1
	}
	out = binary.LittleEndian.AppendUint32(out, base)
	return binary.LittleEndian.AppendUint32(out, length)
}

// amlInterrupt encodes Interrupt(...) { irqs } without a resource source
// (ACPI 6.5 §6.4.3.6): tag, 16-bit length, flags (the int* constants), the
// interrupt count and the 32-bit interrupt numbers (GSIs on x86).
func amlInterrupt(flags byte, irqs ...uint32) []byte {
	if len(irqs) == 0 || len(irqs) > 255 {
		panic(fmt.Sprintf("acpi: Interrupt descriptor needs 1-255 interrupts, got %d", len(irqs)))
	}
	out := []byte{resExtendedInterrupt}
	out = binary.LittleEndian.AppendUint16(out, uint16(2+4*len(irqs)))
	out = append(out, flags, byte(len(irqs)))
	for _, irq := range irqs {
		out = binary.LittleEndian.AppendUint32(out, irq)
	}
	return out
}

// amlResourceTemplate encodes ResourceTemplate() { descriptors }: a Buffer
// holding the descriptors followed by an End Tag (ACPI 6.5 §6.4.2.9). The
// End Tag's checksum byte makes the bytes of the whole template, End Tag
// included, sum to zero. (iasl writes zero there instead, which §6.4.2.9
// also allows: "If the checksum field is zero, the resource data is treated
// as if the checksum operation succeeded".)
func amlResourceTemplate(descriptors ...[]byte) []byte {
	var data []byte
	for _, d := range descriptors {
		data = append(data, d...)
	}
	data = append(data, resEndTag, 0)
	data[len(data)-1] = checksum(data)
	return amlBuffer(data)
}

// Address space descriptors (ACPI 6.5 §6.4.3.5): resource types, general
// flags and type-specific flags.
const (
	resWordAddress  = 0x88 // §6.4.3.5.3 Word Address Space Descriptor
	resWordLen      = 13
	resDWordAddress = 0x87 // §6.4.3.5.2 DWord Address Space Descriptor
	resDWordLen     = 23
	resIOPort       = 0x47 // §6.4.2.5 I/O Port Descriptor, small, length 7

	addrMemory = 0
	addrIO     = 1
	addrBus    = 2

	// addrFixedProducer: _MAF and _MIF set (bits 3, 2: the range is
	// fixed), positive decode, bit 0 clear: the bridge produces the
	// range for its children.
	addrFixedProducer = 0x0C
	// ioRangeEntire: _RNG = 3, ISA and non-ISA ranges (I/O type-specific
	// flags bits 1:0).
	ioRangeEntire = 3
	// memReadWrite: _RW (bit 0) set, _MEM (bits 2:1) 0 non-cacheable.
	memReadWrite = 1
)

// amlWordAddress encodes a Word Address Space Descriptor producing [min,
// max] (length bytes) of space typ with typeFlags, granularity 0 and no
// translation.
func amlWordAddress(typ, typeFlags byte, min, max, length uint16) []byte {
	out := []byte{resWordAddress, resWordLen, 0, typ, addrFixedProducer, typeFlags}
	for _, v := range []uint16{0, min, max, 0, length} {
		out = binary.LittleEndian.AppendUint16(out, v)
	}
	return out
}

// amlDWordMemory encodes a DWord Address Space Descriptor producing the
// read-write, non-cacheable memory range [min, max].
func amlDWordMemory(min, max uint32) []byte {
	out := []byte{resDWordAddress, resDWordLen, 0, addrMemory, addrFixedProducer, memReadWrite}
	for _, v := range []uint32{0, min, max, 0, max - min + 1} {
		out = binary.LittleEndian.AppendUint32(out, v)
	}
	return out
}

// amlIOPort encodes IO(Decode16, base, base, 1, length) (§6.4.2.5): tag,
// information (bit 0: 16-bit decode), minimum and maximum base, alignment,
// length.
func amlIOPort(base uint16, length uint8) []byte {
	out := []byte{resIOPort, 1}
	out = binary.LittleEndian.AppendUint16(out, base)
	out = binary.LittleEndian.AppendUint16(out, base)
	return append(out, 1, length)
}
