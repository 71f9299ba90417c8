package acpi

import "encoding/binary"

// Generic Address Structure (ACPI 6.5 §5.2.3.2): how the FADT
// describes a register. 12 bytes.
const (
	gasLen          = 12
	gasAddressSpace = 0 // uint8, Address Space ID
	gasBitWidth     = 1 // uint8, Register Bit Width
	gasBitOffset    = 2 // uint8, Register Bit Offset
	gasAccessSize   = 3 // uint8, Access Size
	gasAddress      = 4 // uint64
)

// Generic Address Structure field values (ACPI 6.5 §5.2.3.2).
const (
	gasSystemIO   = 1 // Address Space ID 1: System I/O space
	gasAccessByte = 1 // Access Size 1: byte access
	gasAccessWord = 2 // Access Size 2: word (16-bit) access
)

// putIORegister writes, at b[0:12], a Generic Address Structure for a
// register block of bits bits at I/O port port, starting at bit offset 0 and
// accessed access (gasAccessByte, gasAccessWord) at a time.
func putIORegister(b []byte, port uint16, bits, access uint8) {
	b = b[:gasLen]
	b[gasAddressSpace] = gasSystemIO
	b[gasBitWidth] = bits
	b[gasBitOffset] = 0
	b[gasAccessSize] = access
	binary.LittleEndian.PutUint64(b[gasAddress:], uint64(port))
}
