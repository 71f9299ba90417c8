package devices

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestTestExit(t *testing.T) {
	tests := []struct {
		name   string
		offset uint64
		data   []byte
		want   []uint32
	}{
		{"byte", 0, []byte{0x31}, []uint32{0x31}},
		{"word", 0, []byte{0x34, 0x12}, []uint32{0x1234}},
		{"dword", 0, []byte{0x78, 0x56, 0x34, 0x12}, []uint32{0x12345678}},
		{"dword all ones", 0, []byte{0xFF, 0xFF, 0xFF, 0xFF}, []uint32{0xFFFFFFFF}},
		{"zero", 0, []byte{0}, []uint32{0}},
		{"odd size", 0, []byte{1, 2, 3}, []uint32{0x030201}},
		{"qword keeps the low 4 bytes", 0, []byte{1, 2, 3, 4, 5, 6, 7, 8}, []uint32{0x04030201}},
		{"other offset", 3, []byte{0x10}, []uint32{0x10}},
		{"empty access", 0, []byte{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []uint32
			d := NewTestExit(func(v uint32) { got = append(got, v) })
			d.Write(tt.offset, tt.data)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestTestExitRead(t *testing.T) {
	called := false
	d := NewTestExit(func(uint32) { called = true })
	buf := []byte{0xAA, 0xBB, 0xCC, 0xDD}
	d.Read(0, buf)
	assert.Equal(t, []byte{0, 0, 0, 0}, buf)
	assert.False(t, called)
	assert.Equal(t, "EXIT", d.RegisterName(0, true))
	NewTestExit(nil).Write(0, []byte{1})
}

func FuzzTestExit(f *testing.F) {
	f.Add([]byte{0x40, 0x31, 0x50, 0x01, 0x00, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, in []byte) {
		var got []uint32
		d := NewTestExit(func(v uint32) { got = append(got, v) })
		decodeFuzzOps(in, func(op fuzzOp) {
			switch op.kind {
			case fuzzRead:
				d.Read(op.offset, op.data)
				for _, b := range op.data {
					if b != 0 {
						t.Fatalf("read %x", op.data)
					}
				}
			case fuzzWrite:
				got = got[:0]
				d.Write(op.offset, op.data)
				if len(op.data) == 0 {
					if len(got) != 0 {
						t.Fatal("exit called for an empty write")
					}
					return
				}
				var le [4]byte
				copy(le[:], op.data)
				if want := binary.LittleEndian.Uint32(le[:]); len(got) != 1 || got[0] != want {
					t.Fatalf("write %x: exit(%x), want %#x", op.data, got, want)
				}
			}
		})
	})
}
