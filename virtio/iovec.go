package virtio

import (
	"errors"
	"fmt"
)

// Chain is one descriptor chain taken from a queue: its head index and its
// buffers as host slices of guest memory, device-readable ones first, then
// device-writable ones (section 2.7.4.2: "all device-readable descriptors
// before device-writable ones"). The slices alias guest memory, which the
// guest may change at any time: copy a value out before checking it.
//
// A Chain is reused from one Pop to the next, so a worker that keeps one
// per queue allocates nothing in steady state.
type Chain struct {
	// Head is the index of the chain's first descriptor, to give back
	// with Queue.Push.
	Head uint16
	// Readable and Writable are the buffers, in chain order. Zero-length
	// descriptors are dropped.
	Readable, Writable IOVec
	valid              bool
}

// Valid reports whether Head names a chain taken from the queue (it may be
// malformed all the same: see Queue.Pop).
func (c *Chain) Valid() bool { return c.valid }

func (c *Chain) reset() {
	c.Head, c.valid = 0, false
	c.Readable = c.Readable[:0]
	c.Writable = c.Writable[:0]
}

func (c *Chain) add(mem Memory, addr uint64, length uint32, write bool) error {
	if length == 0 {
		return nil
	}
	b, err := mem.Slice(addr, uint64(length))
	if err != nil {
		return err
	}
	if write {
		c.Writable = append(c.Writable, b)
		return nil
	}
	if len(c.Writable) > 0 {
		return errors.New("device-readable buffer after a device-writable one")
	}
	c.Readable = append(c.Readable, b)
	return nil
}

// IOVec is a list of buffers seen as one byte sequence, as struct iovec
// arrays are in readv(2).
type IOVec [][]byte

// Len returns the total length of the buffers.
func (v IOVec) Len() uint64 {
	var n uint64
	for _, b := range v {
		n += uint64(len(b))
	}
	return n
}

// ReadAt copies bytes from offset off of the sequence into p and returns
// how many it copied: fewer than len(p) only at the end of the sequence.
func (v IOVec) ReadAt(p []byte, off uint64) int {
	n := 0
	for _, b := range v {
		if off >= uint64(len(b)) {
			off -= uint64(len(b))
			continue
		}
		c := copy(p[n:], b[off:])
		n += c
		off = 0
		if n == len(p) {
			break
		}
	}
	return n
}

// WriteAt copies p into the sequence at offset off and returns how many
// bytes it copied: fewer than len(p) only at the end of the sequence.
func (v IOVec) WriteAt(p []byte, off uint64) int {
	n := 0
	for _, b := range v {
		if off >= uint64(len(b)) {
			off -= uint64(len(b))
			continue
		}
		c := copy(b[off:], p[n:])
		n += c
		off = 0
		if n == len(p) {
			break
		}
	}
	return n
}

// Slice appends to dst the buffers covering [off, off+n) of the sequence,
// trimmed at both ends, and returns it. It fails if the sequence is shorter
// than off+n. dst may be a reused slice: nothing is allocated when it has
// room.
func (v IOVec) Slice(dst IOVec, off, n uint64) (IOVec, error) {
	start, want := off, n
	for _, b := range v {
		if n == 0 {
			break
		}
		if off >= uint64(len(b)) {
			off -= uint64(len(b))
			continue
		}
		b = b[off:]
		off = 0
		if uint64(len(b)) > n {
			b = b[:n]
		}
		dst = append(dst, b)
		n -= uint64(len(b))
	}
	if n != 0 {
		return dst, fmt.Errorf("buffers end %d bytes short of [%d, +%d)", n, start, want)
	}
	return dst, nil
}
