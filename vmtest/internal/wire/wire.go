// Package wire is the framing a vmtest guest uses to send structured data
// to the host over the serial console, which it shares with the kernel's
// messages and whatever programs print.
//
// A frame is one line:
//
//	VMTEST:<kind>:<crc>:<payload>
//
// kind is a short lowercase word; payload is printable text without a
// newline (JSON, or base64 for bytes); crc is the IEEE CRC-32 of
// "kind:payload" in 8 lowercase hex digits. The checksum catches a kernel
// message that printk wrote into the middle of a frame: the console is a
// single byte stream, and the guest's tty turns "\n" into "\r\n", which the
// parser tolerates.
package wire

import (
	"encoding/base64"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"strings"
)

// Prefix starts every frame.
const Prefix = "VMTEST:"

// Kinds of frames.
const (
	// KindInit: the guest's /init is running (payload: its uptime).
	KindInit = "init"
	// KindJSON: one test2json event (payload: the JSON object).
	KindJSON = "json"
	// KindFile: a chunk of a file sent back to the host (payload: a
	// FileChunk encoded with EncodeChunk).
	KindFile = "file"
	// KindExit: the guest's command ended (payload: its exit status, or
	// an error text).
	KindExit = "exit"
)

// MaxLine bounds a frame line. A longer line is not a frame: the host
// stops looking for one, so a guest that prints without a newline cannot
// grow the parser's memory.
const MaxLine = 64 << 10

// Frame is one decoded frame.
type Frame struct {
	Kind    string
	Payload string
}

// Encode returns the frame line for kind and payload, without the newline.
// The payload must not contain a newline or carriage return.
func Encode(kind, payload string) (string, error) {
	if kind == "" || strings.ContainsAny(kind, ":\r\n") {
		return "", fmt.Errorf("wire: bad frame kind %q", kind)
	}
	if strings.ContainsAny(payload, "\r\n") {
		return "", errors.New("wire: frame payload contains a line break")
	}
	if len(Prefix)+len(kind)+10+len(payload) > MaxLine {
		return "", fmt.Errorf("wire: %s frame of %d bytes exceeds %d", kind, len(payload), MaxLine)
	}
	return fmt.Sprintf("%s%s:%08x:%s", Prefix, kind, sum(kind, payload), payload), nil
}

func sum(kind, payload string) uint32 {
	h := crc32.NewIEEE()
	h.Write([]byte(kind))
	h.Write([]byte{':'})
	h.Write([]byte(payload))
	return h.Sum32()
}

// ErrCorrupt is returned (wrapped) for a line that starts like a frame but
// does not check out.
var ErrCorrupt = errors.New("corrupt frame")

// Decode parses a console line. It returns ok=false for a line that is not
// a frame at all, and an error wrapping ErrCorrupt for one that starts with
// Prefix but is damaged. Trailing "\r" is ignored.
func Decode(line string) (f Frame, ok bool, err error) {
	line = strings.TrimRight(line, "\r")
	i := strings.Index(line, Prefix)
	if i < 0 {
		return Frame{}, false, nil
	}
	rest := line[i+len(Prefix):]
	kind, rest, found := strings.Cut(rest, ":")
	if !found || kind == "" {
		return Frame{}, true, fmt.Errorf("wire: %w: no kind in %q", ErrCorrupt, clip(line))
	}
	crc, payload, found := strings.Cut(rest, ":")
	if !found || len(crc) != 8 {
		return Frame{}, true, fmt.Errorf("wire: %w: no checksum in %q", ErrCorrupt, clip(line))
	}
	var want uint32
	if _, err := fmt.Sscanf(crc, "%08x", &want); err != nil {
		return Frame{}, true, fmt.Errorf("wire: %w: checksum %q", ErrCorrupt, crc)
	}
	if got := sum(kind, payload); got != want {
		return Frame{}, true, fmt.Errorf("wire: %w: checksum %08x, computed %08x, in %q", ErrCorrupt, want, got, clip(line))
	}
	return Frame{Kind: kind, Payload: payload}, true, nil
}

func clip(s string) string {
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}

// ChunkSize is how many bytes of a file one KindFile frame carries: its
// base64 text stays well below MaxLine.
const ChunkSize = 16 << 10

// FileChunk is part of a file the guest sends back: coverage counters
// written to GOCOVERDIR, for one.
type FileChunk struct {
	// Name is the file's name relative to the directory it came from,
	// slash separated.
	Name string
	// Data is the next ChunkSize bytes or fewer.
	Data []byte
	// Last marks the file's final chunk.
	Last bool
}

// EncodeChunk returns the KindFile payload for c: the name and the data in
// base64, with a flag for the last chunk.
func EncodeChunk(c FileChunk) string {
	flag := "more"
	if c.Last {
		flag = "last"
	}
	return base64.RawURLEncoding.EncodeToString([]byte(c.Name)) + " " + flag + " " + base64.StdEncoding.EncodeToString(c.Data)
}

// DecodeChunk parses a KindFile payload. Names are checked to stay inside
// the directory they are written to: no absolute path, no "..".
func DecodeChunk(payload string) (FileChunk, error) {
	f := strings.Split(payload, " ")
	if len(f) != 3 {
		return FileChunk{}, fmt.Errorf("wire: file chunk has %d fields, want 3", len(f))
	}
	name, err := base64.RawURLEncoding.DecodeString(f[0])
	if err != nil {
		return FileChunk{}, fmt.Errorf("wire: file chunk name: %w", err)
	}
	var c FileChunk
	c.Name = string(name)
	if !fs.ValidPath(c.Name) || c.Name == "." {
		return FileChunk{}, fmt.Errorf("wire: file chunk name %q is not a relative path inside the directory", c.Name)
	}
	switch f[1] {
	case "more":
	case "last":
		c.Last = true
	default:
		return FileChunk{}, fmt.Errorf("wire: file chunk flag %q", f[1])
	}
	if c.Data, err = base64.StdEncoding.DecodeString(f[2]); err != nil {
		return FileChunk{}, fmt.Errorf("wire: file chunk data: %w", err)
	}
	if len(c.Data) > ChunkSize {
		return FileChunk{}, fmt.Errorf("wire: file chunk of %d bytes exceeds %d", len(c.Data), ChunkSize)
	}
	return c, nil
}

// ConfigPath is where a vmtest image stores its Config, relative to /.
const ConfigPath = "vmtest/config.json"

// Config tells a vmtest guest's /init what to run. The image builder
// writes it as JSON to ConfigPath.
type Config struct {
	// Args is the command and its arguments; empty means a shell
	// (/bin/sh) if the image has one.
	Args []string `json:"args,omitempty"`
	// Env is added to the command's environment (KEY=VALUE).
	Env []string `json:"env,omitempty"`
	// Dir is the command's working directory ("/" if empty).
	Dir string `json:"dir,omitempty"`
	// JSONOutput frames each line the command writes to stdout as a
	// KindJSON frame (the command is test2json).
	JSONOutput bool `json:"json_output,omitempty"`
	// SendDir is a guest directory whose files are sent to the host as
	// KindFile frames after the command ends (GOCOVERDIR).
	SendDir string `json:"send_dir,omitempty"`
	// QuietKernel lowers the kernel's console log level to emergencies
	// only before the command runs, so printk does not break frames.
	QuietKernel bool `json:"quiet_kernel,omitempty"`
}
