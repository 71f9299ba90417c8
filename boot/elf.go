package boot

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"sort"
)

// An ELF vmlinux is read through its program headers only: the PT_LOAD
// segments say what goes where in physical memory (p_paddr), e_entry is the
// physical address of startup_64 (arch/x86/kernel/vmlinux.lds.S:
// ENTRY(phys_startup_64)), and PT_NOTE segments carry the PVH entry note.
// Section headers are never needed, so a stripped or oddly linked kernel
// still loads. The structures come from debug/elf; every offset and size in
// them is checked here before use.

const (
	elfHeaderSize  = 64 // sizeof(Elf64_Ehdr)
	elfProgSize    = 56 // sizeof(Elf64_Phdr)
	elfMaxProgs    = 128
	elfMaxSegments = 64
)

// elfSegment is one PT_LOAD segment: data (p_filesz bytes of the file) goes
// to paddr, followed by memsz-filesz zero bytes.
type elfSegment struct {
	paddr, vaddr uint64
	memsz        uint64
	data         []byte
}

// elfImage is a parsed ELF vmlinux.
type elfImage struct {
	entry    uint64 // physical address of the 64-bit entry (startup_64)
	segments []elfSegment
	start    uint64 // lowest p_paddr
	end      uint64 // highest p_paddr + p_memsz
	pvhEntry uint64 // XEN_ELFNOTE_PHYS32_ENTRY, 0 if absent
}

// hasELFMagic reports whether b starts with "\x7fELF".
func hasELFMagic(b []byte) bool { return bytes.HasPrefix(b, []byte(elf.ELFMAG)) }

// parseELF parses an x86-64 ELF vmlinux.
func parseELF(b []byte) (*elfImage, error) {
	if !hasELFMagic(b) {
		return nil, ErrNotKernel
	}
	if len(b) < elfHeaderSize {
		return nil, errf(ErrTruncated, "file is %d bytes, shorter than an ELF header", len(b))
	}
	var h elf.Header64
	if _, err := binary.Decode(b[:elfHeaderSize], binary.LittleEndian, &h); err != nil {
		return nil, errf(ErrTruncated, "ELF header: %v", err)
	}
	if c := elf.Class(h.Ident[elf.EI_CLASS]); c != elf.ELFCLASS64 {
		return nil, errf(ErrBadImage, "ELF class is %v, want ELFCLASS64", c)
	}
	if d := elf.Data(h.Ident[elf.EI_DATA]); d != elf.ELFDATA2LSB {
		return nil, errf(ErrBadImage, "ELF data encoding is %v, want little-endian", d)
	}
	if m := elf.Machine(h.Machine); m != elf.EM_X86_64 {
		return nil, errf(ErrBadImage, "ELF machine is %v, want EM_X86_64", m)
	}
	if t := elf.Type(h.Type); t != elf.ET_EXEC {
		return nil, errf(ErrBadImage, "ELF type is %v, want ET_EXEC", t)
	}
	if h.Phentsize != elfProgSize {
		return nil, errf(ErrBadImage, "ELF program header size is %d, want %d", h.Phentsize, elfProgSize)
	}
	if h.Phnum == 0 || h.Phnum > elfMaxProgs {
		return nil, errf(ErrBadImage, "ELF has %d program headers, want 1-%d", h.Phnum, elfMaxProgs)
	}
	phEnd := h.Phoff + uint64(h.Phnum)*elfProgSize
	if h.Phoff > uint64(len(b)) || phEnd > uint64(len(b)) {
		return nil, errf(ErrTruncated, "ELF program headers [%#x, %#x) lie past the end of the %d-byte file", h.Phoff, phEnd, len(b))
	}

	img := &elfImage{}
	var notes [][]byte
	for i := 0; i < int(h.Phnum); i++ {
		var ph elf.Prog64
		off := h.Phoff + uint64(i)*elfProgSize
		if _, err := binary.Decode(b[off:off+elfProgSize], binary.LittleEndian, &ph); err != nil {
			return nil, errf(ErrTruncated, "ELF program header %d: %v", i, err)
		}
		switch elf.ProgType(ph.Type) {
		case elf.PT_LOAD, elf.PT_NOTE:
		default:
			continue
		}
		if ph.Off > uint64(len(b)) || ph.Filesz > uint64(len(b))-ph.Off {
			return nil, errf(ErrTruncated, "ELF segment %d [%#x, +%#x) lies past the end of the %d-byte file", i, ph.Off, ph.Filesz, len(b))
		}
		data := b[ph.Off : ph.Off+ph.Filesz]
		if elf.ProgType(ph.Type) == elf.PT_NOTE {
			notes = append(notes, data)
			continue
		}
		if ph.Memsz == 0 {
			continue
		}
		if ph.Filesz > ph.Memsz {
			return nil, errf(ErrBadImage, "ELF segment %d has p_filesz %#x > p_memsz %#x", i, ph.Filesz, ph.Memsz)
		}
		if ph.Paddr+ph.Memsz < ph.Paddr || ph.Vaddr+ph.Memsz < ph.Vaddr {
			return nil, errf(ErrBadImage, "ELF segment %d at %#x (+%#x) wraps around the address space", i, ph.Paddr, ph.Memsz)
		}
		if len(img.segments) == elfMaxSegments {
			return nil, errf(ErrBadImage, "ELF has more than %d PT_LOAD segments", elfMaxSegments)
		}
		img.segments = append(img.segments, elfSegment{paddr: ph.Paddr, vaddr: ph.Vaddr, memsz: ph.Memsz, data: data})
	}
	if len(img.segments) == 0 {
		return nil, errf(ErrBadImage, "ELF has no PT_LOAD segment")
	}
	sort.Slice(img.segments, func(i, j int) bool { return img.segments[i].paddr < img.segments[j].paddr })
	img.start, img.end = img.segments[0].paddr, img.segments[0].paddr
	for i, s := range img.segments {
		if i > 0 && s.paddr < img.end {
			return nil, errf(ErrBadImage, "ELF segments at %#x and %#x overlap in physical memory", img.segments[i-1].paddr, s.paddr)
		}
		img.end = s.paddr + s.memsz
	}

	entry, ok := img.physical(h.Entry)
	if !ok {
		return nil, errf(ErrBadImage, "ELF entry point %#x is not inside a loaded segment", h.Entry)
	}
	img.entry = entry

	pvh, err := findPVHEntry(notes)
	if err != nil {
		return nil, err
	}
	if pvh != 0 {
		if !img.insidePhysical(pvh) {
			return nil, errf(ErrBadImage, "PVH entry point %#x is not inside a loaded segment", pvh)
		}
		img.pvhEntry = pvh
	}
	return img, nil
}

// insidePhysical reports whether physical address a falls in a segment.
func (img *elfImage) insidePhysical(a uint64) bool {
	for _, s := range img.segments {
		if a >= s.paddr && a-s.paddr < s.memsz {
			return true
		}
	}
	return false
}

// physical turns an entry address into a physical one. vmlinux's e_entry
// is already physical; an ELF whose e_entry is virtual is translated
// through the segment that holds it.
func (img *elfImage) physical(a uint64) (uint64, bool) {
	if img.insidePhysical(a) {
		return a, true
	}
	for _, s := range img.segments {
		if a >= s.vaddr && a-s.vaddr < s.memsz {
			return s.paddr + (a - s.vaddr), true
		}
	}
	return 0, false
}
