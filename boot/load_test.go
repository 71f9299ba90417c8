package boot

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLoadVmlinux64(t *testing.T) {
	kernel := testKernelELF(true)
	initrd := bytes.Repeat([]byte{0xAB}, 100*kib)
	ram := ramLayout(256 * mb)
	mem := newFakeMem(ram)
	// Dirty the .bss first: Load must clear it (guest memory is not fresh
	// after a reboot).
	_, err := mem.WriteAt(bytes.Repeat([]byte{0xEE}, 200*kib), 0x1200000)
	require.NoError(t, err)

	s, err := Load(mem, Config{Kernel: kernel, Initrd: initrd, Cmdline: "console=ttyS0 panic=-1", RAM: ram, RSDP: 0xE0000})
	require.NoError(t, err)
	assert.Equal(t, Linux64, s.Entry)
	assert.Equal(t, FormatVmlinux, s.Format)
	assert.Equal(t, CompressionNone, s.Compression)
	assert.Zero(t, s.Protocol)
	assert.Equal(t, 2047, s.CmdlineMax)
	assert.Equal(t, KernelPlacement{Start: 0x1000000, End: 0x1200000 + 200*kib, Entry: 0x1000000}, s.Kernel)
	assert.Equal(t, Range{Start: 256*mb - 100*kib, Size: 100 * kib}, s.Initrd)
	assert.Equal(t, longModeCPU(0x1000000), s.CPU)

	e, err := parseELF(kernel)
	require.NoError(t, err)
	for _, seg := range e.segments {
		assert.Equal(t, seg.data, mem.read(seg.paddr, len(seg.data)))
	}
	assert.Equal(t, make([]byte, 200*kib-8*kib), mem.read(0x1200000+8*kib, 200*kib-8*kib), ".bss not cleared")
	assert.Equal(t, initrd, mem.read(s.Initrd.Start, len(initrd)))
	assert.Equal(t, "console=ttyS0 panic=-1\x00", string(mem.read(CmdlineAddr, 23)))

	// Zero page.
	assert.Equal(t, "HdrS", string(mem.read(ZeroPageAddr+0x202, 4)))
	assert.Equal(t, uint8(0xff), mem.u8(ZeroPageAddr+0x210))
	assert.Equal(t, uint32(CmdlineAddr), mem.u32(ZeroPageAddr+0x228))
	assert.Equal(t, uint32(s.Initrd.Start), mem.u32(ZeroPageAddr+0x218))
	assert.Equal(t, uint32(100*kib), mem.u32(ZeroPageAddr+0x21c))
	assert.Equal(t, uint64(0xE0000), mem.u64(ZeroPageAddr+0x070))
	assert.Equal(t, uint8(3), mem.u8(ZeroPageAddr+0x1e8))
	assert.Equal(t, uint64(0x100000), mem.u64(ZeroPageAddr+0x2d0+2*20))

	// Page tables, GDT, IDT.
	assert.Equal(t, uint64(0xA003), mem.u64(PML4Addr))
	assert.Equal(t, uint64(0xE003), mem.u64(PDPTAddr+3*8))
	assert.Equal(t, uint64(0xFFE00083), mem.u64(PDAddr+4*pageSize-8))
	assert.Equal(t, uint64(0x00AF9B000000FFFF), mem.u64(GDTAddr+0x10))
	assert.Equal(t, uint64(0x00CF93000000FFFF), mem.u64(GDTAddr+0x18))
	assert.Equal(t, uint64(0), mem.u64(IDTAddr))
}

func TestLoadPVH(t *testing.T) {
	initrd := bytes.Repeat([]byte{0xCD}, 3*kib)
	ram := ramLayout(4 * gib)
	mem := newFakeMem(ram)
	s, err := Load(mem, Config{Kernel: testKernelELF(true), Initrd: initrd, Cmdline: "quiet", RAM: ram, RSDP: 0xE0000, Entry: PVH})
	require.NoError(t, err)
	assert.Equal(t, PVH, s.Entry)
	assert.Equal(t, pvhCPU(0x1000040), s.CPU)
	assert.Equal(t, uint64(0x1000040), s.Kernel.Entry)
	assert.Equal(t, Range{Start: 3*gib - 4*kib, Size: 3 * kib}, s.Initrd, "below 4 GiB for a vmlinux")

	si := uint64(StartInfoAddr)
	assert.Equal(t, uint32(0x336ec578), mem.u32(si+0x00), "magic")
	assert.Equal(t, uint32(1), mem.u32(si+0x04), "version")
	assert.Equal(t, uint32(0), mem.u32(si+0x08), "flags")
	assert.Equal(t, uint32(1), mem.u32(si+0x0c), "nr_modules")
	assert.Equal(t, uint64(CmdlineAddr), mem.u64(si+0x18), "cmdline_paddr")
	assert.Equal(t, uint64(0xE0000), mem.u64(si+0x20), "rsdp_paddr")
	modlist := mem.u64(si + 0x10)
	assert.Equal(t, s.Initrd.Start, mem.u64(modlist), "modlist[0].paddr")
	assert.Equal(t, uint64(3*kib), mem.u64(modlist+8), "modlist[0].size")
	memmap := mem.u64(si + 0x28)
	assert.Equal(t, uint64(StartInfoAddr+0x40), memmap, "memory map follows start_info")
	n := mem.u32(si + 0x30)
	require.Equal(t, uint32(len(s.E820)), n)
	for i, e := range s.E820 {
		m := memmap + uint64(i)*24
		assert.Equal(t, e, E820Entry{mem.u64(m), mem.u64(m + 8), E820Type(mem.u32(m + 16))})
	}
	assert.Less(t, uint64(pvhAreaEnd), uint64(ZeroPageAddr), "PVH structures run into the zero page")
	assert.Equal(t, uint64(0x00CF9B000000FFFF), mem.u64(GDTAddr+0x10), "32-bit code segment")
	assert.Equal(t, "quiet\x00", string(mem.read(CmdlineAddr, 6)))
}

func TestLoadProtocol(t *testing.T) {
	elfPayload := compress(t, CompressionGzip, tinyELF())
	tests := []struct {
		name        string
		relocatable bool
		pref        uint64
		wantLoad    uint64
		wantKernel  KernelPlacement
	}{
		{"fixed: code at 1 MiB, runs at pref_address", false, 0x1000000, 0x100000,
			KernelPlacement{Start: 0x100000, End: 0x1000000 + 4*mb, Entry: 0x100200}},
		{"relocatable: at pref_address aligned up", true, 0x1100000, 0x1200000,
			KernelPlacement{Start: 0x1200000, End: 0x1200000 + 4*mb, Entry: 0x1200200}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := defaultBz(elfPayload)
			o.relocatable, o.pref = tt.relocatable, tt.pref
			image := buildBzImage(o)
			z, err := parseBzImage(image)
			require.NoError(t, err)
			ram := ramLayout(128 * mb)
			mem := newFakeMem(ram)
			s, err := Load(mem, Config{Kernel: image, Initrd: []byte("initrd"), RAM: ram, Entry: Protocol})
			require.NoError(t, err)
			assert.Equal(t, Protocol, s.Entry)
			assert.Equal(t, tt.wantKernel, s.Kernel)
			assert.Equal(t, longModeCPU(tt.wantLoad+0x200), s.CPU)
			assert.Zero(t, s.DecompressTime)
			assert.Equal(t, z.pm, mem.read(tt.wantLoad, len(z.pm)))
			assert.Equal(t, uint32(tt.wantLoad), mem.u32(ZeroPageAddr+hdrCode32Start))
			assert.Equal(t, z.header[hdrInitSize-hdrStart:hdrEnd-hdrStart], mem.read(ZeroPageAddr+hdrInitSize, hdrEnd-hdrInitSize), "header copied")
		})
	}
}

func TestLoadFallsBackToProtocol(t *testing.T) {
	lzo := withSize([]byte{0x89, 'L', 'Z', 'O', 0, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3}, 1000)
	ram := ramLayout(64 * mb)
	o := defaultBz(lzo)

	s, err := Load(newFakeMem(ram), Config{Kernel: buildBzImage(o), RAM: ram})
	require.NoError(t, err)
	assert.Equal(t, Protocol, s.Entry)
	assert.Equal(t, CompressionLZO, s.Compression)
	assert.Contains(t, s.Fallback, "lzo payload cannot be decompressed on the host")

	_, err = Load(newFakeMem(ram), Config{Kernel: buildBzImage(o), RAM: ram, Entry: Linux64})
	require.ErrorIs(t, err, ErrUnsupported)

	// A payload that is not an ELF also falls back.
	s, err = Load(newFakeMem(ram), Config{Kernel: buildBzImage(defaultBz(compress(t, CompressionGzip, []byte("raw binary kernel")))), RAM: ram})
	require.NoError(t, err)
	assert.Equal(t, Protocol, s.Entry)
	assert.Contains(t, s.Fallback, "not an ELF")

	// No fallback without a 64-bit entry: the error names both reasons.
	o.xloadflags = 0
	_, err = Load(newFakeMem(ram), Config{Kernel: buildBzImage(o), RAM: ram})
	require.ErrorIs(t, err, ErrUnsupported)
	assert.Contains(t, err.Error(), "lzo")
	assert.Contains(t, err.Error(), "XLF_KERNEL_64")

	// Corrupt data is an error, not a reason to fall back.
	gz := compress(t, CompressionGzip, tinyELF())
	gz[len(gz)/2] ^= 0xff
	_, err = Load(newFakeMem(ram), Config{Kernel: buildBzImage(defaultBz(gz)), RAM: ram})
	require.ErrorIs(t, err, ErrDecompress)
}

func TestLoadInitrdAbove4G(t *testing.T) {
	o := defaultBz(compress(t, CompressionGzip, tinyELF()))
	o.relocatable, o.xloadflags = true, XLFKernel64|XLFCanBeLoadedAbove4G
	ram := ramLayout(6 * gib)
	mem := newFakeMem(ram)
	s, err := Load(mem, Config{Kernel: buildBzImage(o), Initrd: make([]byte, 5*mb), RAM: ram})
	require.NoError(t, err)
	assert.Equal(t, Range{Start: 7*gib - 5*mb, Size: 5 * mb}, s.Initrd)
	assert.Equal(t, uint32((7*gib-5*mb)&0xffffffff), mem.u32(ZeroPageAddr+0x218))
	assert.Equal(t, uint32(1), mem.u32(ZeroPageAddr+0x0c0), "ext_ramdisk_image")

	// Without XLF_CAN_BE_LOADED_ABOVE_4G it stays below initrd_addr_max.
	o.xloadflags = XLFKernel64
	s, err = Load(newFakeMem(ram), Config{Kernel: buildBzImage(o), Initrd: make([]byte, 5*mb), RAM: ram})
	require.NoError(t, err)
	assert.Equal(t, Range{Start: 2*gib - 5*mb, Size: 5 * mb}, s.Initrd)
}

// failingMem fails every write.
type failingMem struct{}

func (failingMem) WriteAt([]byte, int64) (int, error) { return 0, errors.New("boom") }

// shortMem claims to write less than asked.
type shortMem struct{}

func (shortMem) WriteAt(p []byte, _ int64) (int, error) { return len(p) / 2, nil }

func TestLoadErrors(t *testing.T) {
	ram := ramLayout(64 * mb)
	vm := testKernelELF(false)
	bz := buildBzImage(defaultBz(compress(t, CompressionGzip, tinyELF())))
	old := defaultBz(compress(t, CompressionGzip, tinyELF()))
	old.version = 0x0205
	badAlign := defaultBz(compress(t, CompressionGzip, tinyELF()))
	badAlign.relocatable, badAlign.align = true, 0x123456
	noELF := defaultBz(compress(t, CompressionGzip, []byte{0x7f, 'E', 'L', 'F', 1}))
	tests := []struct {
		name  string
		mem   Memory
		cfg   Config
		errIs error
		msg   string
	}{
		{"not a kernel", nil, Config{Kernel: []byte("#!/bin/sh\necho hi\n"), RAM: ram}, ErrNotKernel, "not a Linux kernel: no bzImage header and no ELF magic"},
		{"empty kernel", nil, Config{RAM: ram}, ErrNotKernel, ""},
		{"truncated ELF", nil, Config{Kernel: vm[:100], RAM: ram}, ErrTruncated, "ELF vmlinux"},
		{"truncated bzImage", nil, Config{Kernel: bz[:2000], RAM: ram}, ErrTruncated, "bzImage"},
		{"old protocol", nil, Config{Kernel: buildBzImage(old), RAM: ram}, ErrProtocolTooOld, "boot protocol 2.05 is older than 2.06"},
		{"bad kernel_alignment", nil, Config{Kernel: buildBzImage(badAlign), RAM: ram}, ErrBadImage, "kernel_alignment"},
		{"decompressed ELF is broken", nil, Config{Kernel: buildBzImage(noELF), RAM: ram}, ErrTruncated, "decompressed vmlinux"},
		{"command line too long", nil, Config{Kernel: vm, RAM: ram, Cmdline: strings.Repeat("x", 2048)}, ErrCmdlineTooLong,
			"command line is 2048 bytes, the kernel accepts at most 2047"},
		{"command line with NUL", nil, Config{Kernel: vm, RAM: ram, Cmdline: "a\x00b"}, ErrConfig, "NUL"},
		{"initrd too large", nil, Config{Kernel: vm, RAM: ram, Initrd: make([]byte, 48*mb)}, ErrInitrdTooLarge,
			"initrd (48 MiB) does not fit in guest RAM below 0x100000000"},
		{"RAM too small for the kernel", nil, Config{Kernel: vm, RAM: ramLayout(17 * mb)}, ErrNoRoom, "kernel needs [0x1000000, 0x1232000)"},
		{"RAM too small for init_size", nil, Config{Kernel: bz, RAM: ramLayout(18 * mb)}, ErrNoRoom, "[0x1000000, 0x1400000)"},
		{"kernel in a RAM gap", nil, Config{Kernel: vm, RAM: []Range{{0, 16 * mb}, {32 * mb, 32 * mb}}}, ErrNoRoom, "kernel needs"},
		{"kernel below 1 MiB", nil, Config{Kernel: buildELF(0x8000, []testSeg{{paddr: 0x8000, data: make([]byte, 16)}}, nil), RAM: ram}, ErrNoRoom, "below 1 MiB"},
		{"kernel above 4 GiB", nil, Config{Kernel: buildELF(5*gib, []testSeg{{paddr: 5 * gib, data: make([]byte, 16)}}, nil), RAM: ramLayout(8 * gib)}, ErrNoRoom, "above the 4 GiB"},
		{"no low RAM", nil, Config{Kernel: vm, RAM: []Range{{1 * mb, 63 * mb}}}, ErrNoRoom, "low memory"},
		{"no PVH note", nil, Config{Kernel: vm, RAM: ram, Entry: PVH}, ErrUnsupported, "XEN_ELFNOTE_PHYS32_ENTRY"},
		{"Protocol on a vmlinux", nil, Config{Kernel: vm, RAM: ram, Entry: Protocol}, ErrUnsupported, "needs a bzImage"},
		{"bad entry mode", nil, Config{Kernel: vm, RAM: ram, Entry: 9}, ErrConfig, "entry mode"},
		{"unsorted RAM", nil, Config{Kernel: vm, RAM: []Range{{32 * mb, 32 * mb}, {0, 32 * mb}}}, ErrConfig, "overlaps or precedes"},
		{"no RAM", nil, Config{Kernel: vm}, ErrConfig, "no RAM"},
		{"nil memory", Memory(nil), Config{Kernel: vm, RAM: ram}, ErrConfig, "nil Memory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fm := newFakeMem(tt.cfg.RAM)
			mem := tt.mem
			if mem == nil && tt.name != "nil memory" {
				mem = fm
			}
			_, err := Load(mem, tt.cfg)
			require.ErrorIs(t, err, tt.errIs)
			assert.Contains(t, err.Error(), tt.msg)
			assert.NotContains(t, err.Error(), "\n", "errors are one line")
			assert.Zero(t, fm.writes, "memory written before the error")
			t.Log(err)
		})
	}

	_, err := Load(failingMem{}, Config{Kernel: vm, RAM: ram})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "writing kernel segment at 0x1000000: boom")
	_, err = Load(shortMem{}, Config{Kernel: vm, RAM: ram})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "short write")
}

func TestEntryMode(t *testing.T) {
	for _, m := range []EntryMode{Auto, Linux64, PVH, Protocol} {
		got, err := ParseEntryMode(strings.ToUpper(m.String()))
		require.NoError(t, err)
		assert.Equal(t, m, got)
	}
	_, err := ParseEntryMode("bios")
	assert.ErrorIs(t, err, ErrConfig)
	assert.Equal(t, "EntryMode(7)", EntryMode(7).String())
}

// TestLayoutDoesNotOverlap checks the fixed low-memory structures against
// each other and against the EBDA.
func TestLayoutDoesNotOverlap(t *testing.T) {
	regions := []Range{
		{GDTAddr, bootGDTSize},
		{IDTAddr, bootIDTSize},
		{StartInfoAddr, pvhAreaEnd - StartInfoAddr},
		{ZeroPageAddr, zeroPageSize},
		{BootStackAddr - 0x100, 0x100},
		{PML4Addr, pageTableEnd - PML4Addr},
		{CmdlineAddr, cmdlineAreaSz},
	}
	for i, a := range regions {
		for _, b := range regions[i+1:] {
			assert.False(t, overlaps(a.Start, a.Size, b.Start, b.Size), "%v overlaps %v", a, b)
		}
		assert.LessOrEqual(t, a.End(), uint64(EBDAStart))
	}
	assert.Equal(t, uint64(pageTableEnd), uint64(0xF000))
	// The kernel's copy of the header never runs into edd_mbr_sig_buffer.
	assert.LessOrEqual(t, hdrEnd, hdrAreaEnd)
	assert.Equal(t, 0x2d0+MaxE820Entries*bpE820EntrySize, 0xcd0)
}
