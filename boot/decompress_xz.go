package boot

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"hash/crc32"
	"hash/crc64"

	"github.com/ulikunitz/xz/lzma"
)

// The kernel's xz payload comes from scripts/xz_wrap.sh: "xz --check=crc32
// --x86 --lzma2=,dict=32MiB", a filter chain of the x86 BCJ filter followed
// by LZMA2. github.com/ulikunitz/xz reads only plain LZMA2 chains, so this
// file parses the .xz container itself (The .xz File Format 1.2.1, sections
// 2.1 Stream, 3 Block) and uses ulikunitz/xz/lzma for the LZMA2 data. The
// BCJ filter is undone on the host (bcjX86Decode).

// xz filter IDs (.xz format, 5.3 "Filter IDs" and 5.3.2 "Branch/Call/Jump").
const (
	xzFilterX86   = 0x04
	xzFilterLZMA2 = 0x21
)

// xz check types (.xz format, 2.1.1.2 "Stream Flags").
const (
	xzCheckNone   = 0x00
	xzCheckCRC32  = 0x01
	xzCheckCRC64  = 0x04
	xzCheckSHA256 = 0x0a
)

var xzMagic = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}

// xzCheckSize is the size of each check type (.xz format, 3.4 "Check"):
// types are grouped in threes of 0, 4, 8, 16, 32 and 64 bytes.
func xzCheckSize(t byte) int {
	if t == 0 {
		return 0
	}
	return 4 << ((t - 1) / 3)
}

// xzVarint decodes a multibyte integer (.xz format, 1.2 "Multibyte
// Integers"): 7 bits per byte, low first, at most 9 bytes, no redundant
// trailing zero byte.
func xzVarint(b []byte, p int) (uint64, int, error) {
	var v uint64
	for i := 0; i < 9; i++ {
		if p >= len(b) {
			return 0, p, fmt.Errorf("truncated integer in a block header")
		}
		c := b[p]
		p++
		v |= uint64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			if c == 0 && i > 0 {
				return 0, p, fmt.Errorf("badly encoded integer in a block header")
			}
			return v, p, nil
		}
	}
	return 0, p, fmt.Errorf("integer in a block header is longer than 9 bytes")
}

// decodeXZ decodes the first stream of an .xz file into out. Stream padding
// and the index after the last block are not needed to decode and are not
// read.
func decodeXZ(src []byte, out *outputBuffer) error {
	le := binary.LittleEndian
	// Stream Header (2.1.1): magic, 2 bytes of flags, CRC32 of the flags.
	if len(src) < 12 || !bytes.Equal(src[:6], xzMagic) {
		return fmt.Errorf("no stream header")
	}
	if src[6] != 0 || src[7]&0xf0 != 0 {
		return fmt.Errorf("unsupported stream flags %#x %#x", src[6], src[7])
	}
	if crc32.ChecksumIEEE(src[6:8]) != le.Uint32(src[8:12]) {
		return fmt.Errorf("stream header CRC32 mismatch")
	}
	checkType := src[7]
	checkSize := xzCheckSize(checkType)
	p := 12
	for {
		if p >= len(src) {
			return fmt.Errorf("stream is truncated before its index")
		}
		if src[p] == 0 {
			return nil // Index Indicator (4.1): no more blocks
		}
		var err error
		if p, err = decodeXZBlock(src, p, checkType, checkSize, out); err != nil {
			return err
		}
	}
}

// xzBlockHeader is the part of a Block Header (3.1) that decoding needs.
type xzBlockHeader struct {
	compressed, uncompressed int64  // -1 when absent
	x86                      bool   // x86 BCJ filter before LZMA2
	x86Start                 uint32 // BCJ start offset
	dictSize                 uint64 // LZMA2 dictionary size
}

// parseXZBlockHeader parses the block header at src[p] and returns it with
// the offset of the compressed data.
func parseXZBlockHeader(src []byte, p int) (xzBlockHeader, int, error) {
	h := xzBlockHeader{compressed: -1, uncompressed: -1}
	size := (int(src[p]) + 1) * 4 // 3.1.1 Block Header Size
	if size > len(src)-p {
		return h, 0, fmt.Errorf("block header at %d is truncated", p)
	}
	hdr := src[p : p+size]
	if crc32.ChecksumIEEE(hdr[:size-4]) != binary.LittleEndian.Uint32(hdr[size-4:]) {
		return h, 0, fmt.Errorf("block header CRC32 mismatch at %d", p)
	}
	body := hdr[:size-4]
	flags := body[1] // 3.1.2 Block Flags
	if flags&0x3c != 0 {
		return h, 0, fmt.Errorf("reserved block flags %#x set", flags)
	}
	q := 2
	var err error
	var v uint64
	if flags&0x40 != 0 { // 3.1.3 Compressed Size
		if v, q, err = xzVarint(body, q); err != nil {
			return h, 0, err
		}
		if v == 0 || v > uint64(len(src)) {
			return h, 0, fmt.Errorf("block compressed size %d is impossible", v)
		}
		h.compressed = int64(v)
	}
	if flags&0x80 != 0 { // 3.1.4 Uncompressed Size
		if v, q, err = xzVarint(body, q); err != nil {
			return h, 0, err
		}
		if v > MaxDecompressedSize {
			return h, 0, fmt.Errorf("block uncompressed size %d is too large", v)
		}
		h.uncompressed = int64(v)
	}
	n := int(flags&3) + 1 // 3.1.5 List of Filter Flags
	for i := 0; i < n; i++ {
		var id, psize uint64
		if id, q, err = xzVarint(body, q); err != nil {
			return h, 0, err
		}
		if psize, q, err = xzVarint(body, q); err != nil {
			return h, 0, err
		}
		if psize > uint64(len(body)-q) {
			return h, 0, fmt.Errorf("filter properties run past the block header")
		}
		props := body[q : q+int(psize)]
		q += int(psize)
		last := i == n-1
		switch {
		case last && id == xzFilterLZMA2 && psize == 1:
			// 5.3.1 LZMA2 properties: dictionary size from 6 bits.
			bits := props[0] & 0x3f
			if bits > 40 {
				return h, 0, fmt.Errorf("LZMA2 dictionary size code %d is invalid", bits)
			}
			if bits == 40 {
				h.dictSize = 0xffffffff
			} else {
				h.dictSize = uint64(2|bits&1) << (bits/2 + 11)
			}
		case !last && i == 0 && id == xzFilterX86 && (psize == 0 || psize == 4):
			h.x86 = true
			if psize == 4 {
				h.x86Start = binary.LittleEndian.Uint32(props)
			}
		default:
			return h, 0, errf(ErrUnsupported, "xz filter chain with filter %#x at position %d of %d; only [x86 BCJ,] LZMA2 is supported", id, i+1, n)
		}
	}
	for ; q < len(body); q++ { // 3.1.6 Header Padding must be zero
		if body[q] != 0 {
			return h, 0, fmt.Errorf("non-zero block header padding")
		}
	}
	return h, p + size, nil
}

// decodeXZBlock decodes the block at src[p] and returns the offset after it.
func decodeXZBlock(src []byte, p int, checkType byte, checkSize int, out *outputBuffer) (int, error) {
	h, p, err := parseXZBlockHeader(src, p)
	if err != nil {
		return 0, err
	}
	// The dictionary size only bounds how far back matches reach; a
	// dictionary larger than the output is never needed, so cap it there
	// to keep a forged header from allocating gigabytes.
	dict := int(max(min(h.dictSize, uint64(out.limit)), lzma.MinDictCap))
	br := bytes.NewReader(src[p:])
	lr, err := lzma.Reader2Config{DictCap: dict}.NewReader2(br)
	if err != nil {
		return 0, err
	}
	start := len(out.buf)
	if err := copyAll(out, lr); err != nil {
		return 0, err
	}
	// Reader2 stops right after the LZMA2 end marker, so what it consumed
	// is the Compressed Data (3.2).
	consumed := len(src) - p - br.Len()
	if h.compressed >= 0 && int64(consumed) != h.compressed {
		return 0, fmt.Errorf("block data is %d bytes, its header says %d", consumed, h.compressed)
	}
	data := out.buf[start:]
	if h.uncompressed >= 0 && int64(len(data)) != h.uncompressed {
		return 0, fmt.Errorf("block decompressed to %d bytes, its header says %d", len(data), h.uncompressed)
	}
	p += consumed
	for ; consumed%4 != 0; consumed++ { // 3.3 Block Padding: zeros to a multiple of 4
		if p >= len(src) || src[p] != 0 {
			return 0, fmt.Errorf("bad block padding")
		}
		p++
	}
	if h.x86 {
		bcjX86Decode(data, h.x86Start)
	}
	// 3.4 Check, computed over the uncompressed (unfiltered) data.
	if checkSize > len(src)-p {
		return 0, fmt.Errorf("block check is truncated")
	}
	var sum hash.Hash
	switch checkType {
	case xzCheckCRC32:
		sum = crc32.NewIEEE()
	case xzCheckCRC64:
		sum = crc64.New(crc64.MakeTable(crc64.ECMA))
	case xzCheckSHA256:
		sum = sha256.New()
	}
	if sum != nil {
		sum.Write(data)
		got := sum.Sum(nil)
		if checkType != xzCheckSHA256 {
			// CRC32 and CRC64 are stored little-endian; hash.Hash gives big-endian bytes.
			for i, j := 0, len(got)-1; i < j; i, j = i+1, j-1 {
				got[i], got[j] = got[j], got[i]
			}
		}
		if !bytes.Equal(got, src[p:p+checkSize]) {
			return 0, fmt.Errorf("block check mismatch (data is corrupt)")
		}
	}
	return p + checkSize, nil
}

// bcjX86Decode undoes the x86 BCJ filter in place (.xz format 5.3.2; the
// algorithm is xz-embedded's bcj_x86 in lib/xz/xz_dec_bcj.c, run over the
// whole buffer at once). The encoder turned the relative targets of E8 (call)
// and E9 (jmp) instructions into absolute ones to help compression; this
// turns them back. pos is the stream position of buf[0] (the filter's start
// offset). The last 4 bytes are never converted, as in the streaming decoder
// at the end of its input.
func bcjX86Decode(buf []byte, pos uint32) {
	maskToAllowed := [8]bool{true, true, true, false, true, false, false, false}
	maskToBitNum := [8]uint32{0, 1, 2, 2, 3, 3, 3, 3}
	testMSByte := func(b byte) bool { return b == 0x00 || b == 0xff }
	if len(buf) <= 4 {
		return
	}
	size := len(buf) - 4
	prevPos := -1
	var prevMask uint32
	for i := 0; i < size; i++ {
		if buf[i]&0xfe != 0xe8 {
			continue
		}
		d := i - prevPos
		if d > 3 {
			prevMask = 0
		} else {
			prevMask = (prevMask << uint(d-1)) & 7
			if prevMask != 0 {
				b := buf[i+4-int(maskToBitNum[prevMask])]
				if !maskToAllowed[prevMask] || testMSByte(b) {
					prevPos = i
					prevMask = prevMask<<1 | 1
					continue
				}
			}
		}
		prevPos = i
		if !testMSByte(buf[i+4]) {
			prevMask = prevMask<<1 | 1
			continue
		}
		src := binary.LittleEndian.Uint32(buf[i+1:])
		var dest uint32
		for {
			dest = src - (pos + uint32(i) + 5)
			if prevMask == 0 {
				break
			}
			j := maskToBitNum[prevMask] * 8
			if !testMSByte(byte(dest >> (24 - j))) {
				break
			}
			src = dest ^ (1<<(32-j) - 1)
		}
		dest &= 0x01ffffff
		dest |= -(dest & 0x01000000)
		binary.LittleEndian.PutUint32(buf[i+1:], dest)
		i += 4
	}
}
