package boot

import "encoding/binary"

// Page-table entry bits (Intel SDM Vol. 3A, 4.5 "4-Level Paging").
const (
	ptePresent  = 1 << 0
	pteWritable = 1 << 1
	ptePageSize = 1 << 7 // PS: this PDE maps a 2 MiB page
)

// identityPageTables returns the bytes of [PML4Addr, PDAddr+4*4096): a PML4
// whose first entry points at the PDPT, a PDPT whose first four entries
// point at four page directories, and page directories mapping 0-4 GiB onto
// itself with 2 MiB pages. The 64-bit boot protocol needs the kernel, the
// zero page and the command line identity-mapped (boot.rst, "64-bit Boot
// Protocol"); mapping all of the low 4 GiB covers every place they can be.
func identityPageTables() []byte {
	b := make([]byte, pageTableEnd-PML4Addr)
	le := binary.LittleEndian
	pml4 := b[0:pageSize]
	pdpt := b[PDPTAddr-PML4Addr:]
	le.PutUint64(pml4, PDPTAddr|ptePresent|pteWritable)
	for i := 0; i < 4; i++ {
		pd := uint64(PDAddr + i*pageSize)
		le.PutUint64(pdpt[i*8:], pd|ptePresent|pteWritable)
		dir := b[pd-PML4Addr:]
		for j := 0; j < 512; j++ {
			addr := uint64(i*512+j) << 21
			le.PutUint64(dir[j*8:], addr|ptePresent|pteWritable|ptePageSize)
		}
	}
	return b
}

// Segment descriptor access/flags words, in the layout of gdtEntry's flags
// argument: bits 0-7 are the access byte (P, DPL, S, type), bits 12-15 the
// flags nibble (G, D/B, L, AVL). Intel SDM Vol. 3A, 3.4.5 "Segment
// Descriptors".
const (
	descCode64 = 0xA09B // G=1 L=1, P=1 S=1 type=0xB (execute/read, accessed)
	descCode32 = 0xC09B // G=1 D=1, P=1 S=1 type=0xB
	descData   = 0xC093 // G=1 B=1, P=1 S=1 type=0x3 (read/write, accessed)
)

// Selectors of the boot GDT: __BOOT_CS and __BOOT_DS of the Linux boot
// protocol (arch/x86/include/asm/segment.h: GDT_ENTRY_BOOT_CS = 2,
// GDT_ENTRY_BOOT_DS = 3).
const (
	bootCS = 0x10
	bootDS = 0x18
)

// gdtEntry packs a segment descriptor from a flags word, base and 20-bit limit.
func gdtEntry(flags uint16, base, limit uint32) uint64 {
	return uint64(base&0xff000000)<<(56-24) |
		uint64(flags&0xf0ff)<<40 |
		uint64(limit&0x000f0000)<<(48-16) |
		uint64(base&0x00ffffff)<<16 |
		uint64(limit&0x0000ffff)
}

// bootGDT returns the 4-entry boot GDT written at GDTAddr: null, null,
// code at 0x10 (64-bit, or 32-bit for the PVH entry), flat data at 0x18.
func bootGDT(code uint16) []uint64 {
	return []uint64{0, 0, gdtEntry(code, 0, 0xfffff), gdtEntry(descData, 0, 0xfffff)}
}

// gdtBytes serialises a GDT.
func gdtBytes(gdt []uint64) []byte {
	b := make([]byte, 8*len(gdt))
	for i, d := range gdt {
		binary.LittleEndian.PutUint64(b[i*8:], d)
	}
	return b
}
