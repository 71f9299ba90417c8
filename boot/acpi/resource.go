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
