package boot

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"testing"

	kgzip "github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/stretchr/testify/require"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

const (
	kib = 1 << 10
	mb  = 1 << 20
	gib = 1 << 30
)

// ramLayout is the design.md layout for a guest of the given size: RAM from
// 0 up to min(size, 3 GiB), the rest from 4 GiB.
func ramLayout(size uint64) []Range {
	const low = 3 * gib
	if size <= low {
		return []Range{{0, size}}
	}
	return []Range{{0, low}, {4 * gib, size - low}}
}

// fakeMem is a sparse guest memory that rejects writes outside its RAM.
type fakeMem struct {
	ram    []Range
	pages  map[uint64]*[pageSize]byte
	writes int
}

func newFakeMem(ram []Range) *fakeMem {
	return &fakeMem{ram: ram, pages: map[uint64]*[pageSize]byte{}}
}

func (m *fakeMem) WriteAt(p []byte, gpa int64) (int, error) {
	if gpa < 0 || !ramCovers(m.ram, uint64(gpa), uint64(gpa)+uint64(len(p))) {
		return 0, fmt.Errorf("fakeMem: write [%#x, +%#x) outside RAM", gpa, len(p))
	}
	m.writes++
	n, a := len(p), uint64(gpa)
	for len(p) > 0 {
		pg := m.pages[a/pageSize]
		if pg == nil {
			pg = new([pageSize]byte)
			m.pages[a/pageSize] = pg
		}
		k := copy(pg[a%pageSize:], p)
		p, a = p[k:], a+uint64(k)
	}
	return n, nil
}

// read returns n bytes at gpa; never-written memory reads as zero.
func (m *fakeMem) read(gpa uint64, n int) []byte {
	out := make([]byte, n)
	for i := 0; i < n; {
		a := gpa + uint64(i)
		k := min(n-i, int(pageSize-a%pageSize))
		if pg := m.pages[a/pageSize]; pg != nil {
			copy(out[i:i+k], pg[a%pageSize:])
		}
		i += k
	}
	return out
}

func (m *fakeMem) u8(gpa uint64) uint8   { return m.read(gpa, 1)[0] }
func (m *fakeMem) u16(gpa uint64) uint16 { return binary.LittleEndian.Uint16(m.read(gpa, 2)) }
func (m *fakeMem) u32(gpa uint64) uint32 { return binary.LittleEndian.Uint32(m.read(gpa, 4)) }
func (m *fakeMem) u64(gpa uint64) uint64 { return binary.LittleEndian.Uint64(m.read(gpa, 8)) }

// testSeg is a PT_LOAD segment for buildELF.
type testSeg struct {
	paddr, vaddr uint64
	data         []byte
	memsz        uint64 // 0: len(data)
}

// buildELF builds a minimal x86-64 ET_EXEC ELF with the given segments and,
// if notes is non-nil, a PT_NOTE segment holding it.
func buildELF(entry uint64, segs []testSeg, notes []byte) []byte {
	nph := len(segs)
	if notes != nil {
		nph++
	}
	off := uint64(elfHeaderSize + nph*elfProgSize)
	var phs []elf.Prog64
	var body bytes.Buffer
	place := func(data []byte) uint64 {
		off = alignUp(off, 16)
		for uint64(elfHeaderSize+nph*elfProgSize+body.Len()) < off {
			body.WriteByte(0)
		}
		o := off
		body.Write(data)
		off += uint64(len(data))
		return o
	}
	for _, s := range segs {
		memsz := s.memsz
		if memsz == 0 {
			memsz = uint64(len(s.data))
		}
		vaddr := s.vaddr
		if vaddr == 0 {
			vaddr = s.paddr + 0xffffffff80000000
		}
		o := place(s.data)
		phs = append(phs, elf.Prog64{Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_X), Off: o,
			Vaddr: vaddr, Paddr: s.paddr, Filesz: uint64(len(s.data)), Memsz: memsz, Align: 16})
	}
	if notes != nil {
		o := place(notes)
		phs = append(phs, elf.Prog64{Type: uint32(elf.PT_NOTE), Off: o, Filesz: uint64(len(notes)), Memsz: uint64(len(notes)), Align: 4})
	}
	h := elf.Header64{Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Entry: entry, Phoff: elfHeaderSize, Ehsize: elfHeaderSize, Phentsize: elfProgSize, Phnum: uint16(nph)}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	h.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	h.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	var out bytes.Buffer
	binary.Write(&out, binary.LittleEndian, h)
	for _, p := range phs {
		binary.Write(&out, binary.LittleEndian, p)
	}
	out.Write(body.Bytes())
	return out.Bytes()
}

// elfNote encodes one ELF note.
func elfNote(name string, typ uint32, desc []byte) []byte {
	var b bytes.Buffer
	nm := append([]byte(name), 0)
	binary.Write(&b, binary.LittleEndian, [3]uint32{uint32(len(nm)), uint32(len(desc)), typ})
	b.Write(nm)
	b.Write(make([]byte, alignUp(uint64(len(nm)), 4)-uint64(len(nm))))
	b.Write(desc)
	b.Write(make([]byte, alignUp(uint64(len(desc)), 4)-uint64(len(desc))))
	return b.Bytes()
}

// pvhNote is a XEN_ELFNOTE_PHYS32_ENTRY note with a 4- or 8-byte descriptor.
func pvhNote(entry uint64, size int) []byte {
	d := make([]byte, 8)
	binary.LittleEndian.PutUint64(d, entry)
	return elfNote("Xen", xenElfnotePhys32Entry, d[:size])
}

// pseudoCode returns n deterministic bytes that look a little like x86
// code: runs of text, call/jmp opcodes with small relative targets (which the
// BCJ filter rewrites), and zeros.
func pseudoCode(n int, seed uint32) []byte {
	b := make([]byte, 0, n)
	x := seed | 1
	next := func() uint32 { x ^= x << 13; x ^= x >> 17; x ^= x << 5; return x }
	for len(b) < n {
		switch r := next() % 8; {
		case r < 3:
			rel := int32(next()%0x20000) - 0x10000
			b = append(b, 0xe8|byte(r&1), byte(rel), byte(rel>>8), byte(rel>>16), byte(rel>>24))
		case r < 6:
			b = append(b, "mov push pop ret lea xor"[next()%20:][:4]...)
		default:
			b = append(b, make([]byte, next()%16)...)
		}
	}
	return b[:n]
}

// testKernelELF is a small vmlinux-like ELF: text at 16 MiB (entry), data at
// 18 MiB with a .bss tail, and optionally a PVH note.
func testKernelELF(pvh bool) []byte {
	var notes []byte
	if pvh {
		notes = append(elfNote("GNU", 3, []byte{1, 2, 3, 4}), pvhNote(0x1000040, 8)...)
	}
	return buildELF(0x1000000, []testSeg{
		{paddr: 0x1000000, data: pseudoCode(48*kib, 1)},
		{paddr: 0x1200000, data: pseudoCode(8*kib, 2), memsz: 200 * kib},
	}, notes)
}

// bzOpts describes a synthetic bzImage.
type bzOpts struct {
	version     uint16
	setupSects  uint8
	payload     []byte // compressed payload including the size trailer
	xloadflags  uint16
	relocatable bool
	align       uint32
	pref        uint64
	initSize    uint32
	cmdlineSize uint32
	initrdMax   uint32
	stub        int // bytes of "decompressor" before the payload; 0: stubPrefix
}

// defaultBz returns the options of a 6.1-like non-relocatable kernel.
func defaultBz(payload []byte) bzOpts {
	return bzOpts{version: 0x020f, setupSects: 4, payload: payload, xloadflags: XLFKernel64,
		align: 0x200000, pref: 0x1000000, initSize: 4 * mb, cmdlineSize: 2047, initrdMax: 0x7fffffff}
}

// stubPrefix is the "decompressor" before the payload in a synthetic bzImage.
const stubPrefix = 0x400

// buildBzImage builds a bzImage: boot sector and setup sectors with the
// setup header, then the protected-mode code (a stub of stubPrefix bytes,
// the payload, some padding).
func buildBzImage(o bzOpts) []byte {
	ss := int(o.setupSects)
	if ss == 0 {
		ss = defaultSetupSec
	}
	setup := make([]byte, (ss+1)*sectorSize)
	le := binary.LittleEndian
	setup[hdrSetupSects] = o.setupSects
	le.PutUint16(setup[hdrBootFlag:], bootFlagMagic)
	setup[hdrJump] = 0xeb
	setup[hdrJump+1] = hdrEnd - hdrMagic
	le.PutUint32(setup[hdrMagic:], hdrSMagic)
	le.PutUint16(setup[hdrVersion:], o.version)
	setup[hdrLoadFlags] = loadedHigh
	le.PutUint32(setup[hdrCode32Start:], legacyLoadAddr)
	le.PutUint32(setup[hdrInitrdAddrMax:], o.initrdMax)
	le.PutUint32(setup[hdrKernelAlignment:], o.align)
	if o.relocatable {
		setup[hdrRelocatableKernel] = 1
	}
	setup[hdrMinAlignment] = 21
	le.PutUint16(setup[hdrXLoadFlags:], o.xloadflags)
	le.PutUint32(setup[hdrCmdlineSize:], o.cmdlineSize)
	stub := o.stub
	if stub == 0 {
		stub = stubPrefix
	}
	le.PutUint32(setup[hdrPayloadOffset:], uint32(stub))
	le.PutUint32(setup[hdrPayloadLength:], uint32(len(o.payload)))
	le.PutUint64(setup[hdrPrefAddress:], o.pref)
	le.PutUint32(setup[hdrInitSize:], o.initSize)
	pm := bytes.Repeat([]byte{0x90}, stub) // nops, as if the decompressor
	pm = append(pm, o.payload...)
	pm = append(pm, make([]byte, 16-len(pm)%16+16)...)
	le.PutUint32(setup[hdrSysSize:], uint32(len(pm)/16))
	return append(setup, pm...)
}

// withSize appends the 4-byte uncompressed size, as size_append does.
func withSize(comp []byte, n int) []byte {
	return binary.LittleEndian.AppendUint32(comp, uint32(n))
}

// compress compresses data the way the kernel's Makefile packages a
// payload, using the Go libraries.
func compress(t testing.TB, name string, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	switch name {
	case CompressionGzip:
		w, err := kgzip.NewWriterLevel(&b, kgzip.BestCompression)
		require.NoError(t, err)
		_, err = w.Write(data)
		require.NoError(t, err)
		require.NoError(t, w.Close())
		return b.Bytes() // ISIZE is the trailer
	case CompressionZstd:
		w, err := zstd.NewWriter(nil)
		require.NoError(t, err)
		defer w.Close()
		return withSize(w.EncodeAll(data, nil), len(data))
	case CompressionXZ:
		w, err := xz.WriterConfig{CheckSum: xz.CRC32, BlockSize: 20 * kib}.NewWriter(&b)
		require.NoError(t, err)
		_, err = w.Write(data)
		require.NoError(t, err)
		require.NoError(t, w.Close())
	case CompressionLZMA:
		w, err := lzma.WriterConfig{EOSMarker: true, Size: -1}.NewWriter(&b)
		require.NoError(t, err)
		_, err = w.Write(data)
		require.NoError(t, err)
		require.NoError(t, w.Close())
	case CompressionLZ4:
		w := lz4.NewWriter(&b)
		require.NoError(t, w.Apply(lz4.LegacyOption(true)))
		_, err := w.Write(data)
		require.NoError(t, err)
		require.NoError(t, w.Close())
	default:
		t.Fatalf("no Go compressor for %s", name)
	}
	return withSize(b.Bytes(), len(data))
}

func crc32IEEE(b []byte) uint32 { return crc32.ChecksumIEEE(b) }
