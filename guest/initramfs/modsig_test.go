package initramfs

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// signed appends a PKCS#7-style signature block to obj the way
// scripts/sign-file.c does.
func signed(obj []byte, sigLen int) []byte {
	out := append([]byte{}, obj...)
	out = append(out, make([]byte, sigLen)...)
	info := []byte{0, 0, 2, 0, 0, 0, 0, 0}
	info = binary.BigEndian.AppendUint32(info, uint32(sigLen))
	out = append(out, info...)
	return append(out, modSigMarker...)
}

func TestStripSignature(t *testing.T) {
	obj := append([]byte(elfMagic), "module body"...)
	for _, tc := range []struct {
		name   string
		in     []byte
		want   []byte
		strip  bool
		errHas string
	}{
		{"unsigned", obj, obj, false, ""},
		{"signed", signed(obj, 700), obj, true, ""},
		{"empty signature", signed(obj, 0), obj, true, ""},
		{"marker only", []byte(modSigMarker), nil, false, "at least 12"},
		{"signature longer than the file", signed(obj, 700)[700:], nil, false, "only"},
		{"not ELF before it", signed([]byte("junk"), 3), nil, false, "not an ELF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, stripped, err := StripSignature(tc.in)
			if tc.errHas != "" {
				assert.ErrorContains(t, err, tc.errHas)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
			assert.Equal(t, tc.strip, stripped)
		})
	}
}

// FuzzStripSignature: nothing may panic, and a stripped module is a prefix
// of its input that starts with the ELF magic.
func FuzzStripSignature(f *testing.F) {
	f.Add(signed(append([]byte(elfMagic), 1, 2, 3), 16))
	f.Add([]byte(modSigMarker))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, stripped, err := StripSignature(b)
		if err != nil || !stripped {
			return
		}
		if len(got) > len(b) || string(b[:len(got)]) != string(got) || len(got) < len(elfMagic) {
			t.Fatalf("stripped %d bytes to %d", len(b), len(got))
		}
	})
}
