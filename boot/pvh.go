package boot

import "encoding/binary"

// PVH boot: Linux built with CONFIG_PVH carries an ELF note that gives the
// physical address of a 32-bit entry point (arch/x86/platform/pvh/head.S,
// pvh_start_xen). The loader enters there in flat 32-bit protected mode with
// paging off and EBX pointing at a struct hvm_start_info (Xen's
// xen/include/public/arch-x86/hvm/start_info.h and docs/misc/pvh.pandoc);
// the kernel builds its own boot_params from it (arch/x86/platform/pvh/
// enlighten.c).

const (
	// xenElfnotePhys32Entry is XEN_ELFNOTE_PHYS32_ENTRY
	// (xen/include/public/elfnote.h): the physical 32-bit entry point.
	xenElfnotePhys32Entry = 18
	// hvmStartMagic is XEN_HVM_START_MAGIC_VALUE ("xEn3" with the 0x80 bit
	// of the "E" set).
	hvmStartMagic = 0x336ec578
	// hvmStartVersion 1 adds memmap_paddr and memmap_entries.
	hvmStartVersion = 1
)

// Layout of the PVH structures at StartInfoAddr (design.md: "PVH
// hvm_start_info, followed by its memory map"). The memory map has room for
// MaxE820Entries; the module list (one entry, the initrd) comes after it.
const (
	startInfoSize   = 0x38 // struct hvm_start_info, version 1
	memmapEntrySize = 24   // struct hvm_memmap_table_entry
	modlistSize     = 32   // struct hvm_modlist_entry
	pvhMemmapAddr   = StartInfoAddr + 0x40
	pvhModlistAddr  = pvhMemmapAddr + MaxE820Entries*memmapEntrySize
	pvhAreaEnd      = pvhModlistAddr + modlistSize
)

// Offsets in struct hvm_start_info (start_info.h).
const (
	siMagic         = 0x00 // u32 magic
	siVersion       = 0x04 // u32 version
	siFlags         = 0x08 // u32 flags (SIF_xxx)
	siNrModules     = 0x0c // u32 nr_modules
	siModlistPaddr  = 0x10 // u64 modlist_paddr
	siCmdlinePaddr  = 0x18 // u64 cmdline_paddr
	siRsdpPaddr     = 0x20 // u64 rsdp_paddr
	siMemmapPaddr   = 0x28 // u64 memmap_paddr (version 1)
	siMemmapEntries = 0x30 // u32 memmap_entries (version 1)
)

// findPVHEntry walks ELF notes (Elf64_Nhdr: namesz, descsz, type, then the
// name and the descriptor, each padded to 4 bytes) for a "Xen" note of type
// XEN_ELFNOTE_PHYS32_ENTRY. Linux emits its descriptor as a u32 or, in older
// kernels, as a u64 (_ASM_PTR). It returns 0 when there is no such note.
func findPVHEntry(notes [][]byte) (uint64, error) {
	le := binary.LittleEndian
	for _, n := range notes {
		for p := uint64(0); uint64(len(n))-p >= 12; {
			namesz, descsz, typ := uint64(le.Uint32(n[p:])), uint64(le.Uint32(n[p+4:])), le.Uint32(n[p+8:])
			name := p + 12
			desc := name + alignUp(namesz, 4)
			next := desc + alignUp(descsz, 4)
			if next > uint64(len(n)) {
				break // a truncated note ends the list; the kernel ignores it too
			}
			if typ == xenElfnotePhys32Entry && namesz == 4 && string(n[name:name+4]) == "Xen\x00" {
				var e uint64
				switch descsz {
				case 4:
					e = uint64(le.Uint32(n[desc:]))
				case 8:
					e = le.Uint64(n[desc:])
				default:
					return 0, errf(ErrBadImage, "XEN_ELFNOTE_PHYS32_ENTRY note has a %d-byte descriptor", descsz)
				}
				if e == 0 || e >= fourGiB {
					return 0, errf(ErrBadImage, "PVH entry point %#x is not a 32-bit physical address", e)
				}
				return e, nil
			}
			p = next
		}
	}
	return 0, nil
}

// buildStartInfo lays out struct hvm_start_info, its memory map and its
// module list as the bytes of [StartInfoAddr, pvhAreaEnd).
func buildStartInfo(cmdline uint64, initrd Range, rsdp uint64, e820 []E820Entry) ([]byte, error) {
	if len(e820) > MaxE820Entries {
		return nil, errf(ErrConfig, "%d memory map entries, at most %d fit", len(e820), MaxE820Entries)
	}
	b := make([]byte, pvhAreaEnd-StartInfoAddr)
	le := binary.LittleEndian
	le.PutUint32(b[siMagic:], hvmStartMagic)
	le.PutUint32(b[siVersion:], hvmStartVersion)
	le.PutUint32(b[siFlags:], 0)
	le.PutUint64(b[siCmdlinePaddr:], cmdline)
	le.PutUint64(b[siRsdpPaddr:], rsdp)
	if initrd.Size != 0 {
		// The first module is the initrd (enlighten.c, init_pvh_bootparams).
		le.PutUint32(b[siNrModules:], 1)
		le.PutUint64(b[siModlistPaddr:], pvhModlistAddr)
		m := b[pvhModlistAddr-StartInfoAddr:]
		le.PutUint64(m[0x00:], initrd.Start) // paddr
		le.PutUint64(m[0x08:], initrd.Size)  // size
		le.PutUint64(m[0x10:], 0)            // cmdline_paddr: none
		le.PutUint64(m[0x18:], 0)            // reserved
	}
	le.PutUint64(b[siMemmapPaddr:], pvhMemmapAddr)
	le.PutUint32(b[siMemmapEntries:], uint32(len(e820)))
	for i, e := range e820 {
		// struct hvm_memmap_table_entry: addr, size, type, reserved. The
		// XEN_HVM_MEMMAP_TYPE_* values are the e820 ones.
		m := b[pvhMemmapAddr-StartInfoAddr+i*memmapEntrySize:]
		le.PutUint64(m[0:], e.Addr)
		le.PutUint64(m[8:], e.Size)
		le.PutUint32(m[16:], uint32(e.Type))
		le.PutUint32(m[20:], 0)
	}
	return b, nil
}
