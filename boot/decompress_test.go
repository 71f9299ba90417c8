package boot

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/pierrec/lz4/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/ulikunitz/xz"
)

// TestDecompressRoundTrip compresses a kernel ELF with the Go libraries,
// wraps it in a synthetic bzImage, loads it and checks that the segments
// land in guest memory.
func TestDecompressRoundTrip(t *testing.T) {
	kernel := testKernelELF(true)
	e, err := parseELF(kernel)
	require.NoError(t, err)
	for _, c := range []string{CompressionGzip, CompressionZstd, CompressionXZ, CompressionLZMA, CompressionLZ4} {
		t.Run(c, func(t *testing.T) {
			payload := compress(t, c, kernel)
			out, name, err := decompressPayload(payload)
			require.NoError(t, err)
			assert.Equal(t, c, name)
			assert.Equal(t, kernel, out)

			ram := ramLayout(64 * mb)
			mem := newFakeMem(ram)
			s, err := Load(mem, Config{Kernel: buildBzImage(defaultBz(payload)), RAM: ram})
			require.NoError(t, err)
			assert.Equal(t, Linux64, s.Entry)
			assert.Equal(t, FormatBzImage, s.Format)
			assert.Equal(t, c, s.Compression)
			assert.Empty(t, s.Fallback)
			assert.Equal(t, uint64(0x1000000), s.CPU.RIP)
			for _, seg := range e.segments {
				assert.Equal(t, seg.data, mem.read(seg.paddr, len(seg.data)))
			}
		})
	}
}

// TestDecompressReferenceFixtures decodes testdata/x86.elf as compressed by
// the reference tools with the kernel's own options (testdata/README.md).
func TestDecompressReferenceFixtures(t *testing.T) {
	plain, err := os.ReadFile(filepath.Join("testdata", "x86.elf"))
	require.NoError(t, err)
	tests := []struct {
		file, name string
	}{
		{"x86.elf.gz", CompressionGzip},
		{"x86.elf.xz", CompressionXZ},
		{"x86.elf.lzma", CompressionLZMA},
		{"x86.elf.bz2", CompressionBzip2},
		{"x86.elf.lz4", CompressionLZ4},
		{"x86.elf.zst", CompressionZstd},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			comp, err := os.ReadFile(filepath.Join("testdata", tt.file))
			require.NoError(t, err)
			payload := comp
			if tt.name != CompressionGzip {
				payload = withSize(comp, len(plain))
			}
			out, name, err := decompressPayload(payload)
			require.NoError(t, err)
			assert.Equal(t, tt.name, name)
			assert.Equal(t, plain, out)

			ram := ramLayout(64 * mb)
			mem := newFakeMem(ram)
			s, err := Load(mem, Config{Kernel: buildBzImage(defaultBz(payload)), RAM: ram, Entry: PVH})
			require.NoError(t, err)
			assert.Equal(t, PVH, s.Entry)
			assert.Equal(t, uint64(0x1000010), s.CPU.RIP)
		})
	}
}

// TestXZFixtureUsesBCJ makes sure the xz fixture really exercises the x86
// BCJ filter, and that decoding without undoing it gives different bytes.
func TestXZFixtureUsesBCJ(t *testing.T) {
	comp, err := os.ReadFile(filepath.Join("testdata", "x86.elf.xz"))
	require.NoError(t, err)
	plain, err := os.ReadFile(filepath.Join("testdata", "x86.elf"))
	require.NoError(t, err)
	h, _, err := parseXZBlockHeader(comp, 12)
	require.NoError(t, err)
	assert.True(t, h.x86)
	assert.Equal(t, uint64(32<<20), h.dictSize)

	// The fixture has calls the filter converts: running the decoder over the
	// plain data changes it.
	filtered := append([]byte(nil), plain...)
	bcjX86Decode(filtered, 0)
	assert.NotEqual(t, plain, filtered)
}

func TestBCJX86Decode(t *testing.T) {
	tests := []struct {
		name      string
		in, want  []byte
		startAddr uint32
	}{
		// An E8 call at 0 whose absolute target 0x105 becomes relative 0x100.
		{"call", []byte{0xe8, 0x05, 0x01, 0x00, 0x00, 0x90, 0x90, 0x90, 0x90}, []byte{0xe8, 0x00, 0x01, 0x00, 0x00, 0x90, 0x90, 0x90, 0x90}, 0},
		// The start offset shifts the position.
		{"offset", []byte{0xe9, 0x15, 0x01, 0x00, 0x00, 0x90, 0x90, 0x90, 0x90}, []byte{0xe9, 0x00, 0x01, 0x00, 0x00, 0x90, 0x90, 0x90, 0x90}, 0x10},
		// The high byte is neither 00 nor FF: not converted.
		{"not-a-call", []byte{0xe8, 0x05, 0x01, 0x00, 0x12, 0x90, 0x90, 0x90, 0x90}, []byte{0xe8, 0x05, 0x01, 0x00, 0x12, 0x90, 0x90, 0x90, 0x90}, 0},
		// Too short: the last 4 bytes are never converted.
		{"short", []byte{0xe8, 0x05, 0x01, 0x00}, []byte{0xe8, 0x05, 0x01, 0x00}, 0},
		{"empty", nil, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := append([]byte(nil), tt.in...)
			bcjX86Decode(b, tt.startAddr)
			assert.Equal(t, tt.want, b)
		})
	}
}

// TestLZ4ConcatenatedLegacyFrames checks that a second legacy frame magic
// in place of a block size continues the stream, as lib/decompress_unlz4.c
// allows.
func TestLZ4ConcatenatedLegacyFrames(t *testing.T) {
	a, b := pseudoCode(100*kib, 11), pseudoCode(9*mb, 12) // b spans two 8 MiB blocks
	frame := func(d []byte) []byte {
		var buf bytes.Buffer
		w := lz4.NewWriter(&buf)
		require.NoError(t, w.Apply(lz4.LegacyOption(true)))
		_, err := w.Write(d)
		require.NoError(t, err)
		require.NoError(t, w.Close())
		return buf.Bytes()
	}
	want := append(append([]byte(nil), a...), b...)
	payload := withSize(append(frame(a), frame(b)...), len(want))
	out, _, err := decompressPayload(payload)
	require.NoError(t, err)
	assert.Equal(t, want, out)
}

// TestXZMultiBlockChecks decodes multi-block xz streams with every check type.
func TestXZMultiBlockChecks(t *testing.T) {
	data := pseudoCode(70*kib, 13)
	for _, check := range []byte{xz.None, xz.CRC32, xz.CRC64, xz.SHA256} {
		var b bytes.Buffer
		w, err := xz.WriterConfig{CheckSum: check, NoCheckSum: check == xz.None, BlockSize: 16 * kib}.NewWriter(&b)
		require.NoError(t, err)
		_, err = w.Write(data)
		require.NoError(t, err)
		require.NoError(t, w.Close())
		out, _, err := decompressPayload(withSize(b.Bytes(), len(data)))
		require.NoError(t, err, "check %#x", check)
		assert.Equal(t, data, out)
	}
}

// TestOutputBufferGrows decodes a payload that expands far more than 8x,
// so the output buffer must grow past its initial guess.
func TestOutputBufferGrows(t *testing.T) {
	data := make([]byte, 20*mb)
	for _, c := range []string{CompressionGzip, CompressionLZ4, CompressionZstd} {
		payload := compress(t, c, data)
		require.Less(t, 8*len(payload)+mb, len(data))
		out, _, err := decompressPayload(payload)
		require.NoError(t, err, c)
		assert.Equal(t, len(data), len(out), c)
	}
}

func TestDecompressErrors(t *testing.T) {
	data := pseudoCode(64*kib, 5)
	gz := compress(t, CompressionGzip, data)
	lz := compress(t, CompressionLZ4, data)
	xzp := compress(t, CompressionXZ, data)
	setSize := func(p []byte, n uint32) []byte {
		p = append([]byte(nil), p...)
		binary.LittleEndian.PutUint32(p[len(p)-4:], n)
		return p
	}
	flip := func(p []byte, at int) []byte {
		p = append([]byte(nil), p...)
		p[at] ^= 0x55
		return p
	}
	// An xz block header naming the delta filter (ID 0x03) before LZMA2.
	deltaXZ := func() []byte {
		p := append([]byte(nil), xzp...)
		h := []byte{0x02, 0x01, 0x03, 0x01, 0x00, 0x21, 0x01, 0x16, 0, 0, 0, 0}
		binary.LittleEndian.PutUint32(h[8:], crc32IEEE(h[:8]))
		return append(append(p[:12:12], h...), p[12+int(p[12]+1)*4:]...)
	}
	tests := []struct {
		name    string
		payload []byte
		errIs   error
		msg     string
	}{
		{"unknown magic", withSize([]byte("hello, world"), 12), ErrUnsupported, "no known compression magic"},
		{"lzo", withSize([]byte{0x89, 'L', 'Z', 'O', 0, 1, 2, 3}, 100), ErrUnsupported, "lzo payload cannot be decompressed"},
		{"too short", []byte{0x1f, 0x8b, 0}, ErrDecompress, "only 3 bytes"},
		{"declared too big", setSize(lz, MaxDecompressedSize+1), ErrDecompress, "more than the 512 MiB limit"},
		{"declared larger", setSize(lz, uint32(len(data)+1)), ErrDecompress, "decompressed to 65536 bytes, but declares 65537"},
		{"declared smaller", setSize(lz, uint32(len(data)-1)), ErrDecompress, "decompresses to more than the 65535 bytes"},
		{"gzip declared smaller", setSize(gz, 1000), ErrDecompress, "more than the 1000 bytes"},
		{"gzip corrupt", flip(gz, 100), ErrDecompress, "gzip"},
		{"lz4 corrupt block size", flip(lz, 6), ErrDecompress, "lz4"},
		{"lz4 truncated", withSize(lz[:len(lz)-100], len(data)), ErrDecompress, "truncated"},
		{"xz corrupt", flip(xzp, 200), ErrDecompress, "xz"},
		{"xz bad header crc", flip(xzp, 13), ErrDecompress, "CRC32"},
		{"xz delta filter", deltaXZ(), ErrUnsupported, "filter 0x3"},
		{"xz truncated", withSize(xzp[:len(xzp)/2], len(data)), ErrDecompress, "xz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := decompressPayload(tt.payload)
			require.ErrorIs(t, err, tt.errIs)
			assert.Contains(t, err.Error(), tt.msg)
			t.Log(err)
		})
	}
}
