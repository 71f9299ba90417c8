package acpi

import "encoding/binary"

// Identification written into every table header and the RSDP. Linux keys
// some quirks on OEM IDs; these match nothing it knows.
const (
	// oemID is the OEM ID of the RSDP and of every table (ACPI 6.5 §5.2.6:
	// six characters, space padded).
	oemID = "GVMM  "
	// creatorID names the tool that wrote the tables (ACPI 6.5 §5.2.6).
	creatorID = "GVMM"
	// oemRevision and creatorRevision are the table and creator revisions
	// (§5.2.6); nothing reads them, 1 says "first version".
	oemRevision     = 1
	creatorRevision = 1
)

// System Description Table Header (ACPI 6.5 §5.2.6): the 36 bytes
// every table except the RSDP starts with.
const (
	headerLen          = 36
	hdrSignature       = 0  // [4]byte
	hdrLength          = 4  // uint32, whole table including the header
	hdrRevision        = 8  // uint8
	hdrChecksum        = 9  // uint8, makes the table's bytes sum to 0
	hdrOEMID           = 10 // [6]byte
	hdrOEMTableID      = 16 // [8]byte
	hdrOEMRevision     = 24 // uint32
	hdrCreatorID       = 28 // [4]byte
	hdrCreatorRevision = 32 // uint32
)

// Field widths of the header's character fields (ACPI 6.5 §5.2.6).
const (
	signatureLen  = 4
	oemIDLen      = 6
	oemTableIDLen = 8
	creatorIDLen  = 4
)

// oemTableIDPrefix starts every OEM Table ID; the table signature completes it.
const oemTableIDPrefix = "GVMM"

// newTable returns a zeroed table of length bytes whose header carries the
// signature, length, revision and identification; the caller fills the body
// and then calls finishTable. The OEM Table ID is "GVMM" plus the signature,
// which keeps it distinct per table.
func newTable(signature string, revision uint8, length int) []byte {
	t := make([]byte, length)
	copy(t[hdrSignature:hdrSignature+signatureLen], signature)
	binary.LittleEndian.PutUint32(t[hdrLength:], uint32(length))
	t[hdrRevision] = revision
	copy(t[hdrOEMID:hdrOEMID+oemIDLen], oemID)
	copy(t[hdrOEMTableID:hdrOEMTableID+oemTableIDLen], oemTableIDPrefix+signature)
	binary.LittleEndian.PutUint32(t[hdrOEMRevision:], oemRevision)
	copy(t[hdrCreatorID:hdrCreatorID+creatorIDLen], creatorID)
	binary.LittleEndian.PutUint32(t[hdrCreatorRevision:], creatorRevision)
	return t
}

// finishTable sets the header checksum so that the table's bytes sum to zero
// modulo 256 (ACPI 6.5 §5.2.6, Checksum). It must be the last write.
func finishTable(t []byte) []byte {
	t[hdrChecksum] = 0
	t[hdrChecksum] = checksum(t)
	return t
}

// checksum returns the byte that, added to the bytes of b, makes them sum to
// zero modulo 256: the checksum rule of the RSDP (§5.2.5.3), table headers
// (§5.2.6) and resource template End Tags (§6.4.2.9). The checksum field
// itself must be zero in b.
func checksum(b []byte) byte {
	var sum byte
	for _, c := range b {
		sum += c
	}
	return -sum
}

// alignUp rounds n up to a multiple of a (a power of two).
func alignUp(n, a uint64) uint64 {
	return (n + a - 1) &^ (a - 1)
}
