package trace

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"time"

	"github.com/gvmm/gvmm/vcpu"
)

// maxReaderKeys bounds a vCPU's key table in a reader: writers define at
// most maxKeys plus a raw key per kind and reason, and a corrupt file must
// not make the reader hoard memory.
const maxReaderKeys = 1 << 16

// Record is one exit read back from a trace.
type Record struct {
	// Exit is the exit as the vCPU observed it. Fields its kind does not
	// use are zero; Start is on the writer's monotonic clock.
	vcpu.Exit
	// Time is when KVM_RUN returned, in ns since the trace started;
	// Header.Wall converts it to wall-clock time.
	Time int64
	// Device and Register are the names the writer's Namer gave the
	// access (empty when it had none); Register is the instruction's name
	// for fallback exits.
	Device   string
	Register string
}

// keyDef is a key definition as read.
type keyDef struct {
	kind     vcpu.Kind
	reason   uint32
	slot     int
	off      uint64
	addr     uint64
	size     uint8
	op       uint8
	raw      bool
	device   string
	register string
}

// Reader reads a trace record by record. Records come in file order: in
// order within each vCPU, with the vCPUs' chunks interleaved as they were
// written, so times are not globally sorted.
type Reader struct {
	r   *countReader
	hdr Header

	keys    [][]keyDef // per vCPU
	records []uint64   // per vCPU, read so far

	// The chunk being decoded.
	payload bytes.Buffer
	hbuf    []byte // a block header's bytes, for its checksum
	p       []byte // undecoded rest of the payload
	left    uint64 // records left in it
	vcpu    int
	prev    int64 // time of the last record
	chunkAt int64 // offset of the chunk, for errors

	err   error
	noCRC bool // see newReader
}

// countReader counts the bytes consumed, for error messages.
type countReader struct {
	br  *bufio.Reader
	off int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.br.Read(p)
	c.off += int64(n)
	return n, err
}

func (c *countReader) ReadByte() (byte, error) {
	b, err := c.br.ReadByte()
	if err == nil {
		c.off++
	}
	return b, err
}

// NewReader reads the header of the trace r and returns a Reader
// positioned on the first record.
func NewReader(r io.Reader) (*Reader, error) { return newReader(r, true) }

// newReader can skip checksum verification, for the fuzzer: random
// mutations never get a CRC right, and would not reach the decoders behind
// it otherwise.
func newReader(r io.Reader, verify bool) (*Reader, error) {
	cr := &countReader{br: bufio.NewReaderSize(r, 16<<10)}
	var b [headerSize]byte
	n, err := io.ReadFull(cr, b[:])
	if m := min(n, len(Magic)); string(b[:m]) != Magic[:m] {
		return nil, fmt.Errorf("trace: %w (bad magic)", ErrNotTrace)
	}
	if err != nil {
		return nil, fmt.Errorf("trace: %w: the header is %d bytes, the file %d", ErrTruncated, headerSize, n)
	}
	if v := binary.LittleEndian.Uint16(b[8:]); v != Version {
		return nil, fmt.Errorf("trace: %w: version %d (this gvmm reads version %d)", ErrVersion, v, Version)
	}
	if got, want := binary.LittleEndian.Uint32(b[32:]), crc32.Checksum(b[:32], castagnoli); verify && got != want {
		return nil, fmt.Errorf("trace: %w: header checksum %#08x, want %#08x", ErrCorrupt, got, want)
	}
	if f := binary.LittleEndian.Uint16(b[10:]); f != 0 {
		return nil, fmt.Errorf("trace: %w: header flags %#x", ErrVersion, f)
	}
	nvcpu := binary.LittleEndian.Uint32(b[12:])
	if nvcpu > maxVCPUs {
		return nil, fmt.Errorf("trace: %w: %d vCPUs", ErrCorrupt, nvcpu)
	}
	tr := &Reader{
		r: cr,
		hdr: Header{
			Version: Version,
			VCPUs:   int(nvcpu),
			Start:   time.Unix(0, int64(binary.LittleEndian.Uint64(b[16:]))),
			Mono:    int64(binary.LittleEndian.Uint64(b[24:])),
		},
		keys:    make([][]keyDef, nvcpu),
		records: make([]uint64, nvcpu),
		noCRC:   !verify,
	}
	return tr, nil
}

// Header returns the trace's header.
func (r *Reader) Header() Header { return r.hdr }

// Next returns the next record. At the end of a complete trace it returns
// io.EOF. A trace cut short (the writer was not closed) ends with an error
// wrapping ErrTruncated, a damaged one with ErrCorrupt; the records before
// the damage are returned first. After an error Next keeps returning it.
func (r *Reader) Next() (Record, error) {
	if r.err != nil {
		return Record{}, r.err
	}
	rec, err := r.next()
	if err != nil {
		r.err = err
	}
	return rec, err
}

func (r *Reader) next() (Record, error) {
	for {
		for r.left > 0 || len(r.p) > 0 {
			rec, ok, err := r.entry()
			if err != nil {
				return Record{}, err
			}
			if ok {
				return rec, nil
			}
		}
		tagAt := r.r.off
		tag, err := r.r.ReadByte()
		if err == io.EOF {
			return Record{}, fmt.Errorf("trace: %w at byte %d: no end block (the trace was not closed; %d records read)",
				ErrTruncated, tagAt, r.total())
		}
		if err != nil {
			return Record{}, fmt.Errorf("trace: reading at byte %d: %w", tagAt, err)
		}
		switch tag {
		case tagChunk:
			if err := r.chunk(tagAt); err != nil {
				return Record{}, err
			}
		case tagEnd:
			return Record{}, r.end(tagAt)
		default:
			return Record{}, fmt.Errorf("trace: %w at byte %d: unknown block tag %#02x", ErrCorrupt, tagAt, tag)
		}
	}
}

func (r *Reader) total() uint64 {
	var n uint64
	for _, c := range r.records {
		n += c
	}
	return n
}

// blockErr describes a failure reading a block's fields from the file.
func (r *Reader) blockErr(what string, at int64, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("trace: %w in the %s at byte %d (%d records read)", ErrTruncated, what, at, r.total())
	}
	if errors.Is(err, errOverflow) {
		return fmt.Errorf("trace: %w in the %s at byte %d: %w", ErrCorrupt, what, at, err)
	}
	return fmt.Errorf("trace: reading the %s at byte %d: %w", what, at, err)
}

// crcReader keeps the bytes of a block's fields as they are read, for its
// checksum.
type crcReader struct {
	r   *countReader
	buf []byte
}

func (c *crcReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.buf = append(c.buf, b)
	}
	return b, err
}

func (c *crcReader) crc() uint32 { return crc32.Checksum(c.buf, castagnoli) }

var errOverflow = errors.New("varint overflows 64 bits")

// readUvarint is binary.ReadUvarint with an overflow error that can be
// told apart from I/O errors.
func readUvarint(br io.ByteReader) (uint64, error) {
	var x uint64
	var s uint
	for i := range binary.MaxVarintLen64 {
		b, err := br.ReadByte()
		if err != nil {
			if i > 0 && err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		if b < 0x80 {
			if i == binary.MaxVarintLen64-1 && b > 1 {
				return 0, errOverflow
			}
			return x | uint64(b)<<s, nil
		}
		x |= uint64(b&0x7f) << s
		s += 7
	}
	return 0, errOverflow
}

func (r *Reader) chunk(at int64) error {
	cr := &crcReader{r: r.r, buf: append(r.hbuf[:0], tagChunk)}
	defer func() { r.hbuf = cr.buf }()
	vc, err := readUvarint(cr)
	if err != nil {
		return r.blockErr("chunk header", at, err)
	}
	n, err := readUvarint(cr)
	if err != nil {
		return r.blockErr("chunk header", at, err)
	}
	zb, err := readUvarint(cr)
	if err != nil {
		return r.blockErr("chunk header", at, err)
	}
	size, err := readUvarint(cr)
	if err != nil {
		return r.blockErr("chunk header", at, err)
	}
	if vc >= uint64(len(r.keys)) {
		return fmt.Errorf("trace: %w: chunk at byte %d is for vCPU %d of %d", ErrCorrupt, at, vc, len(r.keys))
	}
	if size > maxPayload {
		return fmt.Errorf("trace: %w: chunk at byte %d has a %d-byte payload (at most %d)", ErrCorrupt, at, size, maxPayload)
	}
	// A record takes at least 5 bytes; a count beyond that is corrupt,
	// and checking it bounds the work a bad chunk can cause.
	if n > size/5 {
		return fmt.Errorf("trace: %w: chunk at byte %d claims %d records in %d bytes", ErrCorrupt, at, n, size)
	}
	r.payload.Reset()
	// CopyN grows the buffer as bytes arrive, so a truncated file with a
	// large length costs no large allocation.
	if _, err := io.CopyN(&r.payload, r.r, int64(size)); err != nil {
		return r.blockErr("chunk payload", at, err)
	}
	var sum [4]byte
	if _, err := io.ReadFull(r.r, sum[:]); err != nil {
		return r.blockErr("chunk checksum", at, err)
	}
	p := r.payload.Bytes()
	crc := crc32.Update(cr.crc(), castagnoli, p)
	if got := binary.LittleEndian.Uint32(sum[:]); got != crc && !r.noCRC {
		return fmt.Errorf("trace: %w: chunk at byte %d (vCPU %d): checksum %#08x, want %#08x", ErrCorrupt, at, vc, got, crc)
	}
	r.p, r.left, r.vcpu, r.chunkAt = p, n, int(vc), at
	r.prev = unzigzag(zb)
	return nil
}

func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

// end checks the end block against what was read.
func (r *Reader) end(at int64) error {
	cr := &crcReader{r: r.r, buf: []byte{tagEnd}}
	nv, err := readUvarint(cr)
	if err != nil {
		return r.blockErr("end block", at, err)
	}
	if nv != uint64(len(r.records)) {
		return fmt.Errorf("trace: %w: end block at byte %d lists %d vCPUs, header %d", ErrCorrupt, at, nv, len(r.records))
	}
	want := make([]uint64, nv)
	for i := range want {
		if want[i], err = readUvarint(cr); err != nil {
			return r.blockErr("end block", at, err)
		}
	}
	var sum [4]byte
	if _, err := io.ReadFull(r.r, sum[:]); err != nil {
		return r.blockErr("end block", at, err)
	}
	if got, want := binary.LittleEndian.Uint32(sum[:]), cr.crc(); got != want && !r.noCRC {
		return fmt.Errorf("trace: %w: end block at byte %d: checksum %#08x, want %#08x", ErrCorrupt, at, got, want)
	}
	for i, w := range want {
		if r.records[i] != w {
			return fmt.Errorf("trace: %w: vCPU %d wrote %d records, %d read (chunks missing)", ErrCorrupt, i, w, r.records[i])
		}
	}
	if _, err := r.r.ReadByte(); err != io.EOF {
		return fmt.Errorf("trace: %w: data after the end block at byte %d", ErrCorrupt, r.r.off-1)
	}
	return io.EOF
}

// entry decodes the next payload entry: a record (ok) or a key definition.
func (r *Reader) entry() (rec Record, ok bool, err error) {
	d := decoder{p: r.p}
	h := d.uvarint()
	if d.err == nil && h&1 == 1 {
		if h != entryKeyDef {
			return rec, false, r.corrupt("unknown entry %d", h)
		}
		k := keyDef{
			kind:   vcpu.Kind(d.byte()),
			reason: uint32(d.uvarint()),
			slot:   int(d.varint()),
			off:    d.uvarint(),
			addr:   d.uvarint(),
			size:   d.byte(),
			op:     d.byte(),
		}
		flags := d.byte()
		k.raw = flags&flagRaw != 0
		k.device = d.name()
		k.register = d.name()
		switch {
		case d.err != nil:
			return rec, false, r.corrupt("key definition: %v", d.err)
		case k.kind >= vcpu.NumKinds:
			return rec, false, r.corrupt("key definition with kind %d", k.kind)
		case flags&^flagRaw != 0:
			return rec, false, r.corrupt("key definition with flags %#x", flags)
		case len(r.keys[r.vcpu]) >= maxReaderKeys:
			return rec, false, r.corrupt("more than %d keys", maxReaderKeys)
		}
		r.keys[r.vcpu] = append(r.keys[r.vcpu], k)
		r.p = d.p
		return rec, false, nil
	}
	if r.left == 0 {
		return rec, false, r.corrupt("more records than the chunk header says")
	}
	id := h >> 3
	dt := d.varint()
	handle := d.uvarint()
	run := d.uvarint()
	data := d.uvarint()
	count := uint64(1)
	if h&2 != 0 {
		count = d.uvarint()
	}
	if d.err != nil {
		return rec, false, r.corrupt("record: %v", d.err)
	}
	keys := r.keys[r.vcpu]
	if id >= uint64(len(keys)) {
		return rec, false, r.corrupt("record uses key %d, only %d defined", id, len(keys))
	}
	k := &keys[id]
	if k.raw != (h&4 != 0) {
		return rec, false, r.corrupt("record and key %d disagree on raw", id)
	}
	slot, off, addr, size := k.slot, k.off, k.addr, k.size
	if k.raw {
		slot, off, addr, size = int(d.varint()), d.uvarint(), d.uvarint(), d.byte()
		if d.err != nil {
			return rec, false, r.corrupt("record: %v", d.err)
		}
	}
	if handle > 1<<62 || run > 1<<62 || count > 1<<32-1 {
		return rec, false, r.corrupt("record with out-of-range values")
	}
	r.prev += dt
	rec = Record{
		Exit: vcpu.Exit{
			VCPU: r.vcpu, Kind: k.kind, Reason: k.reason, Addr: addr, Size: size,
			Count: uint32(count), Data: data, Slot: slot, Offset: off, Op: k.op,
			Start: r.hdr.Mono + r.prev, RunNs: int64(run), HandleNs: int64(handle),
		},
		Time:     r.prev,
		Device:   k.device,
		Register: k.register,
	}
	r.p = d.p
	r.left--
	r.records[r.vcpu]++
	return rec, true, nil
}

func (r *Reader) corrupt(format string, args ...any) error {
	return fmt.Errorf("trace: %w: chunk at byte %d (vCPU %d): %s", ErrCorrupt, r.chunkAt, r.vcpu, fmt.Sprintf(format, args...))
}

// decoder reads fields from a payload, remembering the first error so the
// caller checks once per entry.
type decoder struct {
	p     []byte
	err   error
	noCRC bool // see newReader
}

var errShort = errors.New("entry runs past the end of the chunk")

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.p)
	switch {
	case n == 0:
		d.err = errShort
	case n < 0:
		d.err = errOverflow
	default:
		d.p = d.p[n:]
	}
	return v
}

func (d *decoder) varint() int64 { return unzigzag(d.uvarint()) }

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.p) == 0 {
		d.err = errShort
		return 0
	}
	b := d.p[0]
	d.p = d.p[1:]
	return b
}

func (d *decoder) name() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > maxName || n > uint64(len(d.p)) {
		d.err = fmt.Errorf("name of %d bytes", n)
		return ""
	}
	s := string(d.p[:n])
	d.p = d.p[n:]
	return s
}
