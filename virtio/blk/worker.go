package blk

import (
	"fmt"
	"sync"

	"github.com/gvmm/gvmm/eventfd"
	"github.com/gvmm/gvmm/virtio"
	"github.com/gvmm/gvmm/virtio/blk/disk"
)

// worker serves one queue.
type worker struct {
	dev   *Device
	index int
	q     *virtio.Queue
	kick  *eventfd.EventFD
	irq   virtio.Interrupt
	fail  func(error)
	io    *disk.IO
	ro    bool
	size  uint64

	// mu keeps ProcessQueue and the worker goroutine apart.
	mu     sync.Mutex
	chain  virtio.Chain
	req    Request
	segs   [maxSegments]Segment
	broken bool
}

func (w *worker) run(stop *eventfd.EventFD) {
	defer w.dev.wg.Done()
	// Requests made available before the kick eventfd was registered (or
	// while the device was being activated) are not lost: look once
	// first.
	w.mu.Lock()
	w.process()
	w.mu.Unlock()
	for {
		stopped, err := w.kick.Wait(stop)
		if stopped {
			return
		}
		if err != nil {
			w.fail(fmt.Errorf("virtio-blk queue %d: %w", w.index, err))
			return
		}
		w.mu.Lock()
		w.process()
		w.mu.Unlock()
	}
}

// process serves every available request, with notifications off while it
// works (virtio 1.2 section 2.7.10), and raises the interrupt after each
// completion the driver asked to hear of.
func (w *worker) process() {
	if w.broken {
		return
	}
	q := w.q
	for {
		q.DisableNotifications()
		for {
			ok, err := q.Pop(&w.chain)
			if err != nil {
				w.breakQueue(err)
				return
			}
			if !ok {
				break
			}
			written, err := w.handle()
			if err != nil {
				w.breakQueue(err)
				return
			}
			if err := q.Push(w.chain.Head, written); err != nil {
				w.breakQueue(err)
				return
			}
			if q.NeedsInterrupt() {
				w.irq.NotifyQueue(w.index)
			}
		}
		if !q.EnableNotifications() {
			return
		}
	}
}

func (w *worker) breakQueue(err error) {
	w.broken = true
	w.fail(fmt.Errorf("virtio-blk queue %d: %w", w.index, err))
}

// handle executes the request in w.chain and returns how many bytes it
// wrote to the driver's buffers. An error means the request cannot even be
// answered.
func (w *worker) handle() (uint32, error) {
	r := &w.req
	if err := Parse(&w.chain, r); err != nil {
		return 0, err
	}
	w.dev.requests.Add(1)
	status, written := w.execute(r)
	if status != StatusOK {
		w.dev.errors.Add(1)
	}
	r.SetStatus(status)
	return uint32(written) + 1, nil
}

// execute performs r and returns its status and the data bytes written to
// the driver's buffers (the status byte not counted).
func (w *worker) execute(r *Request) (byte, uint64) {
	if r.Err != nil {
		return StatusIOErr, 0
	}
	switch r.Type {
	case TypeIn, TypeOut:
		n := r.Data.Len()
		off, ok := w.rangeOK(r.Sector, n)
		if !ok || n%disk.SectorSize != 0 {
			return StatusIOErr, 0
		}
		if r.Type == TypeIn {
			if w.io.ReadAt(r.Data, off) != nil {
				return StatusIOErr, 0
			}
			return StatusOK, n
		}
		if w.ro || w.io.WriteAt(r.Data, off) != nil {
			return StatusIOErr, 0
		}
		return StatusOK, 0
	case TypeFlush:
		if w.dev.cfg.Disk.Flush() != nil {
			return StatusIOErr, 0
		}
		return StatusOK, 0
	case TypeGetID:
		n := min(r.Data.Len(), IDBytes)
		r.Data.WriteAt(w.dev.id[:n], 0)
		return StatusOK, n
	case TypeDiscard, TypeWriteZeroes:
		return w.ranges(r), 0
	}
	return StatusUnsupp, 0
}

// rangeOK converts a sector and a length to a byte offset and checks the
// range lies inside the image.
func (w *worker) rangeOK(sector, n uint64) (uint64, bool) {
	if sector > w.size>>sectorShift {
		return 0, false
	}
	off := sector << sectorShift
	return off, n <= w.size-off
}

// ranges performs a DISCARD or WRITE_ZEROES request (section 5.2.6.2).
func (w *worker) ranges(r *Request) byte {
	if w.ro {
		return StatusIOErr
	}
	n, err := r.Segments(w.segs[:])
	if err != nil || n > maxSegments {
		return StatusIOErr
	}
	for _, s := range w.segs[:n] {
		// A discard with the unmap flag, or any reserved flag, is
		// unsupported (section 5.2.6.2).
		if s.Reserved || (r.Type == TypeDiscard && s.Unmap) {
			return StatusUnsupp
		}
		if s.Sectors > maxRangeSectors {
			return StatusIOErr
		}
		off, ok := w.rangeOK(s.Sector, s.Sectors<<sectorShift)
		if !ok {
			return StatusIOErr
		}
		if r.Type == TypeDiscard {
			err = w.io.Discard(off, s.Sectors<<sectorShift)
		} else {
			err = w.io.WriteZeroes(off, s.Sectors<<sectorShift)
		}
		if err != nil {
			return StatusIOErr
		}
	}
	return StatusOK
}
