package stats

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// ServeSignal prints the table to w each time the process receives sig
// (SIGUSR1, by gvmm's convention), so a running VM can be inspected with
// kill -USR1. The vCPUs keep running meanwhile. stop undoes it and waits for
// a table being printed; it may be called more than once. Write errors are
// ignored: there is no one to tell.
func (c *Collector) ServeSignal(sig os.Signal, w io.Writer) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sig)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-ch:
				_ = c.Report().WriteTable(w)
			case <-done:
				return
			}
		}
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			signal.Stop(ch)
			close(done)
			wg.Wait()
		})
	}
}

// serveTimeout bounds how long one client may take to read its report, so a
// stuck client cannot hold up the others.
const serveTimeout = 5 * time.Second

// ServeUnix listens on a unix socket at path and answers each connection
// with the JSON report (WriteJSON), then closes it: `socat - UNIX:path`
// prints it. The protocol is meant to grow into a control socket: today the
// server sends without reading. A stale socket left at path by a crashed
// gvmm is replaced; any other file there is an error. stop closes the
// listener, removes the socket and waits for the server to finish; it may be
// called more than once.
func (c *Collector) ServeUnix(path string) (stop func(), err error) {
	l, err := net.Listen("unix", path)
	if err != nil && errors.Is(err, syscall.EADDRINUSE) && staleSocket(path) {
		if os.Remove(path) == nil {
			l, err = net.Listen("unix", path)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := l.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				// Out of file descriptors, most likely: wait rather
				// than spin.
				time.Sleep(10 * time.Millisecond)
				continue
			}
			_ = conn.SetDeadline(time.Now().Add(serveTimeout))
			_ = c.Report().WriteJSON(conn)
			_ = conn.Close()
		}
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			_ = l.Close() // also unlinks path
			wg.Wait()
		})
	}, nil
}

// staleSocket reports whether path is a unix socket nobody listens on.
func staleSocket(path string) bool {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 {
		return false
	}
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		conn.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}
