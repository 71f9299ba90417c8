package boot

import (
	"encoding/binary"
	"fmt"

	"github.com/pierrec/lz4/v4"
)

// The kernel's LZ4 payload is "lz4 -l -9": the LZ4 legacy frame format
// (lz4_Frame_format.md, "Legacy frame"), decoded in the guest by
// lib/decompress_unlz4.c. A legacy frame is the magic 0x184C2102 followed by
// blocks, each a u32 LE compressed size and that many bytes of one LZ4 block
// that decompresses to at most 8 MiB. There is no end marker and no
// checksum; the stream ends with the input. Like the kernel's decoder we
// accept concatenated frames: a block size equal to the magic starts a new one.
//
// pierrec/lz4's Reader copes with this format too, but decoding the blocks
// ourselves with UncompressBlock keeps every size check in view and writes
// straight into the output buffer.
const (
	lz4LegacyMagic    = 0x184C2102
	lz4LegacyBlockMax = 8 << 20
)

// decodeLZ4Legacy decodes an LZ4 legacy stream without its size trailer.
func decodeLZ4Legacy(src []byte, out *outputBuffer) error {
	le := binary.LittleEndian
	if len(src) < 4 || le.Uint32(src) != lz4LegacyMagic {
		return fmt.Errorf("missing the lz4 legacy frame magic")
	}
	maxBlock := uint64(lz4.CompressBlockBound(lz4LegacyBlockMax))
	for p := 4; p < len(src); {
		if len(src)-p < 4 {
			return fmt.Errorf("%d stray bytes at offset %d after the last block", len(src)-p, p)
		}
		n := uint64(le.Uint32(src[p:]))
		p += 4
		if n == lz4LegacyMagic {
			continue // the next concatenated frame
		}
		if n == 0 || n > maxBlock {
			return fmt.Errorf("block at offset %d has impossible size %d", p-4, n)
		}
		if n > uint64(len(src)-p) {
			return fmt.Errorf("block at offset %d needs %d bytes, %d left: compressed stream is truncated", p-4, n, len(src)-p)
		}
		dst := out.room(lz4LegacyBlockMax)
		if len(dst) == 0 {
			return errOutputFull
		}
		k, err := lz4.UncompressBlock(src[p:p+int(n)], dst)
		if err != nil {
			// Near the declared size dst is short: tell a block that is
			// merely too big from a corrupt one.
			if len(dst) < lz4LegacyBlockMax {
				if _, err2 := lz4.UncompressBlock(src[p:p+int(n)], make([]byte, lz4LegacyBlockMax)); err2 == nil {
					return errOutputFull
				}
			}
			return fmt.Errorf("block at offset %d: %w", p-4, err)
		}
		out.commit(k)
		p += int(n)
	}
	return nil
}
