package acpi

import "encoding/binary"

// Root System Description Pointer, revision 2 (ACPI 6.5 §5.2.5.3). The OS
// finds it either by scanning 0xE0000-0xFFFFF on 16-byte boundaries
// (§5.2.5.1) or, for Linux, through boot_params.acpi_rsdp_addr; gvmm offers
// both by writing it at the start of the blob at 0xE0000.
const (
	rsdpLen         = 36 // whole structure, also stored in its Length field
	rsdpV1Len       = 20 // bytes covered by the ACPI 1.0 checksum
	rsdpSignature   = 0  // [8]byte "RSD PTR "
	rsdpChecksum    = 8  // uint8, bytes 0-19 sum to 0
	rsdpOEMID       = 9  // [6]byte
	rsdpRevision    = 15 // uint8
	rsdpRSDTAddress = 16 // uint32
	rsdpLength      = 20 // uint32
	rsdpXSDTAddress = 24 // uint64
	rsdpExtChecksum = 32 // uint8, all 36 bytes sum to 0
)

const (
	// rsdpSignatureValue is the RSDP signature, note the trailing space.
	rsdpSignatureValue = "RSD PTR "
	// rsdpRevision2 marks an ACPI 2.0+ RSDP, the one with Length,
	// XsdtAddress and the extended checksum (§5.2.5.3).
	rsdpRevision2 = 2
	// rsdpAlign is the RSDP's required alignment (§5.2.5.1).
	rsdpAlign = 16
)

// buildRSDP returns the RSDP pointing at the XSDT at xsdtAddr.
//
// RsdtAddress stays zero: an RSDT only repeats the XSDT with 32-bit
// pointers for ACPI 1.0 operating systems (§5.2.7), and an ACPI 2.0+ OS
// uses the XSDT when the RSDP has revision 2 and a non-zero XsdtAddress
// (§5.2.8; Linux: acpi_tb_parse_root_table).
func buildRSDP(xsdtAddr uint64) []byte {
	r := make([]byte, rsdpLen)
	copy(r[rsdpSignature:], rsdpSignatureValue)
	copy(r[rsdpOEMID:rsdpOEMID+oemIDLen], oemID)
	r[rsdpRevision] = rsdpRevision2
	binary.LittleEndian.PutUint32(r[rsdpLength:], rsdpLen)
	binary.LittleEndian.PutUint64(r[rsdpXSDTAddress:], xsdtAddr)
	r[rsdpChecksum] = checksum(r[:rsdpV1Len])
	r[rsdpExtChecksum] = checksum(r)
	return r
}
