package stats

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gvmm/gvmm/vcpu"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// syncBuffer is a bytes.Buffer safe for the signal goroutine to write while
// the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestServeSignal(t *testing.T) {
	c := New(1, testNamer{}, nil)
	e := ioExit(vcpu.KindIOOut, 0, 0x3f8, 0, 1000, 1000)
	c.VCPU(0).Observe(&e)
	var out syncBuffer
	stop := c.ServeSignal(syscall.SIGUSR1, &out)
	defer stop()
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGUSR1))
	assert.Eventually(t, func() bool { return bytes.Contains([]byte(out.String()), []byte("serial0")) },
		5*time.Second, 10*time.Millisecond)
	stop()
	stop() // idempotent
}

func TestServeUnix(t *testing.T) {
	c := New(2, testNamer{}, nil)
	e := ioExit(vcpu.KindIOIn, 0, 0x3fd, 5, 400, 1000)
	for range 7 {
		c.VCPU(1).Observe(&e)
	}
	path := filepath.Join(t.TempDir(), "stats.sock")
	stop, err := c.ServeUnix(path)
	require.NoError(t, err)

	for range 2 { // one report per connection
		conn, err := net.Dial("unix", path)
		require.NoError(t, err)
		r, err := ReadJSON(conn)
		conn.Close()
		require.NoError(t, err)
		assert.Equal(t, uint64(7), r.Exits)
		assert.Equal(t, "LSR", r.Registers[0].Register)
	}
	stop()
	stop()
	_, err = os.Stat(path)
	assert.True(t, os.IsNotExist(err), "stop removes the socket")
}

func TestServeUnixStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stats.sock")
	l, err := net.Listen("unix", path)
	require.NoError(t, err)
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close() // as if gvmm had crashed: the socket file stays

	stop, err := New(1, nil, nil).ServeUnix(path)
	require.NoError(t, err, "a stale socket is replaced")
	stop()
}

func TestServeUnixRefusesOtherFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "precious")
	require.NoError(t, os.WriteFile(path, []byte("data"), 0o600))
	_, err := New(1, nil, nil).ServeUnix(path)
	assert.Error(t, err)
	b, _ := os.ReadFile(path)
	assert.Equal(t, "data", string(b), "never removes what is not a socket")

	// A live server is not stale either.
	sock := filepath.Join(t.TempDir(), "live.sock")
	stop, err := New(1, nil, nil).ServeUnix(sock)
	require.NoError(t, err)
	defer stop()
	_, err = New(1, nil, nil).ServeUnix(sock)
	assert.Error(t, err)
}
