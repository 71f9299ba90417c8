package machine

import (
	"errors"
	"io"
	"sync"
	"time"
)

// batchWriter collects guest console output and writes it to the host in
// batches: when a line ends, when the buffer fills, or after a short delay.
// The 8250 hands over one byte per guest port write; writing each to the
// terminal would cost a system call per byte.
//
// Write does not block on the destination: vCPU threads call it while
// handling an exit, and a separate goroutine does the actual writes. Only
// when the destination has fallen batchMax bytes behind (a terminal paused
// with Ctrl-S, a full pipe) does Write wait for it, so that a guest printing
// without end cannot grow the VMM's memory without bound; nothing is dropped.
type batchWriter struct {
	mu      sync.Mutex
	drained *sync.Cond // signalled after each flush
	buf     []byte
	spare   []byte
	dst     io.Writer
	wake    chan struct{}
	done    chan struct{}
	closing bool
	noWait  bool // set when the VM ends: vCPU threads must not wait any more
	err     error
	// drain bounds how long Close waits for the destination.
	drain time.Duration
	// stuck is set when Close gave up on a destination that did not
	// return from Write within drain.
	stuck bool
}

// release stops Write from waiting for a slow destination, so that vCPU
// threads can return when the VM ends; the output is still all written by
// Close.
func (w *batchWriter) release() {
	w.mu.Lock()
	w.noWait = true
	w.drained.Broadcast()
	w.mu.Unlock()
}

const (
	// batchDelay bounds how long output waits for more bytes before it is
	// written: short enough to feel immediate at a prompt.
	batchDelay = 5 * time.Millisecond
	// batchLimit is the buffer size past which the flusher is woken at
	// once rather than after batchDelay.
	batchLimit = 64 << 10
	// batchMax is how far the destination may fall behind before Write
	// waits for it.
	batchMax = 8 << 20
	// defaultDrain is how long Close waits for the destination to take
	// what is left (Config.ConsoleDrain).
	defaultDrain = 10 * time.Second
)

// errStuck says the destination did not take the console output in time.
var errStuck = errors.New("the console writer did not take the output in time; the rest is lost")

func newBatchWriter(dst io.Writer) *batchWriter {
	w := &batchWriter{dst: dst, wake: make(chan struct{}, 1), done: make(chan struct{}), drain: defaultDrain}
	w.drained = sync.NewCond(&w.mu)
	go w.loop()
	return w
}

// Write appends p to the buffer. It always succeeds: a failing destination
// is reported by Close.
func (w *batchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	for len(w.buf) >= batchMax && !w.closing && !w.noWait {
		w.signal()
		w.drained.Wait()
	}
	w.buf = append(w.buf, p...)
	n := len(w.buf)
	w.mu.Unlock()
	if n >= batchLimit || (len(p) > 0 && p[len(p)-1] == '\n') {
		w.signal()
	} else if n == len(p) {
		// First bytes of a new batch: make sure a flush follows soon.
		w.signal()
	}
	return len(p), nil
}

func (w *batchWriter) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *batchWriter) loop() {
	defer close(w.done)
	for {
		<-w.wake
		w.mu.Lock()
		closing := w.closing
		w.mu.Unlock()
		if !closing {
			// Let a partial line gather more bytes; a newline or a full
			// buffer has already signalled and is flushed right after.
			time.Sleep(batchDelay)
		}
		w.flush()
		if closing {
			return
		}
	}
}

func (w *batchWriter) flush() {
	w.mu.Lock()
	out := w.buf
	w.buf, w.spare = w.spare[:0], nil
	w.mu.Unlock()
	if len(out) > 0 {
		if _, err := w.dst.Write(out); err != nil {
			w.mu.Lock()
			if w.err == nil {
				w.err = err
			}
			w.mu.Unlock()
		}
	}
	w.mu.Lock()
	if w.spare == nil && cap(out) <= batchMax {
		w.spare = out[:0]
	}
	w.drained.Broadcast()
	w.mu.Unlock()
}

// Close writes everything still buffered and stops the flusher, waiting
// at most drain for the destination: a destination that has not returned
// from Write by then is abandoned (its goroutine stays blocked in Write)
// and Close reports errStuck, now and on every later call. Output written
// after Close is written directly.
func (w *batchWriter) Close() error {
	w.mu.Lock()
	if w.closing {
		defer w.mu.Unlock()
		if w.stuck {
			return errStuck
		}
		return w.err
	}
	w.closing = true
	w.drained.Broadcast()
	w.mu.Unlock()
	w.signal()
	t := time.NewTimer(w.drain)
	defer t.Stop()
	select {
	case <-w.done:
	case <-t.C:
		w.mu.Lock()
		w.stuck = true
		w.mu.Unlock()
		return errStuck
	}
	w.flush()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}
