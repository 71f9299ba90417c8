package boot

import (
	"debug/elf"
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseELF(t *testing.T) {
	e, err := parseELF(testKernelELF(true))
	require.NoError(t, err)
	assert.Equal(t, uint64(0x1000000), e.entry)
	assert.Equal(t, uint64(0x1000040), e.pvhEntry)
	assert.Equal(t, uint64(0x1000000), e.start)
	assert.Equal(t, uint64(0x1200000+200*kib), e.end)
	require.Len(t, e.segments, 2)
	assert.Equal(t, uint64(200*kib), e.segments[1].memsz)
	assert.Len(t, e.segments[1].data, 8*kib)

	e, err = parseELF(testKernelELF(false))
	require.NoError(t, err)
	assert.Zero(t, e.pvhEntry)
}

func TestParseELFVirtualEntry(t *testing.T) {
	// e_entry given as a virtual address is translated through its segment.
	b := buildELF(0xffffffff81000010, []testSeg{{paddr: 0x1000000, vaddr: 0xffffffff81000000, data: make([]byte, 64)}}, nil)
	e, err := parseELF(b)
	require.NoError(t, err)
	assert.Equal(t, uint64(0x1000010), e.entry)
}

func TestParseELFPVHNote(t *testing.T) {
	seg := []testSeg{{paddr: 0x1000000, data: make([]byte, 4096)}}
	tests := []struct {
		name  string
		notes []byte
		want  uint64
		errIs error
	}{
		{"u32 descriptor", pvhNote(0x1000100, 4), 0x1000100, nil},
		{"u64 descriptor", pvhNote(0x1000200, 8), 0x1000200, nil},
		{"after other notes", append(elfNote("Linux", 1, []byte{1, 2, 3}), pvhNote(0x1000300, 4)...), 0x1000300, nil},
		{"other owner", elfNote("Xe", xenElfnotePhys32Entry, []byte{0, 1, 0, 0}), 0, nil},
		{"truncated note", pvhNote(0x1000100, 4)[:18], 0, nil},
		{"odd descriptor size", elfNote("Xen", xenElfnotePhys32Entry, []byte{1, 2}), 0, ErrBadImage},
		{"entry outside the kernel", pvhNote(0x2000000, 4), 0, ErrBadImage},
		{"entry above 4 GiB", pvhNote(0x1_0000_0000, 8), 0, ErrBadImage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := parseELF(buildELF(0x1000000, seg, tt.notes))
			if tt.errIs != nil {
				require.ErrorIs(t, err, tt.errIs)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, e.pvhEntry)
		})
	}
}

func TestParseELFErrors(t *testing.T) {
	good := buildELF(0x1000000, []testSeg{{paddr: 0x1000000, data: make([]byte, 256)}}, nil)
	patch := func(off int, v any) []byte {
		b := append([]byte(nil), good...)
		switch v := v.(type) {
		case uint8:
			b[off] = v
		case uint16:
			binary.LittleEndian.PutUint16(b[off:], v)
		case uint64:
			binary.LittleEndian.PutUint64(b[off:], v)
		}
		return b
	}
	const ph = elfHeaderSize // the first program header
	tests := []struct {
		name  string
		b     []byte
		errIs error
		msg   string
	}{
		{"not ELF", []byte("MZ\x90\x00"), ErrNotKernel, ""},
		{"truncated header", good[:40], ErrTruncated, "shorter than an ELF header"},
		{"32-bit", patch(int(elf.EI_CLASS), uint8(elf.ELFCLASS32)), ErrBadImage, "ELFCLASS64"},
		{"big-endian", patch(int(elf.EI_DATA), uint8(elf.ELFDATA2MSB)), ErrBadImage, "little-endian"},
		{"i386", patch(0x12, uint16(elf.EM_386)), ErrBadImage, "EM_X86_64"},
		{"shared object", patch(0x10, uint16(elf.ET_DYN)), ErrBadImage, "ET_EXEC"},
		{"bad phentsize", patch(0x36, uint16(32)), ErrBadImage, "program header size"},
		{"no program headers", patch(0x38, uint16(0)), ErrBadImage, "0 program headers"},
		{"too many program headers", patch(0x38, uint16(1000)), ErrBadImage, "1000 program headers"},
		{"phoff past the end", patch(0x20, uint64(1<<40)), ErrTruncated, "program headers"},
		{"segment past the end", patch(ph+0x08, uint64(len(good))), ErrTruncated, "past the end"},
		{"filesz huge", patch(ph+0x20, uint64(1<<62)), ErrTruncated, "past the end"},
		{"filesz > memsz", patch(ph+0x28, uint64(16)), ErrBadImage, "p_filesz"},
		{"wraps around", patch(ph+0x18, ^uint64(0)-16), ErrBadImage, "wraps"},
		{"no PT_LOAD", patch(ph, uint16(elf.PT_NULL)), ErrBadImage, "no PT_LOAD"},
		{"entry outside", patch(0x18, uint64(0x5000000)), ErrBadImage, "entry point"},
		{"overlapping segments", buildELF(0x1000000, []testSeg{{paddr: 0x1000000, data: make([]byte, 256)}, {paddr: 0x1000080, data: make([]byte, 16)}}, nil), ErrBadImage, "overlap"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseELF(tt.b)
			require.ErrorIs(t, err, tt.errIs)
			assert.Contains(t, err.Error(), tt.msg)
		})
	}
}
