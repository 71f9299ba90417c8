// Package virtiotest plays the driver side of a split virtqueue in guest
// memory, for tests, fuzz targets and benchmarks of virtio devices: it lays
// out the rings, makes descriptor chains available (direct or through an
// indirect table) and reads the used ring, as Linux's virtio_ring does.
package virtiotest

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"

	"github.com/gvmm/gvmm/memory"
	"github.com/gvmm/gvmm/virtio"
)

// Desc is one buffer of a chain: Len bytes at guest-physical Addr,
// device-writable if Write.
type Desc struct {
	Addr  uint64
	Len   uint32
	Write bool
}

// Driver owns one queue's rings in guest memory and a bump allocator for
// buffers after them.
type Driver struct {
	Mem                   *memory.Guest
	Size                  uint16
	Desc, Avail, UsedRing uint64
	Features              uint64
	availIdx, lastUsed    uint16
	// kicked is availIdx when KickNeeded last looked: the "old" of
	// vring_need_event.
	kicked        uint16
	free          []uint16
	heap, heapEnd uint64
	indirect      map[uint16]bool
}

// NewDriver lays out a queue of size descriptors at guest-physical base
// (descriptor table, then the available ring, then the used ring 4-byte
// aligned) and uses the heapSize bytes after them for buffers.
func NewDriver(mem *memory.Guest, base uint64, size uint16, features uint64, heapSize uint64) *Driver {
	d := &Driver{Mem: mem, Size: size, Features: features, indirect: map[uint16]bool{}}
	n := uint64(size)
	d.Desc = base
	d.Avail = base + 16*n
	d.UsedRing = (d.Avail + 6 + 2*n + 3) &^ 3
	d.heap = (d.UsedRing + 6 + 8*n + 4095) &^ 4095
	d.heapEnd = d.heap + heapSize
	for i := int(size) - 1; i >= 0; i-- {
		d.free = append(d.free, uint16(i))
	}
	zero := make([]byte, d.heap-base)
	d.write(base, zero)
	return d
}

// Config returns the queue as a transport would hand it to the device.
func (d *Driver) Config() virtio.QueueConfig {
	return virtio.QueueConfig{Size: d.Size, Desc: d.Desc, Driver: d.Avail, Device: d.UsedRing, Features: d.Features}
}

func (d *Driver) write(gpa uint64, b []byte) {
	if _, err := d.Mem.WriteAt(b, int64(gpa)); err != nil {
		panic(err)
	}
}

func (d *Driver) read(gpa uint64, b []byte) {
	if _, err := d.Mem.ReadAt(b, int64(gpa)); err != nil {
		panic(err)
	}
}

// Alloc returns n bytes of buffer space, aligned to align (a power of 2),
// or panics when the heap is exhausted. ResetHeap frees it all.
func (d *Driver) Alloc(n, align uint64) uint64 {
	a := (d.heap + align - 1) &^ (align - 1)
	if a+n > d.heapEnd {
		panic(fmt.Sprintf("virtiotest: heap exhausted allocating %d bytes", n))
	}
	d.heap = a + n
	return a
}

// HeapMark and ResetHeap save and restore the allocator position.
func (d *Driver) HeapMark() uint64      { return d.heap }
func (d *Driver) ResetHeap(mark uint64) { d.heap = mark }

// Put stores b in a new buffer and returns its address.
func (d *Driver) Put(b []byte) uint64 {
	a := d.Alloc(uint64(len(b)), 16)
	d.write(a, b)
	return a
}

// Get reads n bytes at addr.
func (d *Driver) Get(addr uint64, n int) []byte {
	b := make([]byte, n)
	d.read(addr, b)
	return b
}

func putDesc(b []byte, x Desc, next uint16, more bool) {
	binary.LittleEndian.PutUint64(b[0:], x.Addr)
	binary.LittleEndian.PutUint32(b[8:], x.Len)
	var flags uint16
	if more {
		flags |= 1
	}
	if x.Write {
		flags |= 2
	}
	binary.LittleEndian.PutUint16(b[12:], flags)
	binary.LittleEndian.PutUint16(b[14:], next)
}

// ResetFree marks every descriptor free again, for callers that manage
// the descriptor table themselves with WriteRawDesc.
func (d *Driver) ResetFree() {
	d.free = d.free[:0]
	for i := int(d.Size) - 1; i >= 0; i-- {
		d.free = append(d.free, uint16(i))
	}
	clear(d.indirect)
}

// Free returns how many descriptors are free.
func (d *Driver) Free() int { return len(d.free) }

// Add makes a chain of descs available, one descriptor each, and returns
// its head; ok is false when there are not enough free descriptors.
func (d *Driver) Add(descs ...Desc) (head uint16, ok bool) {
	if len(descs) == 0 || len(descs) > len(d.free) {
		return 0, false
	}
	idx := d.free[len(d.free)-len(descs):]
	d.free = d.free[:len(d.free)-len(descs)]
	for i, x := range descs {
		var b [16]byte
		more := i+1 < len(descs)
		next := uint16(0)
		if more {
			next = idx[i+1]
		}
		putDesc(b[:], x, next, more)
		d.write(d.Desc+16*uint64(idx[i]), b[:])
	}
	d.Publish(idx[0])
	return idx[0], true
}

// AddIndirect makes descs available through an indirect table (one
// descriptor of the queue's table) and returns the head.
func (d *Driver) AddIndirect(descs ...Desc) (head uint16, ok bool) {
	if len(d.free) == 0 {
		return 0, false
	}
	table := make([]byte, 16*len(descs))
	for i, x := range descs {
		putDesc(table[16*i:], x, uint16(i+1), i+1 < len(descs))
	}
	addr := d.Put(table)
	head = d.free[len(d.free)-1]
	d.free = d.free[:len(d.free)-1]
	d.WriteRawDesc(head, addr, uint32(len(table)), 4, 0)
	d.indirect[head] = true
	d.Publish(head)
	return head, true
}

// WriteRawDesc writes descriptor i of the queue's table as it is, for
// malformed chains.
func (d *Driver) WriteRawDesc(i uint16, addr uint64, length uint32, flags, next uint16) {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[0:], addr)
	binary.LittleEndian.PutUint32(b[8:], length)
	binary.LittleEndian.PutUint16(b[12:], flags)
	binary.LittleEndian.PutUint16(b[14:], next)
	d.write(d.Desc+16*uint64(i), b[:])
}

// Publish puts head in the next avail ring slot and advances avail.idx.
func (d *Driver) Publish(head uint16) {
	var b [2]byte
	binary.LittleEndian.PutUint16(b[:], head)
	d.write(d.Avail+4+2*uint64(d.availIdx%d.Size), b[:])
	d.availIdx++
	d.SetAvailIdx(d.availIdx)
}

// SetAvailIdx writes avail.idx as it is.
func (d *Driver) SetAvailIdx(i uint16) {
	var b [2]byte
	binary.LittleEndian.PutUint16(b[:], i)
	d.write(d.Avail+2, b[:])
}

// SetAvailFlags writes avail.flags (1: VIRTQ_AVAIL_F_NO_INTERRUPT).
func (d *Driver) SetAvailFlags(f uint16) {
	var b [2]byte
	binary.LittleEndian.PutUint16(b[:], f)
	d.write(d.Avail, b[:])
}

// SetUsedEvent writes used_event, the used index the driver wants an
// interrupt for (VIRTIO_F_EVENT_IDX).
func (d *Driver) SetUsedEvent(i uint16) {
	var b [2]byte
	binary.LittleEndian.PutUint16(b[:], i)
	d.write(d.Avail+4+2*uint64(d.Size), b[:])
}

// AvailEvent reads avail_event, the avail index the device wants a
// notification for.
func (d *Driver) AvailEvent() uint16 {
	var b [2]byte
	d.read(d.UsedRing+4+8*uint64(d.Size), b[:])
	return binary.LittleEndian.Uint16(b[:])
}

// UsedFlags reads used.flags (1: VIRTQ_USED_F_NO_NOTIFY).
func (d *Driver) UsedFlags() uint16 {
	var b [2]byte
	d.read(d.UsedRing, b[:])
	return binary.LittleEndian.Uint16(b[:])
}

// Used takes the next used element: the chain's head and the length the
// device wrote. ok is false when the device has returned nothing new. The
// chain's descriptors become free again.
func (d *Driver) Used() (head uint16, written uint32, ok bool) {
	var b [2]byte
	d.read(d.UsedRing+2, b[:])
	if binary.LittleEndian.Uint16(b[:]) == d.lastUsed {
		return 0, 0, false
	}
	var e [8]byte
	d.read(d.UsedRing+4+8*uint64(d.lastUsed%d.Size), e[:])
	d.lastUsed++
	id := binary.LittleEndian.Uint32(e[0:])
	written = binary.LittleEndian.Uint32(e[4:])
	head = uint16(id)
	d.release(head)
	return head, written, true
}

func (d *Driver) release(head uint16) {
	if d.indirect[head] {
		delete(d.indirect, head)
		d.free = append(d.free, head)
		return
	}
	i := head
	for n := 0; n < int(d.Size); n++ {
		d.free = append(d.free, i)
		var b [16]byte
		d.read(d.Desc+16*uint64(i), b[:])
		if binary.LittleEndian.Uint16(b[12:])&1 == 0 {
			return
		}
		i = binary.LittleEndian.Uint16(b[14:])
	}
}

// fenceWord is the target of fence's locked read-modify-write.
var fenceWord atomic.Uint32

// fence is a full memory barrier: a locked read-modify-write orders every
// earlier store before every later load on x86-64 (Intel SDM vol. 3A
// section 9.2.2), as the driver's virtio_mb() does between publishing an
// index and reading the device's event index.
func fence() { fenceWord.Add(1) }

// AvailIdx returns the driver's avail.idx: how many chains it has made
// available so far.
func (d *Driver) AvailIdx() uint16 { return d.availIdx }

// KickNeeded reports whether the device wants a notification for the
// chains made available since the last call, as Linux's
// virtqueue_kick_prepare decides (virtio 1.2 section 2.7.10): with
// VIRTIO_F_EVENT_IDX, when avail.idx moved past avail_event since the
// last call; without it, unless the device set VIRTQ_USED_F_NO_NOTIFY.
func (d *Driver) KickNeeded() bool {
	fence()
	old, now := d.kicked, d.availIdx
	d.kicked = now
	if d.Features&virtio.FeatureEventIdx != 0 {
		// vring_need_event(avail_event, new, old).
		return now-d.AvailEvent()-1 < now-old
	}
	return d.UsedFlags()&1 == 0
}

// HasUsed reports whether the device has returned chains that Used has
// not taken yet.
func (d *Driver) HasUsed() bool {
	var b [2]byte
	d.read(d.UsedRing+2, b[:])
	return binary.LittleEndian.Uint16(b[:]) != d.lastUsed
}

// DisableInterrupts asks the device for no used buffer notifications
// (VIRTQ_AVAIL_F_NO_INTERRUPT; with VIRTIO_F_EVENT_IDX Linux leaves
// used_event behind instead, which this does too).
func (d *Driver) DisableInterrupts() {
	if d.Features&virtio.FeatureEventIdx == 0 {
		d.SetAvailFlags(1)
	}
}

// EnableInterrupts asks for a notification when the device returns the
// next chain, and reports whether chains came back meanwhile (then no
// notification may come for them): Linux's virtqueue_enable_cb_prepare
// followed by virtqueue_poll.
func (d *Driver) EnableInterrupts() bool {
	return d.enableInterruptsAt(d.lastUsed)
}

// EnableInterruptsDelayed asks for a notification only when the device
// has returned about three quarters of the chains outstanding, as Linux's
// virtqueue_enable_cb_delayed does for transmit queues, and reports
// whether that many came back already.
func (d *Driver) EnableInterruptsDelayed() bool {
	outstanding := d.availIdx - d.lastUsed
	return d.enableInterruptsAt(d.lastUsed + outstanding*3/4)
}

func (d *Driver) enableInterruptsAt(event uint16) bool {
	if d.Features&virtio.FeatureEventIdx != 0 {
		d.SetUsedEvent(event)
	} else {
		d.SetAvailFlags(0)
	}
	fence()
	var b [2]byte
	d.read(d.UsedRing+2, b[:])
	used := binary.LittleEndian.Uint16(b[:])
	// Whether used.idx has passed event already (vring_need_event's
	// comparison, as virtqueue_poll and virtqueue_enable_cb_delayed use
	// it).
	return used-event-1 < used-d.lastUsed
}
