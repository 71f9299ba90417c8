package eventfd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrStopped is returned by Waiter.Wait once Stop was called.
var ErrStopped = errors.New("eventfd: waiter stopped")

// Waiter waits for an EventFD through Go's netpoller (epoll), as the
// runtime waits for sockets: the goroutine in Wait parks and holds no P
// (the scheduler's right to run Go code) while it waits, where Wait of
// the EventFD blocks its thread in poll(2) with a P until the runtime's
// monitor takes it back. A worker woken once per guest notification then
// leaves the P free for the goroutines that serve the other queues and
// for the netpoller itself.
//
// A Waiter reads a duplicate of the EventFD's descriptor (dup(2): the
// same counter), wrapped in an os.File; closing it, even from the file's
// finalizer, never closes the descriptor KVM has registered. One
// goroutine at a time may Wait.
type Waiter struct {
	f  *os.File
	rc syscall.RawConn

	// The read callback and what it returns, kept here so that Wait
	// allocates nothing.
	buf  [8]byte
	n    uint64
	err  error
	read func(fd uintptr) bool
}

// NewWaiter returns a Waiter on e's counter.
func (e *EventFD) NewWaiter() (*Waiter, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.fd < 0 {
		return nil, ErrClosed
	}
	fd, err := unix.FcntlInt(uintptr(e.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("eventfd: dup: %w", err)
	}
	// The descriptor shares e's file description, non-blocking (New):
	// os.NewFile registers it with the netpoller.
	w := &Waiter{f: os.NewFile(uintptr(fd), "eventfd")}
	if w.rc, err = w.f.SyscallConn(); err != nil {
		w.f.Close()
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	w.read = w.readCounter
	return w, nil
}

// Wait parks until the counter is non-zero, then resets it to zero and
// returns what it held. After Stop it returns ErrStopped.
func (w *Waiter) Wait() (uint64, error) {
	w.n, w.err = 0, nil
	if err := w.rc.Read(w.read); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return 0, ErrStopped
		}
		return 0, fmt.Errorf("eventfd: wait: %w", err)
	}
	if w.err != nil {
		return 0, fmt.Errorf("eventfd: read: %w", w.err)
	}
	return w.n, nil
}

// readCounter is the RawConn callback of Wait: it returns false to park
// until the descriptor is readable.
func (w *Waiter) readCounter(fd uintptr) bool {
	for {
		// eventfd(2): a read of 8 bytes returns the counter and resets
		// it; EAGAIN while it is zero. The descriptor is non-blocking,
		// so the read never sleeps: a RawSyscall keeps the goroutine's
		// P (see Signal).
		n, _, errno := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&w.buf[0])), 8)
		switch errno {
		case 0:
			if n != 8 {
				w.err = fmt.Errorf("read %d bytes, want 8", n)
				return true
			}
			w.n = binary.NativeEndian.Uint64(w.buf[:])
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		w.err = errno
		return true
	}
}

// Stop makes a Wait in progress, and every later one, return ErrStopped.
// It may be called from any goroutine.
func (w *Waiter) Stop() error {
	return w.f.SetReadDeadline(time.Unix(1, 0))
}

// Close closes the duplicate descriptor. Stop the waiting goroutine first.
func (w *Waiter) Close() error { return w.f.Close() }
