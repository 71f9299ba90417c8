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
