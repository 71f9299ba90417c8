// Package boottest builds tiny kernel images for tests: an x86-64 ELF
// executable that the boot package loads like a vmlinux and enters in 64-bit
// mode, with a few instructions of the test's choosing as its code.
package boottest

import "encoding/binary"

// LoadAddr is the physical (and entry) address of the code, where Linux's
// vmlinux puts startup_64 (CONFIG_PHYSICAL_START).
const LoadAddr = 0x1000000

// ELF returns an ELF64 x86-64 executable with one PT_LOAD segment holding
// code at physical address LoadAddr, entered there (ELF-64 Object File
// Format, "ELF Header" and "Program Header Table").
func ELF(code []byte) []byte {
	le := binary.LittleEndian
	const phoff, fileOff = 64, 0x1000
	b := make([]byte, fileOff+len(code))
	copy(b, "\x7fELF")
	b[4], b[5], b[6] = 2, 1, 1 // ELFCLASS64, little-endian, version 1
	le.PutUint16(b[16:], 2)    // ET_EXEC
	le.PutUint16(b[18:], 62)   // EM_X86_64
	le.PutUint32(b[20:], 1)    // e_version
	le.PutUint64(b[24:], LoadAddr)
	le.PutUint64(b[32:], phoff)
	le.PutUint16(b[52:], 64) // e_ehsize
	le.PutUint16(b[54:], 56) // e_phentsize
	le.PutUint16(b[56:], 1)  // e_phnum
	ph := b[phoff:]
	le.PutUint32(ph[0:], 1) // PT_LOAD
	le.PutUint32(ph[4:], 5) // PF_R | PF_X
	le.PutUint64(ph[8:], fileOff)
	le.PutUint64(ph[16:], 0xffffffff81000000) // p_vaddr, as a kernel links
	le.PutUint64(ph[24:], LoadAddr)           // p_paddr
	le.PutUint64(ph[32:], uint64(len(code)))
	le.PutUint64(ph[40:], uint64(len(code)))
	le.PutUint64(ph[48:], 0x200000)
	copy(b[fileOff:], code)
	return b
}
