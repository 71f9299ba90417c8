package blk

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/gvmm/gvmm/memory"
	"github.com/gvmm/gvmm/virtio"
	"github.com/gvmm/gvmm/virtio/blk/disk"
)

// FuzzRequest feeds the request path arbitrary chains: the fuzzer chooses
// the split of a buffer into device-readable and device-writable
// descriptors and every byte of them (header, data, segments). Parsing and
// executing must not panic, must stay inside the 64 KiB image, and must
// answer with a status byte.
//
// Input: byte 0 is how many of the descriptors are readable, byte 1 how
// many descriptors (1-8); then their lengths (2 bytes each); the rest is
// the contents of the readable ones.
func FuzzRequest(f *testing.F) {
	seed := func(typ uint32, sector uint64, readable []int, writable []int, body []byte) []byte {
		out := []byte{byte(len(readable)), byte(len(readable) + len(writable))}
		for _, n := range append(readable, writable...) {
			out = binary.LittleEndian.AppendUint16(out, uint16(n))
		}
		h := header(typ, sector)
		return append(append(out, h...), body...)
	}
	seg := make([]byte, 16)
	binary.LittleEndian.PutUint64(seg, 3)
	binary.LittleEndian.PutUint32(seg[8:], 2)
	f.Add(seed(TypeIn, 0, []int{16}, []int{512, 1}, nil))
	f.Add(seed(TypeOut, 1, []int{16, 1024}, []int{1}, make([]byte, 1024)))
	f.Add(seed(TypeFlush, 0, []int{16}, []int{1}, nil))
	f.Add(seed(TypeGetID, 0, []int{16}, []int{20, 1}, nil))
	f.Add(seed(TypeDiscard, 0, []int{16, 16}, []int{1}, seg))
	f.Add(seed(TypeWriteZeroes, 0, []int{32}, []int{1}, seg))
	f.Add(seed(TypeIn, 127, []int{8, 8}, []int{600}, nil))

	path := filepath.Join(f.TempDir(), "disk.img")
	if err := os.WriteFile(path, make([]byte, 64<<10), 0o644); err != nil {
		f.Fatal(err)
	}
	file, err := disk.Open(path, disk.Options{})
	if err != nil {
		f.Fatal(err)
	}
	defer file.Close()
	g, err := memory.New(memory.MinSize)
	if err != nil {
		f.Fatal(err)
	}
	defer g.Close()
	dev, err := New(Config{Disk: file, Queues: 1})
	if err != nil {
		f.Fatal(err)
	}
	w := &worker{dev: dev, io: file.NewIO(), size: file.Size()}
	defer w.io.Close()

	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 {
			return
		}
		nread, n := int(data[0]), int(data[1])%8+1
		data = data[2:]
		if len(data) < 2*n {
			return
		}
		var c virtio.Chain
		c.Head = 0
		at := uint64(0x10000)
		body := data[2*n:]
		for i := 0; i < n; i++ {
			size := uint64(binary.LittleEndian.Uint16(data[2*i:])) % 4096
			if size == 0 {
				continue
			}
			b, err := g.Slice(at, size)
			if err != nil {
				t.Fatal(err)
			}
			clear(b)
			if i < nread {
				m := copy(b, body)
				body = body[m:]
				c.Readable = append(c.Readable, b)
			} else {
				c.Writable = append(c.Writable, b)
			}
			at += size
		}
		w.chain = c
		written, err := w.handle()
		if err != nil {
			if len(c.Writable) != 0 {
				t.Fatalf("a chain with writable bytes failed: %v", err)
			}
			return
		}
		if uint64(written) > c.Writable.Len() {
			t.Fatalf("reported %d bytes written into %d", written, c.Writable.Len())
		}
		last := c.Writable[len(c.Writable)-1]
		if s := last[len(last)-1]; s != StatusOK && s != StatusIOErr && s != StatusUnsupp {
			t.Fatalf("status %d", s)
		}
		if st, err := os.Stat(path); err != nil || st.Size() != 64<<10 {
			t.Fatalf("the image changed size: %v %v", st, err)
		}
	})
}
