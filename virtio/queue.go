package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/gvmm/gvmm/memory"
)

// Memory is guest RAM as a queue sees it: Slice returns the host bytes
// backing [gpa, gpa+n), or an error if any of it is not RAM.
// *memory.Guest implements it.
type Memory interface {
	Slice(gpa, n uint64) ([]byte, error)
}

// MaxQueueSize is the largest split virtqueue (virtio 1.2 section 2.7:
// "The maximum Queue Size value is 32768").
const MaxQueueSize = 32768

// Split virtqueue layout (virtio 1.2 section 2.7).
const (
	descSize = 16 // struct virtq_desc: le64 addr, le32 len, le16 flags, le16 next

	// Alignment of the three areas (section 2.7, table "Virtqueue Part
	// Alignment"): descriptor table 16, driver area 2, device area 4.
	descAlign  = 16
	availAlign = 2
	usedAlign  = 4

	// struct virtq_avail: le16 flags, le16 idx, le16 ring[size], le16
	// used_event. struct virtq_used: le16 flags, le16 idx, struct
	// virtq_used_elem {le32 id; le32 len} ring[size], le16 avail_event.
	ringHeader   = 4
	usedElemSize = 8
)

// Descriptor flags (section 2.7.5).
const (
	descFNext     = 1 // VIRTQ_DESC_F_NEXT: the chain continues at next
	descFWrite    = 2 // VIRTQ_DESC_F_WRITE: device-writable buffer
	descFIndirect = 4 // VIRTQ_DESC_F_INDIRECT: the buffer is a descriptor table
)

// Ring flags (sections 2.7.7 and 2.7.10).
const (
	availFNoInterrupt = 1 // VIRTQ_AVAIL_F_NO_INTERRUPT: the driver wants no interrupts
	usedFNoNotify     = 1 // VIRTQ_USED_F_NO_NOTIFY: the device wants no notifications
)

// ErrBroken is wrapped by every error of a queue that has seen a malformed
// ring or chain: the device must stop using it and ask for a reset.
var ErrBroken = errors.New("virtqueue broken")

// QueueConfig is a split virtqueue as the driver programmed it through its
// transport (virtio 1.2 section 4.1.4.3: queue_size, queue_desc,
// queue_driver, queue_device) and the negotiated features that change how
// it is used.
type QueueConfig struct {
	// Size is the number of descriptors, a power of 2 up to MaxQueueSize.
	Size uint16
	// Desc, Driver and Device are the guest-physical addresses of the
	// descriptor table, the available ring and the used ring.
	Desc, Driver, Device uint64
	// Features are the negotiated feature bits; FeatureIndirectDesc and
	// FeatureEventIdx matter here.
	Features uint64
}

// Queue is one split virtqueue, seen from the device (virtio 1.2 section
// 2.7). Its methods are not safe for concurrent use: one worker goroutine
// owns a queue while the device is active.
type Queue struct {
	mem   Memory
	size  uint16
	desc  []byte // descSize * size bytes
	avail []byte // ringHeader + 2*size + 2 bytes
	used  []byte // ringHeader + 8*size + 2 bytes

	indirect bool
	eventIdx bool

	// lastAvail is the next avail ring index to take a chain from.
	lastAvail uint16
	// usedIdx is the next used ring index to fill; it is what the guest
	// sees in used.idx after each Push.
	usedIdx uint16
	// signalled is usedIdx when the driver was last interrupted (or
	// considered): the "old" of vring_need_event.
	signalled uint16
	// pushed is set by Push and cleared by NeedsInterrupt.
	pushed    bool
	usedFlags uint16
	// fence is the target of the atomic read-modify-write that serves as
	// a full memory barrier.
	fence uint32
	err   error
}

// NewQueue checks cfg against guest memory and returns the queue: the size
// must be a power of 2 up to MaxQueueSize, and each area must be aligned as
// section 2.7 requires and lie entirely within guest RAM. A driver that
// programs anything else gets an error (the transport then asks for a
// reset).
func NewQueue(mem Memory, cfg QueueConfig) (*Queue, error) {
	n := uint64(cfg.Size)
	if n == 0 || n > MaxQueueSize || n&(n-1) != 0 {
		return nil, fmt.Errorf("%w: queue size %d is not a power of 2 from 1 to %d", ErrBroken, cfg.Size, MaxQueueSize)
	}
	area := func(name string, addr, align, size uint64) ([]byte, error) {
		if addr%align != 0 {
			return nil, fmt.Errorf("%w: %s at %#x is not %d-byte aligned", ErrBroken, name, addr, align)
		}
		b, err := mem.Slice(addr, size)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrBroken, name, err)
		}
		return b, nil
	}
	q := &Queue{mem: mem, size: cfg.Size,
		indirect: cfg.Features&FeatureIndirectDesc != 0,
		eventIdx: cfg.Features&FeatureEventIdx != 0}
	var err error
	if q.desc, err = area("descriptor table", cfg.Desc, descAlign, descSize*n); err != nil {
		return nil, err
	}
	if q.avail, err = area("available ring", cfg.Driver, availAlign, ringHeader+2*n+2); err != nil {
		return nil, err
	}
	if q.used, err = area("used ring", cfg.Device, usedAlign, ringHeader+usedElemSize*n+2); err != nil {
		return nil, err
	}
	return q, nil
}

// Size returns the number of descriptors.
func (q *Queue) Size() uint16 { return q.size }

// Err returns why the queue broke, or nil.
func (q *Queue) Err() error { return q.err }

func (q *Queue) fail(format string, args ...any) error {
	if q.err == nil {
		q.err = fmt.Errorf("%w: "+format, append([]any{ErrBroken}, args...)...)
	}
	return q.err
}

// barrier is a full memory barrier: on x86-64 a locked read-modify-write
// orders every earlier load and store before every later one (Intel SDM
// vol. 3A section 9.2.2), and the Go compiler moves no memory access across
// an atomic operation.
func (q *Queue) barrier() { atomic.AddUint32(&q.fence, 1) }

// availIdx reads the driver's avail.idx with one atomic 32-bit load of the
// aligned word holding it: avail is 2-byte aligned, so idx (at offset 2)
// is either the high half of the word at avail or the low half of the word
// at avail+2, both inside the ring.
func (q *Queue) availIdx() uint16 {
	if q.avail != nil && len(q.avail) >= 8 {
		if w, err := memory.LoadUint32(q.avail[0:4]); err == nil {
			return uint16(w >> 16)
		}
		if w, err := memory.LoadUint32(q.avail[2:6]); err == nil {
			return uint16(w)
		}
	}
	// Unreachable for a queue from NewQueue (avail is 2-byte aligned and
	// at least 8 bytes); a plain read keeps it safe anyway.
	return binary.LittleEndian.Uint16(q.avail[2:4])
}

// Pending reports whether the driver has made chains available that Pop has
// not taken yet.
func (q *Queue) Pending() bool {
	return q.err == nil && q.availIdx() != q.lastAvail
}

// Pop takes the next available chain into c. It returns false when there
// is none. An error means the ring or the chain is malformed: the queue is
// then broken (ErrBroken) and every later call fails. If the error comes
// from a chain whose head index was valid, c.Head is set, so the device may
// still return the head to the driver with Push.
func (q *Queue) Pop(c *Chain) (bool, error) {
	c.reset()
	if q.err != nil {
		return false, q.err
	}
	idx := q.availIdx()
	if idx == q.lastAvail {
		return false, nil
	}
	// The driver can make at most size chains available beyond what the
	// device has taken (section 2.7.13.3: idx - last seen <= queue size).
	if n := idx - q.lastAvail; n > q.size {
		return false, q.fail("avail.idx %d is %d entries past the last seen %d, queue size %d", idx, n, q.lastAvail, q.size)
	}
	slot := uint32(q.lastAvail % q.size)
	head := binary.LittleEndian.Uint16(q.avail[ringHeader+2*slot:])
	q.lastAvail++
	if head >= q.size {
		return false, q.fail("avail ring entry %d names descriptor %d, queue size %d", slot, head, q.size)
	}
	c.Head, c.valid = head, true
	if err := q.walk(head, c); err != nil {
		return false, err
	}
	return true, nil
}

// walk follows the chain starting at head, translating every buffer into
// guest memory. The number of descriptors taken from the queue's table, and
// from an indirect table, is bounded by the size of the table, so a looping
// chain ends with an error (section 2.7.5.3.1: no chain is longer than the
// queue size).
func (q *Queue) walk(head uint16, c *Chain) error {
	table, entries := q.desc, uint32(q.size)
	idx, count, indirect := uint32(head), uint32(0), false
	for {
		if idx >= entries {
			return q.fail("descriptor %d outside a table of %d", idx, entries)
		}
		count++
		if count > entries {
			return q.fail("chain from head %d is longer than its table of %d descriptors (a loop?)", head, entries)
		}
		d := table[idx*descSize : idx*descSize+descSize]
		addr := binary.LittleEndian.Uint64(d[0:])
		length := binary.LittleEndian.Uint32(d[8:])
		flags := binary.LittleEndian.Uint16(d[12:])
		next := binary.LittleEndian.Uint16(d[14:])

		if flags&descFIndirect != 0 {
			// Section 2.7.5.3.1: only with VIRTIO_F_INDIRECT_DESC, never
			// inside an indirect table, never together with NEXT, and
			// the table is a whole number of descriptors.
			switch {
			case !q.indirect:
				return q.fail("indirect descriptor without VIRTIO_F_INDIRECT_DESC")
			case indirect:
				return q.fail("indirect descriptor inside an indirect table")
			case flags&descFNext != 0:
				return q.fail("indirect descriptor with NEXT set")
			case length == 0 || length%descSize != 0:
				return q.fail("indirect table of %d bytes is not a whole number of descriptors", length)
			case length/descSize > uint32(q.size):
				return q.fail("indirect table of %d descriptors is longer than the queue size %d", length/descSize, q.size)
			}
			t, err := q.mem.Slice(addr, uint64(length))
			if err != nil {
				return q.fail("indirect table: %w", err)
			}
			// A chain that reached the indirect descriptor through NEXT
			// is not allowed either, but Linux never does that and the
			// buffers so far are fine: accept them.
			table, entries, idx, count, indirect = t, length/descSize, 0, 0, true
			continue
		}
		if err := c.add(q.mem, addr, length, flags&descFWrite != 0); err != nil {
			return q.fail("descriptor %d: %w", idx, err)
		}
		if flags&descFNext == 0 {
			return nil
		}
		idx = uint32(next)
	}
}

// Push returns a chain to the driver: head is the chain's head index and
// written the number of bytes the device wrote into its device-writable
// buffers (section 2.7.8). The used element is visible to the driver before
// the used index that covers it.
func (q *Queue) Push(head uint16, written uint32) error {
	if q.err != nil {
		return q.err
	}
	if head >= q.size {
		return fmt.Errorf("virtqueue: push of descriptor %d, queue size %d", head, q.size)
	}
	slot := uint32(q.usedIdx % q.size)
	e := q.used[ringHeader+usedElemSize*slot:]
	binary.LittleEndian.PutUint32(e[0:], uint32(head))
	binary.LittleEndian.PutUint32(e[4:], written)
	q.usedIdx++
	q.pushed = true
	q.publishUsed()
	return nil
}

// publishUsed stores used.flags and used.idx with one atomic store: the
// device owns both, and the store is a full barrier.
func (q *Queue) publishUsed() {
	// NewQueue checked that used is 4-byte aligned and in RAM.
	_ = memory.StoreUint32(q.used[0:4], uint32(q.usedFlags)|uint32(q.usedIdx)<<16)
}

// NeedsInterrupt reports whether the driver wants a used buffer
// notification for the chains pushed since the last call (section 2.7.7
// without, 2.7.10 with VIRTIO_F_EVENT_IDX). It returns false when nothing
// was pushed.
func (q *Queue) NeedsInterrupt() bool {
	if !q.pushed || q.err != nil {
		return false
	}
	q.pushed = false
	// Push's atomic store of used.idx was a full barrier: the reads below
	// see what the driver wrote before it saw the new index.
	if !q.eventIdx {
		return binary.LittleEndian.Uint16(q.avail[0:2])&availFNoInterrupt == 0
	}
	usedEvent := binary.LittleEndian.Uint16(q.avail[ringHeader+2*uint32(q.size):])
	newIdx, old := q.usedIdx, q.signalled
	q.signalled = newIdx
	// vring_need_event (section 2.7.10): interrupt if used_event lies in
	// [old, new).
	return newIdx-usedEvent-1 < newIdx-old
}

// DisableNotifications asks the driver not to notify the device while it
// is processing the queue (section 2.7.10): VIRTQ_USED_F_NO_NOTIFY without
// VIRTIO_F_EVENT_IDX; with it, avail_event is simply left behind, which
// has the same effect until EnableNotifications.
func (q *Queue) DisableNotifications() {
	if q.eventIdx || q.err != nil {
		return
	}
	q.usedFlags |= usedFNoNotify
	q.publishUsed()
}

// EnableNotifications asks the driver to notify the device of the next
// available chain, and reports whether chains became available meanwhile
// (the device must then process them: the driver may have checked the
// flags before they changed, and not notified).
func (q *Queue) EnableNotifications() bool {
	if q.err != nil {
		return false
	}
	if q.eventIdx {
		// avail_event = the next index the device will look at: the
		// driver notifies when its avail.idx passes it.
		binary.LittleEndian.PutUint16(q.used[ringHeader+usedElemSize*uint32(q.size):], q.lastAvail)
	} else {
		q.usedFlags &^= usedFNoNotify
		q.publishUsed()
	}
	q.barrier()
	return q.Pending()
}

// State returns the ring positions: the next avail index the device will
// take and the next used index it will fill.
func (q *Queue) State() (lastAvail, usedIdx uint16) { return q.lastAvail, q.usedIdx }
