// Package eventfd wraps Linux eventfds (eventfd(2)), the counters through
// which KVM and gvmm's worker goroutines signal each other without a trip
// through a vCPU thread: a guest's queue notification (KVM_IOEVENTFD)
// signals one, and a write to one injects an interrupt (KVM_IRQFD).
//
// An EventFD is a plain file descriptor owned by its value and closed only
// by Close; it is never wrapped in an os.File, whose finalizer could close
// it while KVM still has it registered. A Waiter, which waits through Go's
// netpoller, wraps a duplicate of it instead.
package eventfd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrClosed is returned by the methods of a closed EventFD.
var ErrClosed = errors.New("eventfd: closed")

// EventFD is one eventfd counter. Signal and Wait may be called from any
// goroutines; Close waits for neither, so the owner stops its waiters (see
// Wait's stop argument) before closing.
type EventFD struct {
	mu sync.RWMutex
	fd int
}

// New creates a non-blocking, close-on-exec eventfd with a zero counter.
func New() (*EventFD, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	return &EventFD{fd: fd}, nil
}

// FD returns the file descriptor, for registration with KVM, or -1 after
// Close.
func (e *EventFD) FD() int {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.fd
}

// Signal adds 1 to the counter, waking a waiter. A counter that would
// overflow (EAGAIN, after 2^64-2 unconsumed signals) is already signalled,
// so that is not an error.
func (e *EventFD) Signal() error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.fd < 0 {
		return ErrClosed
	}
	// eventfd(2): a write adds the 8-byte native-endian value to the
	// counter. The value lives on the stack; its address goes to the
	// kernel only for the duration of the call. The descriptor is
	// non-blocking, so the write never sleeps: it is a RawSyscall, which
	// keeps the goroutine's P. With syscall.Syscall, a call that the
	// scheduler's monitor sees running for 20 µs (an interrupt injected
	// through KVM's irqfd on a slow host) has its P handed to another
	// thread, woken for nothing, and the caller waits for a P when it
	// returns.
	one := uint64(1)
	for {
		_, _, errno := unix.RawSyscall(unix.SYS_WRITE, uintptr(e.fd), uintptr(unsafe.Pointer(&one)), 8)
		switch errno {
		case 0, unix.EAGAIN:
			return nil
		case unix.EINTR:
			continue
		}
		return fmt.Errorf("eventfd: signal: %w", errno)
	}
}

// Consume resets the counter to zero and returns what it held: 0 if it was
// not signalled.
func (e *EventFD) Consume() (uint64, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.fd < 0 {
		return 0, ErrClosed
	}
	var b [8]byte
	for {
		n, err := unix.Read(e.fd, b[:])
		switch {
		case err == unix.EAGAIN:
			return 0, nil
		case err == unix.EINTR:
			continue
		case err != nil:
			return 0, fmt.Errorf("eventfd: read: %w", err)
		case n != 8:
			return 0, fmt.Errorf("eventfd: read %d bytes, want 8", n)
		}
		return binary.NativeEndian.Uint64(b[:]), nil
	}
}

// Wait blocks until e or stop is signalled, consumes e's counter, and
// reports whether stop was signalled (stop's counter is left as it is, so
// that every waiter on it sees it). It blocks its OS thread in poll(2): a
// worker that waits here gets a thread of its own, and wakes with no trip
// through the Go scheduler's poller.
func (e *EventFD) Wait(stop *EventFD) (stopped bool, err error) {
	fds := [2]unix.PollFd{{Fd: int32(e.FD()), Events: unix.POLLIN}, {Fd: int32(stop.FD()), Events: unix.POLLIN}}
	if fds[0].Fd < 0 || fds[1].Fd < 0 {
		return false, ErrClosed
	}
	for {
		_, err := unix.Poll(fds[:], -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("eventfd: poll: %w", err)
		}
		break
	}
	if fds[1].Revents != 0 {
		return true, nil
	}
	if fds[0].Revents&(unix.POLLERR|unix.POLLNVAL) != 0 {
		return false, fmt.Errorf("eventfd: poll: revents %#x", fds[0].Revents)
	}
	_, err = e.Consume()
	return false, err
}

// Signalled reports whether the counter is non-zero, without consuming it.
func (e *EventFD) Signalled() bool {
	fds := [1]unix.PollFd{{Fd: int32(e.FD()), Events: unix.POLLIN}}
	if fds[0].Fd < 0 {
		return false
	}
	for {
		n, err := unix.Poll(fds[:], 0)
		if err == unix.EINTR {
			continue
		}
		return err == nil && n > 0 && fds[0].Revents&unix.POLLIN != 0
	}
}

// Close closes the file descriptor. It is safe to call more than once.
func (e *EventFD) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fd < 0 {
		return nil
	}
	err := unix.Close(e.fd)
	e.fd = -1
	return err
}
