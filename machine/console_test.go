package machine

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// countingWriter records how many Write calls reached it.
type countingWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	calls int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	return c.buf.Write(p)
}

func TestBatchWriterBatches(t *testing.T) {
	dst := &countingWriter{}
	w := newBatchWriter(dst)
	msg := []byte("Linux version 6.1 (gvmm test) one byte at a time\n")
	for i := range msg {
		_, err := w.Write(msg[i : i+1])
		require.NoError(t, err)
	}
	require.NoError(t, w.Close())
	assert.Equal(t, string(msg), dst.buf.String())
	assert.LessOrEqual(t, dst.calls, 3, "%d bytes took %d writes", len(msg), dst.calls)
}

func TestBatchWriterFlushesPartialLine(t *testing.T) {
	dst := &countingWriter{}
	w := newBatchWriter(dst)
	defer w.Close()
	w.Write([]byte("login: "))
	assert.Eventually(t, func() bool {
		dst.mu.Lock()
		defer dst.mu.Unlock()
		return dst.buf.String() == "login: "
	}, time.Second, time.Millisecond, "a prompt without a newline must still appear")
}

func TestBatchWriterLosesNothing(t *testing.T) {
	dst := &countingWriter{}
	w := newBatchWriter(dst)
	var want bytes.Buffer
	var wg sync.WaitGroup
	var mu sync.Mutex
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10000; i++ {
				mu.Lock()
				w.Write([]byte{'a' + byte(i%26)})
				want.WriteByte('a' + byte(i%26))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.NoError(t, w.Close())
	assert.Equal(t, want.String(), dst.buf.String())
}

// slowWriter blocks until released, like a paused terminal.
type slowWriter struct {
	release chan struct{}
	mu      sync.Mutex
	n       int
}

func (s *slowWriter) Write(p []byte) (int, error) {
	<-s.release
	s.mu.Lock()
	s.n += len(p)
	s.mu.Unlock()
	return len(p), nil
}

// TestBatchWriterBounded checks that a stuck destination makes Write wait
// once batchMax bytes are pending, instead of buffering without bound, and
// that everything arrives once it moves again.
func TestBatchWriterBounded(t *testing.T) {
	dst := &slowWriter{release: make(chan struct{})}
	w := newBatchWriter(dst)
	chunk := make([]byte, 1<<20)
	wrote := make(chan int, 64)
	go func() {
		for i := 0; i < 32; i++ {
			w.Write(chunk)
			wrote <- i
		}
		close(wrote)
	}()
	time.Sleep(200 * time.Millisecond)
	w.mu.Lock()
	pending := len(w.buf)
	w.mu.Unlock()
	assert.LessOrEqual(t, pending, batchMax+len(chunk), "buffer bounded while the destination is stuck")
	assert.Less(t, len(wrote), 32, "writers wait")
	close(dst.release)
	for range wrote {
	}
	require.NoError(t, w.Close())
	assert.Equal(t, 32<<20, dst.n, "nothing lost")
}

// stuckWriter never returns from Write until released.
type stuckWriter struct{ release chan struct{} }

func (s stuckWriter) Write(p []byte) (int, error) {
	<-s.release
	return len(p), nil
}

// TestBatchWriterStuckDestination checks that Close gives up on a
// destination that does not take the output, after its drain time, and
// says so, then and on later calls.
func TestBatchWriterStuckDestination(t *testing.T) {
	dst := stuckWriter{release: make(chan struct{})}
	defer close(dst.release)
	w := newBatchWriter(dst)
	w.drain = 50 * time.Millisecond
	_, err := w.Write([]byte("lost\n"))
	require.NoError(t, err)
	assert.ErrorIs(t, w.Close(), errStuck)
	assert.ErrorIs(t, w.Close(), errStuck, "a second Close does not wait again")
}
