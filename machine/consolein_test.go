package machine

import (
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// fakeSink is a UART receive queue of limited room.
type fakeSink struct {
	mu    sync.Mutex
	got   []byte
	room  int
	space chan struct{}
}

func newFakeSink(room int) *fakeSink { return &fakeSink{room: room, space: make(chan struct{}, 1)} }

func (s *fakeSink) Receive(p []byte) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := min(len(p), s.room-len(s.got))
	s.got = append(s.got, p[:n]...)
	return n
}

func (s *fakeSink) InputSpace() <-chan struct{} { return s.space }

func (s *fakeSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.got)
}

// waitFor polls cond for up to 10 s: the feeder runs on its own goroutine.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// blockingPipe returns a pipe whose read end is an *os.File in blocking
// mode, as os.Stdin usually is: the runtime cannot poll it, so
// SetReadDeadline fails on it.
func blockingPipe(t *testing.T) (*os.File, *os.File) {
	var fds [2]int
	require.NoError(t, unix.Pipe2(fds[:], unix.O_CLOEXEC))
	r, w := os.NewFile(uintptr(fds[0]), "pipe-r"), os.NewFile(uintptr(fds[1]), "pipe-w")
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

// TestFeedInputStops checks, for each kind of reader, that console input
// reaches the UART and that once stop returns nobody reads the reader any
// more: bytes written afterwards are still there for their owner.
func TestFeedInputStops(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode int
		pipe func(t *testing.T) (io.Reader, io.Writer)
	}{
		{"os.Pipe: read deadline", inputDeadline, func(t *testing.T) (io.Reader, io.Writer) {
			r, w, err := os.Pipe()
			require.NoError(t, err)
			t.Cleanup(func() { r.Close(); w.Close() })
			return r, w
		}},
		{"blocking descriptor: poll", inputPoll, func(t *testing.T) (io.Reader, io.Writer) {
			return blockingPipe(t)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, w := tc.pipe(t)
			require.Equal(t, tc.mode, inputMode(r))
			sink := newFakeSink(100)
			stop := feedInput(r, sink, t.Logf)
			_, err := w.Write([]byte("ab"))
			require.NoError(t, err)
			waitFor(t, "the first bytes", func() bool { return sink.String() == "ab" })
			stop() // a Read is blocked on the empty pipe now
			_, err = w.Write([]byte("cd"))
			require.NoError(t, err)
			buf := make([]byte, 8)
			n, err := r.Read(buf)
			require.NoError(t, err)
			assert.Equal(t, "cd", string(buf[:n]), "the bytes written after stop are still in the pipe")
			assert.Equal(t, "ab", sink.String())
		})
	}
}

// TestFeedInputAbandonsPlainReader checks the one case where a Read
// outlives stop: a reader that blocks and offers neither a deadline nor a
// descriptor. stop returns anyway, and what that Read returns later is
// dropped, not given to the guest.
func TestFeedInputAbandonsPlainReader(t *testing.T) {
	r, w := io.Pipe()
	defer w.Close()
	require.Equal(t, inputPlain, inputMode(r))
	sink := newFakeSink(100)
	stop := feedInput(r, sink, t.Logf)
	_, err := w.Write([]byte("ab"))
	require.NoError(t, err)
	waitFor(t, "the first bytes", func() bool { return sink.String() == "ab" })
	stop()
	_, err = w.Write([]byte("cd")) // taken by the abandoned Read
	require.NoError(t, err)
	time.Sleep(50 * time.Millisecond)
	assert.Equal(t, "ab", sink.String())
}

// TestFeedInputEndsAtEOF checks that a reader that ends stops the feeding
// by itself, and that a full UART queue holds the rest until the guest
// makes room.
func TestFeedInputEndsAtEOF(t *testing.T) {
	sink := newFakeSink(2)
	stop := feedInput(strings.NewReader("abcd"), sink, t.Logf)
	waitFor(t, "a full queue", func() bool { return sink.String() == "ab" })
	sink.mu.Lock()
	sink.room = 4
	sink.mu.Unlock()
	sink.space <- struct{}{}
	waitFor(t, "the rest", func() bool { return sink.String() == "abcd" })
	stop()
}

// TestFeedInputStopsWhileQueueFull checks that a feeder waiting for the
// guest to drain the UART stops too.
func TestFeedInputStopsWhileQueueFull(t *testing.T) {
	sink := newFakeSink(1)
	stop := feedInput(strings.NewReader("abc"), sink, t.Logf)
	waitFor(t, "a full queue", func() bool { return sink.String() == "a" })
	stop()
	assert.Equal(t, "a", sink.String())
}
