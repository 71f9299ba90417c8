package vmtest

import (
	"bytes"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gvmm/gvmm/vmtest/internal/wire"
)

func TestConsoleExpect(t *testing.T) {
	c := newConsole(nil, time.Second, nil)
	go func() {
		for _, s := range []string{"Linux version 6.1\r\n", "login", ": ", "root\r\nanswer=", "42\r\n"} {
			time.Sleep(5 * time.Millisecond)
			consoleSink{c}.Write([]byte(s))
		}
	}()
	before, err := c.ExpectString("login: ")
	require.NoError(t, err)
	assert.Equal(t, "Linux version 6.1\r\n", before)
	m, err := c.ExpectRegexp(regexp.MustCompile(`answer=(\d+)`))
	require.NoError(t, err)
	assert.Equal(t, "root\r\n", m.Before)
	assert.Equal(t, "answer=42", m.Text)
	assert.Equal(t, []string{"answer=42", "42"}, m.Groups)
	// The cursor is past the match: the same text is not found twice.
	_, err = c.ExpectStringTimeout("answer", 50*time.Millisecond)
	assert.ErrorContains(t, err, `"answer" not on the console after 50ms`)
	assert.Equal(t, "Linux version 6.1\r\nlogin: root\r\nanswer=42\r\n", c.String())
}

func TestConsoleExpectFailures(t *testing.T) {
	tests := []struct {
		name string
		end  bool
		want string
	}{
		{"timeout", false, `"never" not on the console after 20ms; last lines:` + "\nboot line 1\nboot line 2"},
		{"VM ended", true, `"never" not on the console: the VM ended (guest powered off); last lines:` + "\nboot line 1\nboot line 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newConsole(nil, 20*time.Millisecond, nil)
			consoleSink{c}.Write([]byte("boot line 1\nboot line 2\n"))
			if tt.end {
				c.end(errString("guest powered off"))
			}
			start := time.Now()
			_, err := c.ExpectString("never")
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Less(t, time.Since(start), 5*time.Second)
		})
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestConsoleRead(t *testing.T) {
	c := newConsole(nil, time.Second, nil)
	go func() {
		consoleSink{c}.Write([]byte("hello "))
		time.Sleep(10 * time.Millisecond)
		consoleSink{c}.Write([]byte("world\n"))
		c.end(errString("power off"))
	}()
	got, err := io.ReadAll(c)
	require.NoError(t, err)
	assert.Equal(t, "hello world\n", string(got))
}

func TestConsoleWrite(t *testing.T) {
	var in bytes.Buffer
	c := newConsole(&in, time.Second, nil)
	_, err := io.WriteString(c, "ls\n")
	require.NoError(t, err)
	assert.Equal(t, "ls\n", in.String())
	c.end(errString("power off"))
	_, err = io.WriteString(c, "ls\n")
	assert.ErrorContains(t, err, "the VM has ended")
}

func TestConsoleFramesAndPanic(t *testing.T) {
	c := newConsole(nil, time.Second, nil)
	good, err := wire.Encode(wire.KindJSON, `{"Action":"run","Test":"TestA"}`)
	require.NoError(t, err)
	bad := strings.Replace(good, "run", "ran", 1)
	// One byte at a time, as the UART delivers them, with the tty's \r\n
	// and a kernel message between.
	out := "[    1.0] Run /init as init process\r\n" + good + "\r\n" + bad + "\r\n" +
		"[    2.0] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100\r\n"
	for i := range out {
		consoleSink{c}.Write([]byte{out[i]})
	}
	frames, errs, ended, _ := c.takeFrames()
	assert.Equal(t, []wire.Frame{{Kind: wire.KindJSON, Payload: `{"Action":"run","Test":"TestA"}`}}, frames)
	require.Len(t, errs, 1)
	assert.ErrorIs(t, errs[0], wire.ErrCorrupt)
	assert.False(t, ended)
	assert.Equal(t, "Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100", c.kernelPanic())
}

func TestConsoleBoundsMemory(t *testing.T) {
	c := newConsole(nil, time.Second, nil)
	chunk := bytes.Repeat([]byte("x"), 1<<20)
	for i := 0; i < 3*maxLog>>20; i++ {
		consoleSink{c}.Write(chunk)
	}
	consoleSink{c}.Write([]byte("the end\n"))
	assert.LessOrEqual(t, len(c.String()), maxLog+100)
	assert.Contains(t, c.String(), "bytes of console output dropped")
	_, err := c.ExpectString("the end")
	assert.NoError(t, err)
}
