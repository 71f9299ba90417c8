package tests

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// console records what the guest prints, when each line arrived, and
// copies it to a log file for the test's output.
type console struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	start time.Time
	seen  map[string]time.Duration
	log   io.Writer
	part  []byte
}

func newConsole(log io.Writer) *console {
	return &console{start: time.Now(), seen: map[string]time.Duration{}, log: log}
}

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf.Write(p)
	c.part = append(c.part, p...)
	for {
		i := bytes.IndexByte(c.part, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimRight(string(c.part[:i]), "\r")
		c.part = c.part[i+1:]
		if c.log != nil {
			d := time.Since(c.start)
			io.WriteString(c.log, "["+strconv.FormatFloat(d.Seconds(), 'f', 3, 64)+"] "+line+"\n")
		}
		if strings.HasPrefix(line, "GUEST-") {
			key := line
			if j := strings.IndexByte(line, ' '); j > 0 {
				key = line[:j]
			}
			if _, ok := c.seen[key]; !ok {
				c.seen[key] = time.Since(c.start)
			}
		}
	}
	return len(p), nil
}

func (c *console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// when returns how long after the start a GUEST- line first appeared.
func (c *console) when(key string) (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.seen[key]
	return d, ok
}

// tail returns the last n lines, for failure messages.
func (c *console) tail(n int) string {
	lines := strings.Split(strings.TrimRight(c.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

var guestValue = regexp.MustCompile(`(?m)^(GUEST-[A-Z-]+) ?(.*?)\r?$`)

// values returns the first value of each GUEST- line.
func values(out string) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if g := guestValue.FindStringSubmatch(sc.Text()); g != nil {
			if _, ok := m[g[1]]; !ok {
				m[g[1]] = g[2]
			}
		}
	}
	return m
}

// openLog creates tests/out/NAME.log for a boot's console.
func openLog(name string) (*os.File, error) {
	if err := os.MkdirAll("out", 0o755); err != nil {
		return nil, err
	}
	return os.Create("out/" + name + ".log")
}
