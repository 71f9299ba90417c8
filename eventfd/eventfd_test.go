package eventfd

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSignalConsume(t *testing.T) {
	e, err := New()
	require.NoError(t, err)
	defer e.Close()
	n, err := e.Consume()
	require.NoError(t, err)
	assert.Zero(t, n)
	assert.False(t, e.Signalled())
	require.NoError(t, e.Signal())
	require.NoError(t, e.Signal())
	assert.True(t, e.Signalled())
	n, err = e.Consume()
	require.NoError(t, err)
	assert.Equal(t, uint64(2), n)
}

func TestWait(t *testing.T) {
	e, err := New()
	require.NoError(t, err)
	defer e.Close()
	stop, err := New()
	require.NoError(t, err)
	defer stop.Close()

	done := make(chan bool)
	go func() {
		s, err := e.Wait(stop)
		assert.NoError(t, err)
		done <- s
	}()
	time.Sleep(10 * time.Millisecond)
	require.NoError(t, e.Signal())
	assert.False(t, <-done, "woken by e, not stop")
	assert.False(t, e.Signalled(), "Wait consumed the counter")

	go func() {
		s, err := e.Wait(stop)
		assert.NoError(t, err)
		done <- s
	}()
	require.NoError(t, stop.Signal())
	assert.True(t, <-done)
	assert.True(t, stop.Signalled(), "stop stays signalled for every waiter")
}

func TestClosed(t *testing.T) {
	e, err := New()
	require.NoError(t, err)
	require.NoError(t, e.Close())
	require.NoError(t, e.Close())
	assert.Equal(t, -1, e.FD())
	assert.ErrorIs(t, e.Signal(), ErrClosed)
	_, err = e.Consume()
	assert.ErrorIs(t, err, ErrClosed)
	_, err = e.Wait(e)
	assert.ErrorIs(t, err, ErrClosed)
}

func TestWaiter(t *testing.T) {
	e, err := New()
	require.NoError(t, err)
	defer e.Close()
	w, err := e.NewWaiter()
	require.NoError(t, err)
	defer w.Close()

	type result struct {
		n   uint64
		err error
	}
	done := make(chan result)
	wait := func() { n, err := w.Wait(); done <- result{n, err} }

	require.NoError(t, e.Signal())
	require.NoError(t, e.Signal())
	go wait()
	r := <-done
	require.NoError(t, r.err)
	assert.Equal(t, uint64(2), r.n, "a counter signalled before Wait")
	assert.False(t, e.Signalled(), "Wait consumed the counter")

	go wait()
	select {
	case <-done:
		t.Fatal("Wait returned with the counter at zero")
	case <-time.After(20 * time.Millisecond):
	}
	require.NoError(t, e.Signal())
	r = <-done
	require.NoError(t, r.err)
	assert.Equal(t, uint64(1), r.n, "woken by a signal")

	go wait()
	time.Sleep(10 * time.Millisecond)
	require.NoError(t, w.Stop())
	r = <-done
	assert.ErrorIs(t, r.err, ErrStopped, "woken by Stop")
	require.NoError(t, e.Signal())
	_, err = w.Wait()
	assert.ErrorIs(t, err, ErrStopped, "stopped for good")

	require.NoError(t, w.Close())
	assert.NoError(t, e.Signal(), "closing the waiter leaves the eventfd open")
	assert.True(t, e.Signalled())
	assert.GreaterOrEqual(t, e.FD(), 0)
}

func TestWaiterOfClosed(t *testing.T) {
	e, err := New()
	require.NoError(t, err)
	require.NoError(t, e.Close())
	_, err = e.NewWaiter()
	assert.ErrorIs(t, err, ErrClosed)
}
