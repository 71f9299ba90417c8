package acpi

import "encoding/binary"

// Firmware ACPI Control Structure, version 2 (ACPI 6.5 §5.2.10). A platform
// that is not hardware-reduced must provide one (§5.2.9, FIRMWARE_CTRL): it
// holds the global lock that the OS and firmware use to share hardware
// (§5.2.10.1) and the waking vector for resuming from S2/S3. gvmm has no
// firmware to share anything with and no sleep state to resume from, so the
// FACS is all zeros but for its signature, length and version: hardware
// signature 0, no waking vector, global lock free, no S4BIOS support. The OS
// may write it (Linux takes the global lock when AML or an embedded
// controller asks for it), so it must lie in guest memory the guest can
// write.
//
// Unlike the other tables it has no checksum and no standard header: the
// signature and length are its first eight bytes, then its own fields.
const (
	facsSignature = 0  // [4]byte "FACS"
	facsLength    = 4  // uint32, 64
	facsVersion   = 32 // uint8, 2
	// Hardware Signature (8), Firmware Waking Vector (12), Global Lock
	// (16), Flags (20), X Firmware Waking Vector (24) and OSPM Flags (36)
	// stay zero.

	// facsLen is the FACS length, fixed by §5.2.10.
	facsLen = 64
	// facsAlign is the FACS's required alignment (§5.2.10: "64-byte
	// aligned"): the global lock is accessed with locked instructions.
	facsAlign = 64
	// facsVersionValue is the FACS version of ACPI 6.5 (§5.2.10).
	facsVersionValue = 2
)

// buildFACS returns the FACS.
func buildFACS() []byte {
	f := make([]byte, facsLen)
	copy(f[facsSignature:facsSignature+signatureLen], "FACS")
	binary.LittleEndian.PutUint32(f[facsLength:], facsLen)
	f[facsVersion] = facsVersionValue
	return f
}
