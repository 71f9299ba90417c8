package machine

import (
	"errors"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// inputSink is where console input goes: the UART's receive queue
// (*devices.Serial).
type inputSink interface {
	// Receive queues bytes for the guest and returns how many fitted.
	Receive(p []byte) int
	// InputSpace is signalled when the guest has drained the queue.
	InputSpace() <-chan struct{}
}

// How the feeder stops reading, by what the reader offers (see
// Config.ConsoleIn).
const (
	// inputDeadline: SetReadDeadline interrupts a blocked Read (an
	// *os.File of a pipe or a terminal that the runtime polls, a
	// net.Conn).
	inputDeadline = iota
	// inputPoll: a file descriptor in blocking mode (os.Stdin, a regular
	// file). poll(2) says when Read will not block, and the feeder looks
	// at its stop signal in between.
	inputPoll
	// inputPlain: any other reader. A Read that blocks cannot be
	// interrupted; when the feeder stops, that Read is abandoned and
	// whatever it returns is dropped.
	inputPlain
)

// pollInterval bounds how long a feeder in inputPoll mode takes to notice
// that it must stop.
const pollInterval = 50 * time.Millisecond

// abandonWait is how long stop waits for a plain reader's Read in progress
// before it abandons it.
const abandonWait = 100 * time.Millisecond

// inputMode picks how r can be stopped.
func inputMode(r io.Reader) int {
	if d, ok := r.(interface{ SetReadDeadline(time.Time) error }); ok && d.SetReadDeadline(time.Time{}) == nil {
		return inputDeadline
	}
	// *os.File.Fd puts a pollable file into blocking mode, but the
	// SetReadDeadline above has already failed: this one is not.
	if f, ok := r.(interface{ Fd() uintptr }); ok && f.Fd() != ^uintptr(0) {
		return inputPoll
	}
	return inputPlain
}

// feedInput copies r to sink until EOF, a read error or stop. When the
// UART's queue is full it waits for the guest to drain it rather than drop
// bytes. stop returns once no Read is in progress and none will start
// (promptly for every reader but a plain one blocked in Read, which it
// abandons after abandonWait; see Config.ConsoleIn).
func feedInput(r io.Reader, sink inputSink, logf func(string, ...any)) (stop func()) {
	mode := inputMode(r)
	quit := make(chan struct{})
	done := make(chan struct{})
	stopped := func() bool {
		select {
		case <-quit:
			return true
		default:
			return false
		}
	}
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for !stopped() {
			if mode == inputPoll {
				ready, err := pollReadable(r.(interface{ Fd() uintptr }).Fd())
				if err != nil {
					logf("gvmm: console input: %v", err)
					return
				}
				if !ready {
					continue
				}
			}
			n, err := r.Read(buf)
			if stopped() {
				// The VM has ended (an abandoned Read, or one a
				// deadline cut short): nobody takes these bytes.
				return
			}
			for p := buf[:n]; len(p) > 0; {
				p = p[sink.Receive(p):]
				if len(p) == 0 {
					break
				}
				select {
				case <-sink.InputSpace():
				case <-quit:
					return
				}
			}
			if err != nil {
				// EOF (or a read error) ends the input, not the guest: a
				// CI job's stdin is often empty.
				if !errors.Is(err, io.EOF) {
					logf("gvmm: console input: %v", err)
				}
				return
			}
		}
	}()
	return func() {
		close(quit)
		switch mode {
		case inputDeadline:
			d := r.(interface{ SetReadDeadline(time.Time) error })
			_ = d.SetReadDeadline(time.Now())
			<-done
			// Leave the caller's reader as it was given.
			_ = d.SetReadDeadline(time.Time{})
		case inputPoll:
			<-done
		default:
			select {
			case <-done:
			case <-time.After(abandonWait):
			}
		}
	}
}

// pollReadable waits up to pollInterval for fd to have input (or an end:
// POLLHUP and POLLERR make Read return at once too).
func pollReadable(fd uintptr) (bool, error) {
	p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(p, int(pollInterval/time.Millisecond))
	switch {
	case errors.Is(err, unix.EINTR):
		return false, nil
	case err != nil:
		return false, os.NewSyscallError("poll", err)
	}
	return n > 0, nil
}
