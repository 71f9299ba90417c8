package net

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/gvmm/gvmm/eventfd"
	"github.com/gvmm/gvmm/virtio"
)

const (
	// maxIOV bounds the buffers of one read: UIO_MAXIOV (1024) in all,
	// one of them the spill buffer.
	maxIOV = 1023
	// irqBatch is how many frames the device completes before it looks
	// at whether the driver wants an interrupt, when frames keep coming.
	irqBatch = 64
	// errorBackoff is how long a worker waits after a backend error
	// before it tries again, so that a failing backend cannot make it
	// spin.
	errorBackoff = 10 * time.Millisecond
)

// errStopped: the device is being reset.
var errStopped = errors.New("stopped")

// rxChain is a receive chain the device took from the queue and holds
// until a frame fills it.
type rxChain struct {
	head uint16
	bufs virtio.IOVec
	cap  uint64
}

// receiver serves the receive queue: it holds enough of the driver's
// buffers for the largest frame, reads each frame from the backend
// straight into them, and returns them filled.
type receiver struct {
	d         *Device
	q         *virtio.Queue
	kick      *eventfd.Waiter
	irq       virtio.Interrupt
	fail      func(error)
	mergeable bool
	broken    bool

	chain virtio.Chain
	// held is a ring of the chains taken and not yet used, oldest at
	// first; each slot keeps its own IOVec so that nothing is allocated
	// in steady state.
	held         []rxChain
	first, count int
	heldCap      uint64
	iov          [][]byte
	caps         []uint64
	used         []uint32
	spill        []byte
	sinceIRQ     int
	idleFn       func()
	// recent is a decaying maximum of the frames received lately: the
	// read goes straight into as many held chains as cover it, the spill
	// buffer takes the rest. Each buffer is one more iovec for the
	// kernel to import and walk, so a stream of small frames reads into
	// one chain and the spill buffer, a stream of 64 KiB segments into
	// all the chains they need.
	recent uint64
}

func newReceiver(d *Device, aq virtio.ActiveQueue, kick *eventfd.Waiter, a virtio.Activation) *receiver {
	r := &receiver{d: d, q: aq.Queue, kick: kick, irq: a.Interrupt, fail: a.Fail,
		mergeable: a.Features&FeatureMrgRxBuf != 0,
		held:      make([]rxChain, aq.Queue.Size()),
		spill:     make([]byte, HeaderSize+MaxFrame)}
	r.idleFn = r.flushIRQ
	return r
}

func (r *receiver) run() {
	defer r.d.wg.Done()
	for {
		if err := r.receive(); err != nil {
			return
		}
	}
}

// need is how much buffer space the device holds before it reads: room
// for the largest frame with MRG_RXBUF, one chain without (a frame must
// then fit one chain).
func (r *receiver) need() uint64 {
	if r.mergeable {
		return HeaderSize + MaxFrame
	}
	return 1
}

// flushIRQ sends the interrupt the driver wants for what was completed.
func (r *receiver) flushIRQ() {
	r.sinceIRQ = 0
	if r.q.NeedsInterrupt() {
		r.irq.NotifyQueue(rxQueue)
	}
}

// take pops chains until the device holds want bytes of buffers or the
// queue has no more. A chain too small for a header is returned at once,
// unused, and counted as malformed. It returns errStopped if the queue
// broke (after reporting it).
func (r *receiver) take(want uint64) error {
	size := len(r.held)
	for r.heldCap < want && r.count < size {
		ok, err := r.q.Pop(&r.chain)
		if err != nil {
			r.broken = true
			r.fail(fmt.Errorf("virtio-net receive queue: %w", err))
			return errStopped
		}
		if !ok {
			return nil
		}
		c := r.chain.Writable.Len()
		if c < HeaderSize {
			r.d.c.rxMalformed.Add(1)
			if err := r.q.Push(r.chain.Head, 0); err != nil {
				r.broken = true
				r.fail(fmt.Errorf("virtio-net receive queue: %w", err))
				return errStopped
			}
			continue
		}
		s := &r.held[(r.first+r.count)%size]
		s.head, s.cap = r.chain.Head, c
		s.bufs = append(s.bufs[:0], r.chain.Writable...)
		r.count++
		r.heldCap += c
	}
	return nil
}

// waitBuffers waits until the driver makes receive buffers available
// (its kick), with notifications on while it waits (section 2.7.10).
func (r *receiver) waitBuffers() error {
	r.flushIRQ()
	if r.q.EnableNotifications() {
		r.q.DisableNotifications()
		return nil
	}
	if _, err := r.kick.Wait(); err != nil {
		if !errors.Is(err, eventfd.ErrStopped) {
			r.fail(fmt.Errorf("virtio-net receive queue: %w", err))
		}
		return errStopped
	}
	r.q.DisableNotifications()
	return nil
}

// waitStop parks a worker whose queue broke until the reset; kicks are
// ignored.
func (r *receiver) waitStop() error {
	for {
		if _, err := r.kick.Wait(); err != nil {
			return errStopped
		}
	}
}

// receive reads one frame into the driver's buffers and completes it.
func (r *receiver) receive() error {
	if r.broken {
		return r.waitStop()
	}
	// Buffers first: without any, the frame stays in the backend (a tap
	// queues, then drops, as a full NIC ring does).
	for {
		if err := r.take(r.need()); err != nil {
			return err
		}
		if r.count > 0 {
			break
		}
		if err := r.waitBuffers(); err != nil {
			return err
		}
	}
	size := len(r.held)
	// The held chains, whole, then the spill buffer for what they cannot
	// take.
	r.iov = r.iov[:0]
	var covered uint64
	inIOV := 0
	cover := min(r.need(), max(r.recent, 1))
	for i := 0; i < r.count && covered < cover; i++ {
		s := &r.held[(r.first+i)%size]
		if len(r.iov)+len(s.bufs) > maxIOV {
			break
		}
		r.iov = append(r.iov, s.bufs...)
		covered += s.cap
		inIOV++
		if !r.mergeable {
			break
		}
	}
	if total := uint64(HeaderSize + MaxFrame); covered < total {
		r.iov = append(r.iov, r.spill[:total-covered])
	}
	n, err := r.d.cfg.Backend.ReadFrame(r.iov, r.idleFn)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return errStopped
		}
		r.d.c.rxDropped.Add(1)
		r.d.backendError(err)
		r.flushIRQ()
		time.Sleep(errorBackoff)
		return nil
	}
	// Where the frame goes; with MRG_RXBUF it may need more chains than
	// the device held (it spilled).
	for {
		r.caps = r.caps[:0]
		for i := 0; i < r.count; i++ {
			r.caps = append(r.caps, r.held[(r.first+i)%size].cap)
		}
		r.used, err = Place(n, r.caps, r.mergeable, r.used)
		if err == nil {
			break
		}
		if !errors.Is(err, errShort) || !r.mergeable || r.count == size {
			// Too short to be a frame, larger than the one chain a
			// driver without MRG_RXBUF gives, or larger than every
			// buffer of the queue together: drop it. The chains stay
			// held for the next one.
			if errors.Is(err, errShort) {
				r.d.c.rxDropped.Add(1)
			} else {
				r.d.c.rxMalformed.Add(1)
			}
			return nil
		}
		before := r.count
		if err := r.take(r.heldCap + 1); err != nil {
			return err
		}
		if r.count == before {
			if err := r.waitBuffers(); err != nil {
				return err
			}
		}
	}
	k := len(r.used)
	r.recent = max(uint64(n), r.recent-r.recent/16)
	// What spilled goes into the chains after those read into.
	if uint64(n) > covered {
		spilled := r.spill[:uint64(n)-covered]
		for i := inIOV; i < k && len(spilled) > 0; i++ {
			s := &r.held[(r.first+i)%size]
			c := s.bufs.WriteAt(spilled, 0)
			spilled = spilled[c:]
		}
	}
	// num_buffers (section 5.1.6.4): how many chains the frame took; 1
	// without MRG_RXBUF. The backend left the field as it was.
	var nb [2]byte
	binary.LittleEndian.PutUint16(nb[:], uint16(k))
	r.held[r.first].bufs.WriteAt(nb[:], hdrNumBuffers)
	for i := 0; i < k; i++ {
		s := &r.held[r.first]
		if err := r.q.Push(s.head, r.used[i]); err != nil {
			r.broken = true
			r.fail(fmt.Errorf("virtio-net receive queue: %w", err))
			return errStopped
		}
		r.heldCap -= s.cap
		r.first = (r.first + 1) % size
		r.count--
	}
	r.d.c.rxFrames.Add(1)
	r.d.c.rxBytes.Add(uint64(n - HeaderSize))
	r.sinceIRQ++
	if r.sinceIRQ >= irqBatch {
		r.flushIRQ()
	}
	return nil
}
