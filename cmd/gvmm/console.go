package main

import (
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/term"
)

// escapeKey is Ctrl-A, the escape key of QEMU's -nographic console.
const escapeKey = 0x01

// console connects the host terminal (or pipes) to the guest's serial port.
type console struct {
	in  io.Reader
	out io.Writer
	tty *os.File
	esc *escapeReader
}

// newConsole wraps a terminal on stdin in the Ctrl-A escape filter at once:
// the machine is given c.in before start puts the terminal in raw mode.
func newConsole(stdin io.Reader, stdout io.Writer) *console {
	c := &console{in: stdin, out: stdout}
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		c.tty = f
		c.esc = &escapeReader{r: f, help: stdout}
		c.in = c.esc
	}
	return c
}

// start puts a terminal into raw mode, so every key (Ctrl-C included)
// reaches the guest, and installs the Ctrl-A escape: Ctrl-A x calls quit.
// Without a terminal, stdin is forwarded unchanged. restore undoes raw mode
// and may be called more than once.
func (c *console) start(quit func()) (restore func(), err error) {
	if c.tty == nil {
		return func() {}, nil
	}
	state, err := term.MakeRaw(int(c.tty.Fd()))
	if err != nil {
		return nil, err
	}
	var once sync.Once
	restore = func() {
		once.Do(func() { term.Restore(int(c.tty.Fd()), state) })
	}
	c.esc.setQuit(quit)
	return restore, nil
}

// escapeReader filters the Ctrl-A escape sequences out of terminal input:
// Ctrl-A x quits, Ctrl-A Ctrl-A sends one Ctrl-A, Ctrl-A h prints help.
type escapeReader struct {
	r       io.Reader
	mu      sync.Mutex
	quit    func()
	help    io.Writer
	pending bool
	buf     [256]byte
}

func (e *escapeReader) setQuit(f func()) {
	e.mu.Lock()
	e.quit = f
	e.mu.Unlock()
}

func (e *escapeReader) doQuit() {
	e.mu.Lock()
	f := e.quit
	e.mu.Unlock()
	if f != nil {
		f()
	}
}

// Fd returns the terminal's file descriptor, so that the machine can poll
// it before each Read (machine.Config.ConsoleIn) and no Read is left
// blocked on the terminal when the VM ends.
func (e *escapeReader) Fd() uintptr {
	if f, ok := e.r.(interface{ Fd() uintptr }); ok {
		return f.Fd()
	}
	return ^uintptr(0)
}

// Read reads once from the terminal and returns what is left after the
// escape sequences: possibly nothing (n == 0, err == nil) when all it read
// was an escape, so that it never blocks twice after a poll said input was
// there.
func (e *escapeReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(e.buf[:min(len(p), len(e.buf))])
	out := 0
	for _, b := range e.buf[:n] {
		if e.pending {
			e.pending = false
			switch b {
			case 'x', 'X':
				e.doQuit()
				return out, io.EOF
			case 'h', 'H', '?':
				fmt.Fprint(e.help, "\r\n[gvmm] Ctrl-A x: quit   Ctrl-A Ctrl-A: send Ctrl-A   Ctrl-A h: this help\r\n")
			case escapeKey:
				p[out] = escapeKey
				out++
			}
			continue
		}
		if b == escapeKey {
			e.pending = true
			continue
		}
		p[out] = b
		out++
	}
	return out, err
}
