package vmtest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/gvmm/gvmm/vmtest/internal/wire"
)

// maxLog bounds what a Console keeps of the guest's output. Past it the
// oldest half is dropped (and said so in the log), so a guest that prints
// without end cannot exhaust the test process's memory.
const maxLog = 64 << 20

// Console is a VM's serial console: everything the guest printed, read as
// a stream or searched with the Expect methods, and the guest's input.
//
// Expect and Read share one cursor: each returns what follows the previous
// match or read, so a test can walk through the output in order. String
// returns the whole log regardless of the cursor. A Console is safe for use
// by several goroutines.
type Console struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced whenever buf grows or the VM ends
	buf     []byte
	dropped int // bytes dropped from the front of buf (maxLog)
	pos     int // cursor, as an offset into buf
	ended   bool
	endErr  error // why the VM ended, for Expect's errors

	line   []byte // the current, incomplete line, for frames and panics
	frames []wire.Frame
	bad    []error
	panic  string // the first "Kernel panic" line
	initAt time.Time

	start   time.Time
	timeout time.Duration // Expect's default
	in      io.Writer     // the guest's input; nil once the VM ended
	copy    io.Writer     // WithConsoleCopy
}

func newConsole(in io.Writer, timeout time.Duration, copy io.Writer) *Console {
	return &Console{changed: make(chan struct{}), start: time.Now(), timeout: timeout, in: in, copy: copy}
}

// consoleSink is the io.Writer the machine writes the guest's output to.
type consoleSink struct{ c *Console }

func (s consoleSink) Write(p []byte) (int, error) {
	s.c.append(p)
	return len(p), nil
}

func (c *Console) append(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.copy != nil {
		// Errors of the copy do not concern the guest.
		c.copy.Write(p)
	}
	c.buf = append(c.buf, p...)
	if len(c.buf) > maxLog {
		cut := len(c.buf) / 2
		note := fmt.Sprintf("[vmtest: %d bytes of console output dropped]\n", c.dropped+cut)
		c.buf = append([]byte(note), c.buf[cut:]...)
		c.dropped += cut
		c.pos = len(note) + max(0, c.pos-cut)
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if len(c.line)+len(p) <= wire.MaxLine {
				c.line = append(c.line, p...)
			} else {
				c.line = append(c.line[:0], "(long line)"...)
			}
			break
		}
		if len(c.line)+i <= wire.MaxLine {
			c.line = append(c.line, p[:i]...)
		}
		c.scanLine(string(c.line))
		c.line = c.line[:0]
		p = p[i+1:]
	}
	c.wake()
}

// scanLine looks at a complete console line for frames and kernel panics.
func (c *Console) scanLine(line string) {
	if c.panic == "" {
		if i := strings.Index(line, "Kernel panic - not syncing"); i >= 0 {
			c.panic = strings.TrimRight(line[i:], "\r")
		}
	}
	f, ok, err := wire.Decode(line)
	switch {
	case !ok:
	case err != nil:
		c.bad = append(c.bad, err)
	default:
		if f.Kind == wire.KindInit && c.initAt.IsZero() {
			c.initAt = time.Now()
		}
		c.frames = append(c.frames, f)
	}
}

// wake tells every waiter that something changed; c.mu is held.
func (c *Console) wake() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// end marks the console as ended because the VM stopped for why.
func (c *Console) end(why error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.line) > 0 {
		c.scanLine(string(c.line))
	}
	c.ended, c.endErr, c.in = true, why, nil
	c.wake()
}

// String returns everything the guest printed so far.
func (c *Console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.buf)
}

// Tail returns the last n lines the guest printed.
func (c *Console) Tail(n int) string {
	s := strings.TrimRight(c.String(), "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Write sends p to the guest's serial input. It fails once the VM has
// ended.
func (c *Console) Write(p []byte) (int, error) {
	c.mu.Lock()
	in := c.in
	c.mu.Unlock()
	if in == nil {
		return 0, errors.New("vmtest: console write: the VM has ended")
	}
	return in.Write(p)
}

// Read reads the guest's output from the cursor on, waiting for output
// until the VM ends; then it returns io.EOF.
func (c *Console) Read(p []byte) (int, error) {
	for {
		c.mu.Lock()
		if c.pos < len(c.buf) {
			n := copy(p, c.buf[c.pos:])
			c.pos += n
			c.mu.Unlock()
			return n, nil
		}
		if c.ended {
			c.mu.Unlock()
			return 0, io.EOF
		}
		ch := c.changed
		c.mu.Unlock()
		<-ch
	}
}

// Match is what an Expect found.
type Match struct {
	// Before is the output between the cursor and the match.
	Before string
	// Text is the matched text; Groups its regexp submatches (Groups[0]
	// is Text).
	Text   string
	Groups []string
}

// ExpectString waits for s on the console, for the VM's expect timeout
// (WithExpectTimeout), and returns the output before it. It fails when the
// timeout passes or the VM ends first; the error quotes the last lines.
func (c *Console) ExpectString(s string) (before string, err error) {
	return c.ExpectStringTimeout(s, c.timeout)
}

// ExpectStringTimeout is ExpectString with its own timeout.
func (c *Console) ExpectStringTimeout(s string, timeout time.Duration) (before string, err error) {
	m, err := c.expect(fmt.Sprintf("%q", s), timeout, func(b []byte) []int {
		if i := bytes.Index(b, []byte(s)); i >= 0 {
			return []int{i, i + len(s)}
		}
		return nil
	})
	return m.Before, err
}

// ExpectRegexp waits for a match of re on the console, for the VM's
// expect timeout, and returns it with the output before it.
func (c *Console) ExpectRegexp(re *regexp.Regexp) (Match, error) {
	return c.ExpectRegexpTimeout(re, c.timeout)
}

// ExpectRegexpTimeout is ExpectRegexp with its own timeout.
func (c *Console) ExpectRegexpTimeout(re *regexp.Regexp, timeout time.Duration) (Match, error) {
	return c.expect("/"+re.String()+"/", timeout, re.FindSubmatchIndex)
}

// expect waits until find locates a match in the output after the cursor
// (find returns the submatch index pairs, as regexp does, or nil).
func (c *Console) expect(what string, timeout time.Duration, find func([]byte) []int) (Match, error) {
	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	for {
		c.mu.Lock()
		rest := c.buf[c.pos:]
		if loc := find(rest); loc != nil {
			m := Match{Before: string(rest[:loc[0]]), Text: string(rest[loc[0]:loc[1]])}
			for i := 0; i+1 < len(loc); i += 2 {
				if loc[i] < 0 {
					m.Groups = append(m.Groups, "")
					continue
				}
				m.Groups = append(m.Groups, string(rest[loc[i]:loc[i+1]]))
			}
			c.pos += loc[1]
			c.mu.Unlock()
			return m, nil
		}
		if c.ended {
			why := c.endErr
			c.mu.Unlock()
			return Match{}, fmt.Errorf("vmtest: %s not on the console: the VM ended (%v); last lines:\n%s", what, why, c.Tail(15))
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-expired:
			return Match{}, fmt.Errorf("vmtest: %s not on the console after %v; last lines:\n%s", what, timeout, c.Tail(15))
		}
	}
}

// takeFrames returns the frames parsed since the last call, the corrupt
// ones as errors, whether the console has ended, and a channel closed at
// the next change.
func (c *Console) takeFrames() (frames []wire.Frame, bad []error, ended bool, changed <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	frames, bad = c.frames, c.bad
	c.frames, c.bad = nil, nil
	return frames, bad, c.ended, c.changed
}

// kernelPanic returns the guest kernel's panic line, if it printed one.
func (c *Console) kernelPanic() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.panic
}

// InitAfter returns how long after Start the guest's vmtest /init
// reported that it runs, and false if it has not (or the image has no
// vmtest /init).
func (c *Console) InitAfter() (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.initAt.IsZero() {
		return 0, false
	}
	return c.initAt.Sub(c.start), true
}
