package trace

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"math/bits"
	"sync"
	"time"

	"github.com/gvmm/gvmm/vcpu"
	"github.com/gvmm/gvmm/vcpu/stats"
)

const (
	// chunkSize is a vCPU buffer's size and roughly a chunk's: large
	// enough that handing buffers over is rare (every ~6000 exits), small
	// enough that a vCPU holds back little of the trace.
	chunkSize = 64 << 10
	// flushAt leaves room for the largest entry (a key definition with two
	// maximal names, about 570 bytes) so a buffer never grows.
	flushAt = chunkSize - 1024
	// buffersPerVCPU is how many buffers a vCPU may have in flight: one
	// to fill while the others wait for the disk. When all are in flight
	// the vCPU waits: the trace loses nothing, it slows the guest instead.
	buffersPerVCPU = 4
	// maxKeys bounds a vCPU's key table; see the package doc.
	maxKeys = 4096
	// writeBuffer batches chunk headers, payloads and checksums into few
	// large writes.
	writeBuffer = 256 << 10
)

// Writer writes an exit trace. Attach VCPU(i) to vCPU i's exit loop; call
// Close once the vCPUs have stopped.
type Writer struct {
	namer  stats.Namer
	opName func(uint8) string
	mono0  int64

	bw     *bufio.Writer
	vcpus  []*vcpuWriter
	chunks chan chunk
	done   chan struct{}
	scr    []byte // chunk header scratch, the writing goroutine's

	errMu sync.Mutex
	err   error

	closeOnce sync.Once
	closeErr  error
}

// chunk is a full buffer on its way to the file.
type chunk struct {
	vcpu int
	n    uint64 // exit records
	base int64
	buf  []byte
}

// NewWriter starts a trace of a VM with nvcpu vCPUs on w. namer names
// devices and registers and opName fallback instructions, as for
// stats.New (either may be nil); their names are stored in the trace, so
// readers need neither. Write errors are reported by Err and Close; after
// one the trace stops, but the vCPUs do not notice.
func NewWriter(w io.Writer, nvcpu int, namer stats.Namer, opName func(uint8) string) *Writer {
	tw := &Writer{
		namer:  namer,
		opName: opName,
		bw:     bufio.NewWriterSize(w, writeBuffer),
		vcpus:  make([]*vcpuWriter, nvcpu),
		chunks: make(chan chunk, nvcpu*buffersPerVCPU),
		done:   make(chan struct{}),
	}
	// The two clocks are read back to back, so Header.Wall maps exit
	// times to wall time to within a microsecond.
	start := time.Now()
	tw.mono0 = vcpu.Now()
	if _, err := tw.bw.Write(appendHeader(nil, Header{Version: Version, VCPUs: nvcpu, Start: start, Mono: tw.mono0})); err != nil {
		tw.setErr(err)
	}
	for i := range tw.vcpus {
		tw.vcpus[i] = &vcpuWriter{
			w:     tw,
			idx:   i,
			buf:   make([]byte, 0, chunkSize),
			nbuf:  1,
			free:  make(chan []byte, buffersPerVCPU),
			lastK: tkey{kind: vcpu.NumKinds}, // matches no exit
		}
	}
	go tw.loop()
	return tw
}

// VCPU returns the Observer for vCPU i. Only vCPU i's exit loop may call it.
func (w *Writer) VCPU(i int) vcpu.Observer { return w.vcpus[i] }

// Err returns the first error writing the trace, if any.
func (w *Writer) Err() error {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	return w.err
}

func (w *Writer) setErr(err error) {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	if w.err == nil {
		w.err = fmt.Errorf("trace: %w", err)
	}
}

// Close writes out what every vCPU has buffered and the end block, and
// flushes. It must be called after the vCPUs have stopped calling their
// Observers (their goroutines have returned); exits observed later are
// dropped. It does not close the underlying writer. Close returns the first
// write error, and may be called more than once.
func (w *Writer) Close() error {
	w.closeOnce.Do(func() {
		for _, v := range w.vcpus {
			v.closed = true
			if v.n > 0 {
				w.chunks <- chunk{vcpu: v.idx, n: v.n, base: v.base, buf: v.buf}
				v.n = 0
			}
		}
		close(w.chunks)
		<-w.done
		b := []byte{tagEnd}
		b = binary.AppendUvarint(b, uint64(len(w.vcpus)))
		for _, v := range w.vcpus {
			b = binary.AppendUvarint(b, v.total)
		}
		b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
		if w.Err() == nil {
			if _, err := w.bw.Write(b); err != nil {
				w.setErr(err)
			} else if err := w.bw.Flush(); err != nil {
				w.setErr(err)
			}
		}
		w.closeErr = w.Err()
	})
	return w.closeErr
}

// loop writes chunks as the vCPUs fill them and gives the buffers back.
// After a write error it keeps draining, so no vCPU waits forever.
func (w *Writer) loop() {
	defer close(w.done)
	for c := range w.chunks {
		if w.Err() == nil {
			if err := w.writeChunk(c); err != nil {
				w.setErr(err)
			}
		}
		w.vcpus[c.vcpu].free <- c.buf[:0]
	}
}

func (w *Writer) writeChunk(c chunk) error {
	h := append(w.scr[:0], tagChunk)
	h = binary.AppendUvarint(h, uint64(c.vcpu))
	h = binary.AppendUvarint(h, c.n)
	h = binary.AppendVarint(h, c.base)
	h = binary.AppendUvarint(h, uint64(len(c.buf)))
	crc := crc32.Update(crc32.Checksum(h, castagnoli), castagnoli, c.buf)
	h = binary.LittleEndian.AppendUint32(h, crc) // after the header, written last
	w.scr = h
	if _, err := w.bw.Write(h[:len(h)-4]); err != nil {
		return err
	}
	if _, err := w.bw.Write(c.buf); err != nil {
		return err
	}
	_, err := w.bw.Write(h[len(h)-4:])
	return err
}

// tkey is what a key definition fixes; see keyOf.
type tkey struct {
	kind   vcpu.Kind
	size   uint8
	op     uint8
	raw    bool
	reason uint32
	slot   int
	off    uint64
	addr   uint64
}

// keyOf derives e's key, reading only the fields meaningful for e's kind:
// the exit loop reuses one Exit per vCPU and leaves the others stale.
func keyOf(e *vcpu.Exit) tkey {
	switch e.Kind {
	case vcpu.KindIOIn, vcpu.KindIOOut, vcpu.KindMMIORead, vcpu.KindMMIOWrite:
		return tkey{kind: e.Kind, size: e.Size, reason: e.Reason, slot: e.Slot, off: e.Offset, addr: e.Addr}
	case vcpu.KindFallback:
		return tkey{kind: e.Kind, op: e.Op, reason: e.Reason, slot: -1}
	}
	k := e.Kind
	if k >= vcpu.NumKinds {
		k = vcpu.KindOther // readers reject kinds they do not know
	}
	return tkey{kind: k, reason: e.Reason, slot: -1}
}

// keyRef is what a vCPU knows of a key it defined: its id, and whether
// records must spell the access out (a shared raw key).
type keyRef struct {
	id  uint64
	raw bool
}

// isAccess reports whether a kind is an I/O or MMIO access, whose records
// carry data (and, for I/O, a repeat count).
func isAccess(k vcpu.Kind) bool {
	switch k {
	case vcpu.KindIOIn, vcpu.KindIOOut, vcpu.KindMMIORead, vcpu.KindMMIOWrite:
		return true
	}
	return false
}

// vcpuWriter is one vCPU's Observer. Only that vCPU's thread touches it
// (and Close, after the thread is done).
type vcpuWriter struct {
	w   *Writer
	idx int

	buf   []byte
	n     uint64 // exit records in buf
	base  int64  // time of buf's first record
	prev  int64  // time of buf's last record
	total uint64 // exit records written overall
	nbuf  int    // buffers allocated
	free  chan []byte

	keys  keyTable
	lastK tkey
	lastR keyRef
	nkeys uint64

	closed bool
}

// Observe appends e to the vCPU's buffer, handing the buffer to the writer
// when full. In steady state it does not allocate.
func (v *vcpuWriter) Observe(e *vcpu.Exit) {
	if v.closed {
		return
	}
	t := e.Start - v.w.mono0
	if v.n == 0 {
		v.base, v.prev = t, t
	}
	k := keyOf(e)
	ref := v.lastR
	if k != v.lastK {
		var ok bool
		if ref, ok = v.keys.get(k); !ok {
			ref = v.define(k)
		}
		v.lastK, v.lastR = k, ref
	}
	h := ref.id << 3
	if ref.raw {
		h |= 1 << 2
	}
	var data uint64
	var count uint32 = 1
	if isAccess(e.Kind) {
		data = e.Data
		if e.Kind == vcpu.KindIOIn || e.Kind == vcpu.KindIOOut {
			count = e.Count // MMIO has no string form
		}
	}
	if count != 1 {
		h |= 1 << 1
	}
	b := binary.AppendUvarint(v.buf, h)
	b = binary.AppendVarint(b, t-v.prev)
	b = binary.AppendUvarint(b, uint64(max(e.HandleNs, 0)))
	b = binary.AppendUvarint(b, uint64(max(e.RunNs, 0)))
	b = binary.AppendUvarint(b, data)
	if count != 1 {
		b = binary.AppendUvarint(b, uint64(count))
	}
	if ref.raw {
		b = binary.AppendVarint(b, int64(e.Slot))
		b = binary.AppendUvarint(b, e.Offset)
		b = binary.AppendUvarint(b, e.Addr)
		b = append(b, e.Size)
	}
	v.buf = b
	v.prev = t
	v.n++
	v.total++
	if len(v.buf) >= flushAt {
		v.flush()
	}
}

// define appends the definition of a key met for the first time. Once the
// table is full, accesses share one raw key per kind and reason, and k itself
// stays out of the table, which stays bounded.
func (v *vcpuWriter) define(k tkey) keyRef {
	if v.nkeys >= maxKeys {
		rk := tkey{kind: k.kind, reason: k.reason, raw: true, slot: -1}
		ref, ok := v.keys.get(rk)
		if !ok {
			ref = keyRef{id: v.appendDef(rk, "", ""), raw: true}
			v.keys.put(rk, ref)
		}
		return ref
	}
	var dev, reg string
	switch {
	case isAccess(k.kind):
		off := k.off
		if k.slot < 0 {
			off = k.addr
		}
		if n := v.w.namer; n != nil {
			dev = n.DeviceName(k.kind, k.slot)
			reg = n.RegisterName(k.kind, k.slot, off, k.kind == vcpu.KindIOOut || k.kind == vcpu.KindMMIOWrite)
		}
	case k.kind == vcpu.KindFallback && v.w.opName != nil:
		reg = v.w.opName(k.op)
	}
	ref := keyRef{id: v.appendDef(k, dev, reg)}
	v.keys.put(k, ref)
	return ref
}

func (v *vcpuWriter) appendDef(k tkey, dev, reg string) uint64 {
	b := binary.AppendUvarint(v.buf, entryKeyDef)
	b = append(b, byte(k.kind))
	b = binary.AppendUvarint(b, uint64(k.reason))
	b = binary.AppendVarint(b, int64(k.slot))
	b = binary.AppendUvarint(b, k.off)
	b = binary.AppendUvarint(b, k.addr)
	b = append(b, k.size, k.op)
	var flags byte
	if k.raw {
		flags |= flagRaw
	}
	b = append(b, flags)
	b = appendName(b, dev)
	b = appendName(b, reg)
	v.buf = b
	id := v.nkeys
	v.nkeys++
	return id
}

func appendName(b []byte, s string) []byte {
	if len(s) > maxName {
		s = s[:maxName]
	}
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// flush hands the full buffer to the writing goroutine and takes an empty
// one: a recycled buffer, a new one while fewer than buffersPerVCPU exist,
// or else the next one the writer frees.
func (v *vcpuWriter) flush() {
	v.w.chunks <- chunk{vcpu: v.idx, n: v.n, base: v.base, buf: v.buf}
	v.n = 0
	select {
	case v.buf = <-v.free:
	default:
		if v.nbuf < buffersPerVCPU {
			v.nbuf++
			v.buf = make([]byte, 0, chunkSize)
		} else {
			v.buf = <-v.free
		}
	}
}

// keyTable maps keys to their ids on the exit path: open addressing with
// linear probing, kept at most half full. It replaces a Go map, whose
// hashing of the 40-byte key cost as much as encoding the record. It never
// deletes.
type keyTable struct {
	slots []keySlot
	shift uint // 64 - log2(len(slots))
	n     int
}

type keySlot struct {
	used bool
	k    tkey
	ref  keyRef
}

// index hashes k by Fibonacci hashing: the multiply spreads the folded key
// over the high bits, which the shift keeps.
func (t *keyTable) index(k tkey) int {
	x := k.off ^ bits.RotateLeft64(k.addr, 17) ^ uint64(k.kind)<<56 ^ uint64(k.size)<<48 ^
		uint64(k.op)<<40 ^ uint64(uint32(k.slot))<<32 ^ uint64(k.reason)<<8
	if k.raw {
		x = ^x
	}
	return int((x * 0x9e3779b97f4a7c15) >> t.shift)
}

func (t *keyTable) get(k tkey) (keyRef, bool) {
	if t.n == 0 {
		return keyRef{}, false
	}
	mask := len(t.slots) - 1
	for i := t.index(k); ; i = (i + 1) & mask {
		s := &t.slots[i]
		if !s.used {
			return keyRef{}, false
		}
		if s.k == k {
			return s.ref, true
		}
	}
}

// put adds k, which is not in the table.
func (t *keyTable) put(k tkey, ref keyRef) {
	if 2*(t.n+1) > len(t.slots) {
		old := t.slots
		size := max(64, 2*len(old))
		t.slots = make([]keySlot, size)
		t.shift = uint(64 - bits.TrailingZeros(uint(size)))
		t.n = 0
		for _, s := range old {
			if s.used {
				t.put(s.k, s.ref)
			}
		}
	}
	mask := len(t.slots) - 1
	i := t.index(k)
	for t.slots[i].used {
		i = (i + 1) & mask
	}
	t.slots[i] = keySlot{used: true, k: k, ref: ref}
	t.n++
}
