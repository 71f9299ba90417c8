package wire

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEncodeDecode(t *testing.T) {
	tests := []struct {
		kind, payload string
	}{
		{KindInit, "1.23"},
		{KindJSON, `{"Action":"output","Test":"TestA","Output":"=== RUN   TestA\n"}`},
		{KindExit, "0"},
		{KindExit, ""},
	}
	for _, tt := range tests {
		line, err := Encode(tt.kind, tt.payload)
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(line, Prefix+tt.kind+":"))
		for _, variant := range []string{line, line + "\r", "[    3.2] " + line} {
			f, ok, err := Decode(variant)
			require.NoError(t, err, variant)
			assert.True(t, ok)
			assert.Equal(t, Frame{Kind: tt.kind, Payload: tt.payload}, f)
		}
	}
}

func TestEncodeRejects(t *testing.T) {
	tests := []struct {
		name, kind, payload string
	}{
		{"empty kind", "", "x"},
		{"colon in kind", "a:b", "x"},
		{"newline in payload", KindJSON, "a\nb"},
		{"carriage return in payload", KindJSON, "a\rb"},
		{"too long", KindJSON, strings.Repeat("x", MaxLine)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Encode(tt.kind, tt.payload)
			assert.Error(t, err)
		})
	}
}

func TestDecodeDamaged(t *testing.T) {
	good, err := Encode(KindJSON, `{"Action":"pass"}`)
	require.NoError(t, err)
	tests := []struct {
		name, line string
		frame      bool
	}{
		{"plain line", "Linux version 6.1", false},
		{"a byte changed", strings.Replace(good, "pass", "fail", 1), true},
		{"cut short", good[:len(good)-3], true},
		{"kernel message inside", good[:20] + "[ 1.0] hello" + good[20:], true},
		{"no kind", Prefix, true},
		{"no checksum", Prefix + "json", true},
		{"short checksum", Prefix + "json:1234:x", true},
		{"checksum not hex", Prefix + "json:zzzzzzzz:x", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, ok, err := Decode(tt.line)
			assert.Equal(t, tt.frame, ok)
			if tt.frame {
				assert.ErrorIs(t, err, ErrCorrupt)
			} else {
				assert.NoError(t, err)
			}
		})
	}
}

func TestChunks(t *testing.T) {
	data := bytes.Repeat([]byte{0, 1, 2, 0xff}, 100)
	for _, c := range []FileChunk{
		{Name: "covcounters.abc.1.2", Data: data, Last: true},
		{Name: "sub/dir/file with space", Data: nil, Last: false},
	} {
		payload := EncodeChunk(c)
		line, err := Encode(KindFile, payload)
		require.NoError(t, err)
		f, ok, err := Decode(line)
		require.NoError(t, err)
		require.True(t, ok)
		got, err := DecodeChunk(f.Payload)
		require.NoError(t, err)
		if len(c.Data) == 0 {
			c.Data = []byte{}
		}
		assert.Equal(t, c, got)
	}
}

func TestDecodeChunkRejects(t *testing.T) {
	name := func(s string) string { return EncodeChunk(FileChunk{Name: s}) }
	tests := []struct {
		name, payload, want string
	}{
		{"fields", "a b", "3"},
		{"absolute name", name("/etc/passwd"), "not a relative path"},
		{"dot dot", name("../x"), "not a relative path"},
		{"dot", name("."), "not a relative path"},
		{"bad flag", strings.Replace(name("x"), " more ", " maybe ", 1), "flag"},
		{"bad base64", "eA more !!!", "data"},
		{"bad name base64", "!!! more AA==", "name"},
		{"too big", EncodeChunk(FileChunk{Name: "x", Data: make([]byte, ChunkSize+1)}), "exceeds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeChunk(tt.payload)
			assert.ErrorContains(t, err, tt.want)
		})
	}
}

// FuzzDecode feeds console lines from an untrusted guest to the frame and
// chunk parsers: they must not panic, and what they accept must encode
// back to the same frame.
func FuzzDecode(f *testing.F) {
	good, _ := Encode(KindJSON, `{"Action":"run"}`)
	chunk, _ := Encode(KindFile, EncodeChunk(FileChunk{Name: "a/b", Data: []byte("xyz"), Last: true}))
	for _, s := range []string{good, chunk, "VMTEST:", "VMTEST:x:00000000:", "plain", good + "\r"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		fr, ok, err := Decode(line)
		if !ok || err != nil {
			return
		}
		again, err := Encode(fr.Kind, fr.Payload)
		if err == nil {
			f2, _, err := Decode(again)
			if err != nil || f2 != fr {
				t.Fatalf("%q: re-encoded frame %q decodes to %v, %v", line, again, f2, err)
			}
		}
		if fr.Kind == KindFile {
			if c, err := DecodeChunk(fr.Payload); err == nil && (strings.HasPrefix(c.Name, "/") || strings.Contains("/"+c.Name+"/", "/../")) {
				t.Fatalf("chunk name %q escapes", c.Name)
			}
		}
	})
}
