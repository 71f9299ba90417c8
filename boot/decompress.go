package boot

import (
	"bytes"
	"compress/bzip2"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	kgzip "github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz/lzma"
)

// MaxDecompressedSize caps the size of a decompressed bzImage payload, so a
// hostile file cannot make the host allocate without bound. Real kernels are
// 20-80 MiB uncompressed.
const MaxDecompressedSize = 512 << 20

// Compression names, as reported in Info and Setup.
const (
	CompressionGzip    = "gzip"
	CompressionXZ      = "xz"
	CompressionLZMA    = "lzma"
	CompressionBzip2   = "bzip2"
	CompressionLZ4     = "lz4"
	CompressionZstd    = "zstd"
	CompressionLZO     = "lzo"
	CompressionNone    = "none"    // a bare vmlinux
	CompressionUnknown = "unknown" // no known magic, or no payload fields (protocol < 2.08)
)

// compression is one payload format of arch/x86/boot/compressed/Makefile
// (the vmlinux.bin.* rules).
type compression struct {
	name  string
	magic []byte
	// sizeTrailer is set for the formats built with size_append: the
	// Makefile appends the uncompressed size as 4 LE bytes after the stream.
	// For gzip those 4 bytes are the stream's own ISIZE trailer.
	sizeTrailer bool
	// decode writes the uncompressed stream of src (without the appended
	// size) into out; nil means this package cannot decompress the format.
	decode func(src []byte, out *outputBuffer) error
}

// compressions lists the formats by magic number (the same table as
// arch/x86/boot/compressed/misc.c's decompressors and scripts/extract-vmlinux).
var compressions = []compression{
	{CompressionGzip, []byte{0x1f, 0x8b}, false, decodeGzip},
	{CompressionXZ, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}, true, decodeXZ},
	{CompressionLZMA, []byte{0x5d, 0x00, 0x00}, true, decodeLZMA},
	{CompressionBzip2, []byte{'B', 'Z', 'h'}, true, decodeBzip2},
	{CompressionLZ4, []byte{0x02, 0x21, 0x4c, 0x18}, true, decodeLZ4Legacy},
	{CompressionZstd, []byte{0x28, 0xb5, 0x2f, 0xfd}, true, decodeZstd},
	{CompressionLZO, []byte{0x89, 'L', 'Z', 'O'}, true, nil}, // lzop: no pure-Go decoder
}

// detectCompression returns the format whose magic starts payload, or nil.
func detectCompression(payload []byte) *compression {
	for i := range compressions {
		if bytes.HasPrefix(payload, compressions[i].magic) {
			return &compressions[i]
		}
	}
	return nil
}

// compressionName names the format of payload for Probe.
func compressionName(payload []byte) string {
	if c := detectCompression(payload); c != nil {
		return c.name
	}
	return CompressionUnknown
}

// decompressPayload decompresses a bzImage payload. The last 4 bytes of the
// payload are the uncompressed size (LE); the output must have exactly that
// size, which must not exceed MaxDecompressedSize. It returns ErrUnsupported
// for formats it cannot decode and ErrDecompress for corrupt data.
func decompressPayload(payload []byte) ([]byte, string, error) {
	c := detectCompression(payload)
	if c == nil {
		n := min(len(payload), 6)
		return nil, CompressionUnknown, errf(ErrUnsupported, "no known compression magic at the start of the payload (% x)", payload[:n])
	}
	if c.decode == nil {
		return nil, c.name, errf(ErrUnsupported, "%s payload cannot be decompressed on the host", c.name)
	}
	if len(payload) < len(c.magic)+4 {
		return nil, c.name, errf(ErrDecompress, "%s payload is only %d bytes", c.name, len(payload))
	}
	want := uint64(binary.LittleEndian.Uint32(payload[len(payload)-4:]))
	if want > MaxDecompressedSize {
		return nil, c.name, errf(ErrDecompress, "payload declares %d bytes uncompressed, more than the %s limit", want, mib(MaxDecompressedSize))
	}
	src := payload
	if c.sizeTrailer {
		src = payload[:len(payload)-4]
	}
	out := newOutputBuffer(int(want), len(src))
	if err := c.decode(src, out); err != nil {
		if errors.Is(err, errOutputFull) {
			return nil, c.name, errf(ErrDecompress, "%s payload decompresses to more than the %d bytes it declares", c.name, want)
		}
		if errors.Is(err, ErrUnsupported) {
			return nil, c.name, err
		}
		return nil, c.name, errf(ErrDecompress, "%s payload is corrupt: %v", c.name, err)
	}
	if uint64(len(out.buf)) != want {
		return nil, c.name, errf(ErrDecompress, "%s payload decompressed to %d bytes, but declares %d", c.name, len(out.buf), want)
	}
	return out.buf, c.name, nil
}

// errOutputFull is returned by outputBuffer when the output would exceed
// its limit.
var errOutputFull = errors.New("decompressed output exceeds its declared size")

// outputBuffer collects decompressed bytes up to a hard limit. It grows on
// demand, so a tiny payload that lies about its size costs little memory.
type outputBuffer struct {
	buf   []byte
	limit int
}

func newOutputBuffer(limit, srcLen int) *outputBuffer {
	// Kernels compress 2-6x; start with room for 8x and grow if needed.
	return &outputBuffer{buf: make([]byte, 0, min(limit, 8*srcLen+1<<20)), limit: limit}
}

// Write appends p, or fails with errOutputFull without writing anything.
func (o *outputBuffer) Write(p []byte) (int, error) {
	if len(p) > o.limit-len(o.buf) {
		return 0, errOutputFull
	}
	o.buf = append(o.buf, p...)
	return len(p), nil
}

// room returns up to n bytes of writable space after the data, growing the
// buffer; the caller fills a prefix of it and then calls commit. It returns
// fewer than n bytes when the limit is near, and none at the limit.
func (o *outputBuffer) room(n int) []byte {
	n = min(n, o.limit-len(o.buf))
	if need := len(o.buf) + n; need > cap(o.buf) {
		nb := make([]byte, len(o.buf), min(max(need, 2*cap(o.buf)), o.limit))
		copy(nb, o.buf)
		o.buf = nb
	}
	return o.buf[len(o.buf) : len(o.buf)+n]
}

// commit extends the data by n bytes written into room.
func (o *outputBuffer) commit(n int) { o.buf = o.buf[:len(o.buf)+n] }

// copyAll copies r into out and maps a short read of the source to a
// readable error.
func copyAll(out *outputBuffer, r io.Reader) error {
	_, err := io.Copy(out, r)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("compressed stream is truncated")
	}
	return err
}

// decodeGzip decodes the single gzip member that "gzip -n -9" writes.
func decodeGzip(src []byte, out *outputBuffer) error {
	zr, err := kgzip.NewReader(bytes.NewReader(src))
	if err != nil {
		return err
	}
	zr.Multistream(false)
	return copyAll(out, zr)
}

// decodeBzip2 decodes "bzip2 -9" output.
func decodeBzip2(src []byte, out *outputBuffer) error {
	return copyAll(out, bzip2.NewReader(bytes.NewReader(src)))
}

// lzmaHeaderLen is the .lzma ("LZMA alone") header: properties byte, u32
// dictionary size, u64 uncompressed size (all ones: unknown, EOS marker).
const lzmaHeaderLen = 13

// decodeLZMA decodes "lzma -9" output (the classic .lzma format).
func decodeLZMA(src []byte, out *outputBuffer) error {
	if len(src) < lzmaHeaderLen {
		return fmt.Errorf("stream is shorter than its %d-byte header", lzmaHeaderLen)
	}
	// The header's dictionary size is what the decoder allocates. A
	// dictionary larger than the whole output is never needed (no match can
	// reach further back than the start), so clamp it to the declared size:
	// a forged header then cannot make us allocate 4 GiB.
	hdr := append([]byte(nil), src[:lzmaHeaderLen]...)
	dict := uint64(binary.LittleEndian.Uint32(hdr[1:]))
	lim := max(uint64(out.limit), lzma.MinDictCap)
	if dict > lim {
		binary.LittleEndian.PutUint32(hdr[1:], uint32(lim))
	}
	r, err := lzma.ReaderConfig{DictCap: int(max(min(dict, lim), lzma.MinDictCap))}.NewReader(
		io.MultiReader(bytes.NewReader(hdr), bytes.NewReader(src[lzmaHeaderLen:])))
	if err != nil {
		return err
	}
	return copyAll(out, r)
}

// decodeZstd decodes "zstd -22 --ultra" output. It decodes the whole
// buffer at once into the output (DecodeAll): the streaming decoder would
// allocate a ring of the frame's window size, 128 MiB for a kernel, on top of
// the output. The output is capped at the declared size; the window may be
// larger than the output (zstd reading from a pipe, as the kernel build does,
// cannot shrink it), so only MaxDecompressedSize bounds it.
func decodeZstd(src []byte, out *outputBuffer) error {
	d, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxMemory(MaxDecompressedSize),
		zstd.WithDecodeAllCapLimit(true))
	if err != nil {
		return err
	}
	defer d.Close()
	dst := out.room(out.limit - len(out.buf))
	res, err := d.DecodeAll(src, dst[:0])
	if errors.Is(err, zstd.ErrDecoderSizeExceeded) {
		return errOutputFull
	}
	if err != nil {
		return err
	}
	if len(res) > len(dst) {
		return errOutputFull
	}
	if len(res) > 0 && &res[0] != &dst[0] {
		copy(dst, res) // DecodeAll never reallocates with the cap limit; be safe anyway
	}
	out.commit(len(res))
	return nil
}
