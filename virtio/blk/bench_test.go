package blk

import (
	"encoding/binary"
	"fmt"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gvmm/gvmm/virtio/blk/disk"
)

// BenchmarkRequests drives reads and writes of 4 KiB and 128 KiB through
// the real virtqueue and request code (a fake driver publishes batches of
// requests with indirect descriptors in a memory-backed guest; the queue's
// worker code takes, parses, executes and completes them), and measures in
// the same run the same I/O done with plain pread/pwrite on the same file
// into the same guest memory. It reports both per request and their ratio,
// "x-raw": the cost of the virtio path over the system call alone.
//
// Each batch of requests is timed both ways back to back, on the same
// offsets and buffers, alternating which goes first; the figures are the
// medians over pairs of batches (one in each order), so that a burst of
// other work on the machine (which shares its CPUs) skews a few samples
// and not the result.
func BenchmarkRequests(b *testing.B) {
	for _, write := range []bool{false, true} {
		for _, size := range []int{4 << 10, 128 << 10} {
			name := fmt.Sprintf("read-%dK", size>>10)
			if write {
				name = fmt.Sprintf("write-%dK", size>>10)
			}
			b.Run(name, func(b *testing.B) { benchRequests(b, write, size) })
		}
	}
}

const benchBatch = 128

func benchRequests(b *testing.B, write bool, size int) {
	const fileSize = 64 << 20
	// One request at a time, as the raw loop does them.
	r := newRigParallel(b, fileSize, disk.Options{}, 0, 1)
	d := r.drv
	fd, err := unix.Open(r.path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(fd)

	typ := uint32(TypeIn)
	if write {
		typ = TypeOut
	}
	// Each batch slot has a data buffer, an indirect table, and the
	// header with the status byte right after it, as in Linux's struct
	// virtblk_req. The driver's part of each request, before it is made
	// available, writes the header and the indirect table afresh, as
	// Linux's virtio_blk and virtio_ring do.
	type slot struct {
		table, hdr, data, status uint64
		tableBytes, hdrBytes     []byte
	}
	slots := make([]slot, benchBatch)
	for i := range slots {
		s := &slots[i]
		s.hdr = d.Alloc(headerSize+1, 8)
		s.status = s.hdr + headerSize
		s.data = d.Alloc(uint64(size), 4096)
		s.table = d.Alloc(48, 16)
		t := make([]byte, 48)
		put := func(j int, addr uint64, n uint32, flags uint16) {
			binary.LittleEndian.PutUint64(t[16*j:], addr)
			binary.LittleEndian.PutUint32(t[16*j+8:], n)
			binary.LittleEndian.PutUint16(t[16*j+12:], flags)
			binary.LittleEndian.PutUint16(t[16*j+14:], uint16(j+1))
		}
		dataFlags := uint16(1)
		if !write {
			dataFlags |= 2
		}
		put(0, s.hdr, headerSize, 1)
		put(1, s.data, uint32(size), dataFlags)
		put(2, s.status, 1, 2)
		s.tableBytes = t
		s.hdrBytes = header(typ, 0)
	}
	bufs := make([][]byte, benchBatch)
	for i := range slots {
		bufs[i], err = r.mem.Slice(slots[i].data, uint64(size))
		if err != nil {
			b.Fatal(err)
		}
	}
	slotsInFile := uint64(fileSize / size)
	var raw, dev time.Duration
	var rawPer, devPer, ratios []float64
	pairReqs := 0
	next := uint64(0)
	b.SetBytes(int64(size))
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(benchBatch, b.N-done)
		// The same offsets for both.
		first := next
		rawBatch := func() {
			start := time.Now()
			for i := 0; i < n; i++ {
				off := int64((first + uint64(i)) % slotsInFile * uint64(size))
				var err error
				if write {
					_, err = unix.Pwrite(fd, bufs[i], off)
				} else {
					_, err = unix.Pread(fd, bufs[i], off)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			raw += time.Since(start)
		}
		devBatch := func() {
			// The driver's part, not timed: sectors and the avail ring.
			for i := 0; i < n; i++ {
				s := &slots[i]
				binary.LittleEndian.PutUint64(s.hdrBytes[8:], (first+uint64(i))%slotsInFile*uint64(size)/512)
				if _, err := r.mem.WriteAt(s.hdrBytes, int64(s.hdr)); err != nil {
					b.Fatal(err)
				}
				if _, err := r.mem.WriteAt(s.tableBytes, int64(s.table)); err != nil {
					b.Fatal(err)
				}
				d.WriteRawDesc(uint16(i), slots[i].table, 48, 4, 0)
				d.Publish(uint16(i))
			}
			start := time.Now()
			r.dev.ProcessQueue(0)
			dev += time.Since(start)
		}
		// Alternate which goes first, so that neither always finds the
		// other's data in the CPU caches.
		if (done/benchBatch)%2 == 0 {
			rawBatch()
			devBatch()
		} else {
			devBatch()
			rawBatch()
		}
		// A sample is a pair of batches, one in each order: the first
		// to touch a batch's part of the file pays for bringing it
		// into the CPU caches, so a lone batch favours whichever went
		// second.
		pairReqs += n
		if (done/benchBatch)%2 == 1 || done+n == b.N {
			rawPer = append(rawPer, float64(raw.Nanoseconds())/float64(pairReqs))
			devPer = append(devPer, float64(dev.Nanoseconds())/float64(pairReqs))
			ratios = append(ratios, float64(dev)/float64(raw))
			raw, dev, pairReqs = 0, 0, 0
		}
		for i := 0; i < n; i++ {
			if _, _, ok := d.Used(); !ok {
				b.Fatalf("request %d of the batch not completed", i)
			}
		}
		// The driver's own bookkeeping freed descriptors it never took
		// from its list (WriteRawDesc): reset it.
		d.ResetFree()
		next += uint64(n)
		done += n
	}
	b.StopTimer()
	if total, failed := r.dev.Requests(); failed != 0 || total != uint64(b.N) {
		b.Fatalf("%d requests, %d failed; want %d, 0", total, failed, b.N)
	}
	b.ReportMetric(median(devPer), "ns/req")
	b.ReportMetric(median(rawPer), "ns/raw")
	b.ReportMetric(median(ratios), "x-raw")
}

// median returns the median of v (which it sorts).
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
