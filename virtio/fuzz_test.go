package virtio_test

import (
	"encoding/binary"
	"testing"

	"github.com/gvmm/gvmm/memory"
	"github.com/gvmm/gvmm/virtio"
	"github.com/gvmm/gvmm/virtio/virtiotest"
)

// fuzzQueueSize keeps the rings small enough for the fuzzer to fill.
const fuzzQueueSize = 16

// FuzzQueue lets the fuzzer write the descriptor table, the available ring
// and a page of buffers (which may hold indirect tables), then drives the
// queue as a device does. Whatever the guest wrote, the queue must not
// panic, must not loop, and must hand out only buffers inside guest RAM.
//
// Input layout: byte 0 selects the features (bit 0 indirect, bit 1 event
// idx); then the descriptor table (16 per descriptor), the available ring
// (flags, idx, ring, used_event), and the rest is copied to the page at
// 0x1000 that descriptors may point to.
func FuzzQueue(f *testing.F) {
	f.Add(seedQueue(3, [][]virtiotest.Desc{{{Addr: 0x1000, Len: 16}, {Addr: 0x1010, Len: 512, Write: true}}}))
	f.Add(seedQueue(0, [][]virtiotest.Desc{{{Addr: 0x1000, Len: 1}}, {{Addr: 0x2000, Len: 4096, Write: true}}}))
	f.Add([]byte{})
	g, err := memory.New(memory.MinSize)
	if err != nil {
		f.Fatal(err)
	}
	defer g.Close()
	clear := make([]byte, 0x1000)
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := g.WriteAt(clear, 0x1000); err != nil {
			t.Fatal(err)
		}
		var features uint64
		if len(data) > 0 {
			if data[0]&1 != 0 {
				features |= virtio.FeatureIndirectDesc
			}
			if data[0]&2 != 0 {
				features |= virtio.FeatureEventIdx
			}
			data = data[1:]
		}
		d := virtiotest.NewDriver(g, ringBase, fuzzQueueSize, features, 0)
		ring := data[:min(len(data), int(d.UsedRing-d.Desc))]
		if _, err := g.WriteAt(ring, int64(d.Desc)); err != nil {
			t.Fatal(err)
		}
		if len(data) > len(ring) {
			page := data[len(ring):]
			if _, err := g.WriteAt(page[:min(len(page), 0x1000)], 0x1000); err != nil {
				t.Fatal(err)
			}
		}
		q, err := virtio.NewQueue(g, d.Config())
		if err != nil {
			t.Fatal(err)
		}
		var c virtio.Chain
		for i := 0; ; i++ {
			if i > fuzzQueueSize {
				t.Fatalf("popped %d chains from a queue of %d", i, fuzzQueueSize)
			}
			q.DisableNotifications()
			ok, err := q.Pop(&c)
			if err != nil || !ok {
				q.EnableNotifications()
				q.NeedsInterrupt()
				return
			}
			if uint64(len(c.Readable)+len(c.Writable)) > 2*fuzzQueueSize {
				t.Fatalf("chain of %d buffers", len(c.Readable)+len(c.Writable))
			}
			for _, b := range append(c.Readable, c.Writable...) {
				if len(b) == 0 {
					t.Fatal("empty buffer in a chain")
				}
			}
			// Touch every buffer, as a device would.
			for _, b := range c.Writable {
				b[0], b[len(b)-1] = 0xAA, 0x55
			}
			if err := q.Push(c.Head, uint32(c.Writable.Len())); err != nil {
				t.Fatal(err)
			}
			q.NeedsInterrupt()
		}
	})
}

// seedQueue builds a fuzz input holding the given chains, one descriptor
// each, published in order.
func seedQueue(features byte, chains [][]virtiotest.Desc) []byte {
	n := fuzzQueueSize
	table := make([]byte, 16*n)
	avail := make([]byte, 6+2*n)
	i := 0
	for c, descs := range chains {
		binary.LittleEndian.PutUint16(avail[4+2*c:], uint16(i))
		for j, x := range descs {
			e := table[16*i:]
			binary.LittleEndian.PutUint64(e[0:], x.Addr)
			binary.LittleEndian.PutUint32(e[8:], x.Len)
			var flags uint16
			if j+1 < len(descs) {
				flags |= 1
			}
			if x.Write {
				flags |= 2
			}
			binary.LittleEndian.PutUint16(e[12:], flags)
			binary.LittleEndian.PutUint16(e[14:], uint16(i+1))
			i++
		}
	}
	binary.LittleEndian.PutUint16(avail[2:], uint16(len(chains)))
	out := append([]byte{features}, table...)
	return append(out, avail...)
}
