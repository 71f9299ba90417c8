package devices

import (
	"encoding/binary"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// fakeIRQ records every level an IRQLine is driven to.
type fakeIRQ struct {
	mu     sync.Mutex
	levels []bool
}

func (f *fakeIRQ) SetLevel(high bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.levels = append(f.levels, high)
}

// level is the current level of the line (low if never driven).
func (f *fakeIRQ) level() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.levels) > 0 && f.levels[len(f.levels)-1]
}

// transitions returns the levels driven so far and forgets them.
func (f *fakeIRQ) transitions() []bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.levels
	f.levels = nil
	return l
}

// checkingIRQ is an IRQLine for fuzzing: it keeps no history, and fails the
// test if driven to the level it already has (devices call SetLevel on
// changes only).
type checkingIRQ struct {
	t     testing.TB
	high  bool
	edges int
}

func (c *checkingIRQ) SetLevel(high bool) {
	if high == c.high {
		c.t.Fatalf("SetLevel(%v) without a change of level", high)
	}
	c.high = high
	if high {
		c.edges++
	}
}

func inb(d Device, off uint64) byte {
	var b [1]byte
	d.Read(off, b[:])
	return b[0]
}

func outb(d Device, off uint64, v byte) {
	d.Write(off, []byte{v})
}

// fuzzOp is one guest access, or a device-specific host action, decoded from
// fuzz input.
type fuzzOp struct {
	kind   fuzzKind
	offset uint64
	data   []byte // for writes, the value; for reads, the buffer
	arg    int    // for fuzzHost, a device-specific argument
}

type fuzzKind int

const (
	fuzzRead fuzzKind = iota
	fuzzWrite
	fuzzHost
)

// fuzzSizes are the access sizes a header can select: the real ones and the
// malformed ones a broken exit could carry.
var fuzzSizes = [8]int{1, 2, 4, 8, 1, 3, 0, 17}

// decodeFuzzOps turns fuzz input into accesses. Each op starts with a header
// byte: bits 7:6 are the kind (00 read, 01 and 10 write, 11 host action with
// bits 5:0 as its argument); for accesses bits 5:3 select the size from
// fuzzSizes and bits 2:0 the offset, 7 meaning "a full 64-bit offset
// follows". A write's value bytes follow the header (and offset).
func decodeFuzzOps(in []byte, each func(op fuzzOp)) {
	for len(in) > 0 {
		h := in[0]
		in = in[1:]
		if h>>6 == 3 {
			each(fuzzOp{kind: fuzzHost, arg: int(h & 0x3F)})
			continue
		}
		op := fuzzOp{kind: fuzzRead, offset: uint64(h & 7)}
		if h>>6 != 0 {
			op.kind = fuzzWrite
		}
		if op.offset == 7 {
			if len(in) < 8 {
				return
			}
			op.offset = binary.LittleEndian.Uint64(in)
			in = in[8:]
		}
		size := fuzzSizes[(h>>3)&7]
		op.data = make([]byte, size)
		if op.kind == fuzzWrite {
			n := copy(op.data, in)
			in = in[n:]
		}
		each(op)
	}
}

func TestDecodeFuzzOps(t *testing.T) {
	var ops []fuzzOp
	in := []byte{
		0x00,             // read, size 1, offset 0
		0x4D, 0xAA, 0xBB, // write, size 2, offset 5
		0xC5,                         // host 5
		0x17, 1, 2, 3, 4, 5, 6, 7, 8, // read, size 4, offset follows
	}
	decodeFuzzOps(in, func(op fuzzOp) { ops = append(ops, op) })
	require.Equal(t, []fuzzOp{
		{kind: fuzzRead, offset: 0, data: []byte{0}},
		{kind: fuzzWrite, offset: 5, data: []byte{0xAA, 0xBB}},
		{kind: fuzzHost, arg: 5},
		{kind: fuzzRead, offset: 0x0807060504030201, data: []byte{0, 0, 0, 0}},
	}, ops)
}
