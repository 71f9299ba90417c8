package blk

import (
	"fmt"
	"sync"

	"github.com/gvmm/gvmm/eventfd"
	"github.com/gvmm/gvmm/virtio"
	"github.com/gvmm/gvmm/virtio/blk/disk"
)

// maxBatch is how many requests a worker takes from its queue before it
// completes them: they run concurrently on up to Config.Parallel
// goroutines (one after the other with Parallel 1), as QEMU's thread pool
// runs a queue's requests.
const maxBatch = 16

// slot is one request in flight: its chain, its parsed form and the I/O
// scratch it runs with. A slot is run by one goroutine at a time.
//
// The fields a request touches after its system call come first, on the
// same cache lines and page as the chain, and the segments of the rare
// DISCARD and WRITE_ZEROES requests last: where a system call costs the
// process its TLB entries (a paravirtualized guest such as kvm_pvm's),
// every other page touched per request costs a TLB miss (measured by
// BenchmarkRequests).
type slot struct {
	w       *worker
	io      *disk.IO
	written uint32
	// failed says the request was answered with an error status.
	failed bool
	err    error
	chain  virtio.Chain
	req    Request
	segs   [maxSegments]Segment
}

// worker serves one queue.
type worker struct {
	dev   *Device
	index int
	q     *virtio.Queue
	kick  *eventfd.EventFD
	irq   virtio.Interrupt
	fail  func(error)
	ro    bool
	size  uint64

	// mu keeps ProcessQueue and the worker goroutine apart.
	mu     sync.Mutex
	slots  []*slot
	broken bool

	// work feeds the helper goroutines (Config.Parallel - 1 of them);
	// batch counts the slots of the current batch not yet run.
	work    chan *slot
	batch   sync.WaitGroup
	helpers sync.WaitGroup
}

func newWorker(d *Device, index int, aq virtio.ActiveQueue, a virtio.Activation) *worker {
	w := &worker{dev: d, index: index, q: aq.Queue, kick: aq.Kick, irq: a.Interrupt, fail: a.Fail,
		ro: d.cfg.Disk.ReadOnly(), size: d.cfg.Disk.Size()}
	// A batch is up to maxBatch requests even when they run one at a
	// time: taking them from the ring together, completing them together
	// and raising one interrupt for them costs less per request than
	// doing each by itself.
	for i := 0; i < maxBatch; i++ {
		w.slots = append(w.slots, &slot{w: w, io: d.cfg.Disk.NewIO()})
	}
	if d.cfg.Parallel > 1 {
		w.work = make(chan *slot, maxBatch)
		for i := 1; i < d.cfg.Parallel; i++ {
			w.helpers.Add(1)
			go w.help()
		}
	}
	return w
}

// help runs slots until the work channel is closed.
func (w *worker) help() {
	defer w.helpers.Done()
	for s := range w.work {
		s.run()
		w.batch.Done()
	}
}

// close stops the helpers and frees the slots; the worker goroutine must
// have returned.
func (w *worker) close() {
	if w.work != nil {
		close(w.work)
		w.helpers.Wait()
	}
	for _, s := range w.slots {
		s.io.Close()
	}
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
// works (virtio 1.2 section 2.7.10): it takes up to a batch of requests,
// runs them (concurrently when there are several), completes them in the
// order it took them, and raises the interrupt if the driver asked to hear
// of them.
func (w *worker) process() {
	if w.broken {
		return
	}
	q := w.q
	for {
		q.DisableNotifications()
		for {
			n := 0
			for n < len(w.slots) {
				ok, err := q.Pop(&w.slots[n].chain)
				if err != nil {
					w.breakQueue(err)
					return
				}
				if !ok {
					break
				}
				n++
			}
			if n == 0 {
				break
			}
			w.runBatch(w.slots[:n])
			w.count(w.slots[:n])
			for _, s := range w.slots[:n] {
				if s.err != nil {
					w.breakQueue(s.err)
					return
				}
				if err := q.Push(s.chain.Head, s.written); err != nil {
					w.breakQueue(err)
					return
				}
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

// count adds the batch's answered requests to the device's counters, once
// per batch, before any is pushed (so that a driver that sees one complete
// sees it counted).
func (w *worker) count(slots []*slot) {
	var total, failed uint64
	for _, s := range slots {
		if s.err != nil {
			break
		}
		total++
		if s.failed {
			failed++
		}
	}
	w.dev.requests.Add(total)
	if failed > 0 {
		w.dev.errors.Add(failed)
	}
}

// runBatch runs the slots: one on the calling goroutine, the others on the
// helpers, with the caller taking back whatever they have not started.
func (w *worker) runBatch(slots []*slot) {
	if len(slots) == 1 || w.work == nil {
		for _, s := range slots {
			s.run()
		}
		return
	}
	w.batch.Add(len(slots))
	for _, s := range slots[1:] {
		w.work <- s // buffered for maxBatch: never blocks
	}
	slots[0].run()
	w.batch.Done()
	for {
		select {
		case s := <-w.work:
			s.run()
			w.batch.Done()
			continue
		default:
		}
		break
	}
	w.batch.Wait()
}

func (w *worker) breakQueue(err error) {
	w.broken = true
	w.fail(fmt.Errorf("virtio-blk queue %d: %w", w.index, err))
}

// run executes the request in s.chain, setting s.written to how many
// bytes it wrote to the driver's buffers, or s.err when the request cannot
// even be answered.
func (s *slot) run() {
	s.written, s.err = s.handle()
}

func (s *slot) handle() (uint32, error) {
	r := &s.req
	if err := Parse(&s.chain, r); err != nil {
		return 0, err
	}
	status, written := s.execute(r)
	s.failed = status != StatusOK
	r.SetStatus(status)
	return uint32(written) + 1, nil
}

// execute performs r and returns its status and the data bytes written to
// the driver's buffers (the status byte not counted).
func (s *slot) execute(r *Request) (byte, uint64) {
	w := s.w
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
			if s.io.ReadAt(r.Data, off) != nil {
				return StatusIOErr, 0
			}
			return StatusOK, n
		}
		if w.ro || s.io.WriteAt(r.Data, off) != nil {
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
		return s.ranges(r), 0
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
func (s *slot) ranges(r *Request) byte {
	w := s.w
	if w.ro {
		return StatusIOErr
	}
	n, err := r.Segments(s.segs[:])
	if err != nil || n > maxSegments {
		return StatusIOErr
	}
	for _, g := range s.segs[:n] {
		// A discard with the unmap flag, or any reserved flag, is
		// unsupported (section 5.2.6.2).
		if g.Reserved || (r.Type == TypeDiscard && g.Unmap) {
			return StatusUnsupp
		}
		if g.Sectors > maxRangeSectors {
			return StatusIOErr
		}
		off, ok := w.rangeOK(g.Sector, g.Sectors<<sectorShift)
		if !ok {
			return StatusIOErr
		}
		if r.Type == TypeDiscard {
			err = s.io.Discard(off, g.Sectors<<sectorShift)
		} else {
			err = s.io.WriteZeroes(off, g.Sectors<<sectorShift)
		}
		if err != nil {
			return StatusIOErr
		}
	}
	return StatusOK
}
