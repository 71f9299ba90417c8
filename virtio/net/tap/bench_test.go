package tap

import (
	"encoding/binary"
	stdnet "net"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/gvmm/gvmm/eventfd"
	"github.com/gvmm/gvmm/memory"
	"github.com/gvmm/gvmm/virtio"
	vnet "github.com/gvmm/gvmm/virtio/net"
	"github.com/gvmm/gvmm/virtio/virtiotest"
)

// inNewNetns runs f on a thread in a new network namespace, so that the
// taps it makes and every frame they carry stay out of the host's; the
// thread is never handed back to other goroutines.
func inNewNetns(tb testing.TB, f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			tb.Errorf("unshare: %v", err)
			return
		}
		f()
	}()
	<-done
}

// needTap skips without root or /dev/net/tun.
func needTap(tb testing.TB) {
	if os.Geteuid() != 0 {
		tb.Skip("needs root for a tap")
	}
	if _, err := os.Stat(tunDevice); err != nil {
		tb.Skip("no " + tunDevice)
	}
}

type nopIRQ struct{}

func (nopIRQ) NotifyQueue(int) {}
func (nopIRQ) NotifyConfig()   {}

// benchRig is a network device on a real tap, driven by fake drivers in a
// memory-backed guest; the receive side runs on the caller (Receive).
type benchRig struct {
	mem    *memory.Guest
	tap    *Tap
	dev    *vnet.Device
	rx, tx *virtiotest.Driver
}

func newBenchRig(b *testing.B, tap *Tap) *benchRig {
	g, err := memory.New(256 << 20)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { g.Close() })
	dev, err := vnet.New(vnet.Config{Backend: tap, MAC: vnet.DerivedMAC(tap.Name()), ManualReceive: true})
	if err != nil {
		b.Fatal(err)
	}
	features := dev.Features() | virtio.FeatureVersion1
	r := &benchRig{mem: g, tap: tap, dev: dev}
	r.rx = virtiotest.NewDriver(g, 0x10000, 256, features, 64<<20)
	r.tx = virtiotest.NewDriver(g, 0x8000000, 256, features, 64<<20)
	var queues []virtio.ActiveQueue
	for _, d := range []*virtiotest.Driver{r.rx, r.tx} {
		q, err := virtio.NewQueue(g, d.Config())
		if err != nil {
			b.Fatal(err)
		}
		kick, err := eventfd.New()
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { kick.Close() })
		queues = append(queues, virtio.ActiveQueue{Queue: q, Kick: kick})
	}
	if err := dev.Activate(virtio.Activation{Features: features, Mem: g, Queues: queues, Interrupt: nopIRQ{},
		Fail: func(err error) { b.Errorf("device failed: %v", err) }}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(dev.Reset)
	return r
}

const benchBatch = 128

// frame returns a header and an Ethernet frame of n bytes to a unicast
// address nobody has, with an EtherType nobody handles: the host's stack
// drops it as soon as it sees it.
func frame(h vnet.Header, n int) []byte {
	var w [vnet.HeaderSize]byte
	h.Encode(&w)
	f := make([]byte, n)
	copy(f, []byte{0x02, 0, 0, 0, 0, 0x99, 0x02, 0, 0, 0, 0, 0x98, 0x88, 0xb5})
	return append(w[:], f...)
}

// BenchmarkTransmit writes frames through the real transmit path (the
// queue, ParseTX, one writev per frame from guest memory) to a tap, and in
// the same run the same frames with plain writev(2) on the same
// descriptor. It reports packets per second for both and their ratio,
// "x-raw", as medians over pairs of batches (see samples). Both make the
// system call the same way (RawSyscall, as the tap does), so the ratio is
// the device's own work.
func BenchmarkTransmit(b *testing.B) {
	needTap(b)
	tso := vnet.Header{Flags: vnet.FlagNeedsCSum, GSOType: vnet.GSOTCPv4, GSOSize: 1448, HdrLen: 54, CSumStart: 34, CSumOff: 16}
	for _, c := range []struct {
		name string
		buf  []byte
	}{
		{"1514", frame(vnet.Header{}, 1514)},
		{"64K-TSO", frame(tso, 65000)},
	} {
		b.Run(c.name, func(b *testing.B) {
			inNewNetns(b, func() { benchTransmit(b, c.buf) })
		})
	}
}

func benchTransmit(b *testing.B, buf []byte) {
	tap, err := Open("gvmmbench0")
	if err != nil {
		b.Fatal(err)
	}
	defer tap.Close()
	r := newBenchRig(b, tap)
	addr := r.tx.Put(buf)
	wire, err := r.mem.Slice(addr, uint64(len(buf)))
	if err != nil {
		b.Fatal(err)
	}
	iov := []unix.Iovec{{Base: &wire[0]}, {Base: &wire[vnet.HeaderSize]}}
	iov[0].SetLen(vnet.HeaderSize)
	iov[1].SetLen(len(buf) - vnet.HeaderSize)
	for i := range benchBatch {
		r.tx.WriteRawDesc(uint16(i), addr, uint32(len(buf)), 0, 0)
	}
	var s samples
	b.SetBytes(int64(len(buf) - vnet.HeaderSize))
	b.ResetTimer()
	rawBatch := func(n int) time.Duration {
		start := time.Now()
		var werr error
		tap.Control(func(fd uintptr) {
			for range n {
				_, _, errno := unix.RawSyscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), 2)
				if errno != 0 {
					werr = errno
					return
				}
			}
		})
		took := time.Since(start)
		if werr != nil {
			b.Fatal(werr)
		}
		return took
	}
	devBatch := func(n int) time.Duration {
		for i := range n {
			r.tx.Publish(uint16(i))
		}
		start := time.Now()
		r.dev.ProcessTX()
		took := time.Since(start)
		for range n {
			if _, _, ok := r.tx.Used(); !ok {
				b.Fatal("a frame was not completed")
			}
		}
		r.tx.ResetFree()
		return took
	}
	s.run(b, rawBatch, devBatch)
	b.StopTimer()
	if st := r.dev.Stats(); st.TXFrames != uint64(b.N) || st.TXMalformed+st.TXErrors != 0 {
		b.Fatalf("stats %+v after %d frames", st, b.N)
	}
	s.report(b)
}

// samples are the timings of pairs of batches, one batch in each order
// (raw first, then the device first). The figures reported are medians
// over the pairs, so that a burst of other work on the machine (which
// shares its CPUs) skews a few samples and not the result.
type samples struct {
	frames                int
	devPPS, rawPPS, ratio []float64
}

// run times b.N frames in batches of benchBatch, each batch once through
// rawBatch and once through devBatch (which return the time of their timed
// part), in turn raw first and device first, taking a sample after each
// pair (and after the last batch).
func (s *samples) run(b *testing.B, rawBatch, devBatch func(n int) time.Duration) {
	var raw, dev time.Duration
	for done := 0; done < b.N; {
		n := min(benchBatch, b.N-done)
		if (done/benchBatch)%2 == 0 {
			raw += rawBatch(n)
			dev += devBatch(n)
		} else {
			dev += devBatch(n)
			raw += rawBatch(n)
		}
		s.frames += n
		done += n
		if (done/benchBatch)%2 == 0 || done == b.N {
			s.devPPS = append(s.devPPS, float64(s.frames)/dev.Seconds())
			s.rawPPS = append(s.rawPPS, float64(s.frames)/raw.Seconds())
			s.ratio = append(s.ratio, float64(dev)/float64(raw))
			dev, raw, s.frames = 0, 0, 0
		}
	}
}

func (s *samples) report(b *testing.B) {
	b.ReportMetric(median(s.devPPS), "pps")
	b.ReportMetric(median(s.rawPPS), "raw-pps")
	b.ReportMetric(median(s.ratio), "x-raw")
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

// BenchmarkReceive reads frames through the real receive path (held
// mergeable buffers, one readv per frame straight into guest memory,
// num_buffers, the used ring) from a tap, and in the same run the same
// frames with plain readv(2) on the same descriptor into the same guest
// buffers, in the same order. The frames are injected into the tap's queue by a packet socket
// on its host side, outside the timed part. It reports packets per second
// for both and their ratio, "x-raw", as medians over pairs of batches
// (see samples); both read with RawSyscall, as the tap does.
func BenchmarkReceive(b *testing.B) {
	needTap(b)
	inNewNetns(b, func() { benchReceive(b, 1514) })
}

func benchReceive(b *testing.B, size int) {
	tap, err := Open("gvmmbench0")
	if err != nil {
		b.Fatal(err)
	}
	defer tap.Close()
	ifi, err := stdnet.InterfaceByName(tap.Name())
	if err != nil {
		b.Fatal(err)
	}
	// ETH_P_ALL in network byte order (packet(7)).
	ps, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(ps)
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}
	if err := unix.Bind(ps, sa); err != nil {
		b.Fatal(err)
	}
	pkt := frame(vnet.Header{}, size)[vnet.HeaderSize:]
	inject := func(n int) {
		for range n {
			if err := unix.Sendto(ps, pkt, 0, sa); err != nil {
				b.Fatal(err)
			}
		}
	}
	r := newBenchRig(b, tap)
	// 256 mergeable buffers of 1526 bytes (Linux's smallest), each
	// descriptor i at a fixed address, posted again once used.
	const bufSize = 1526
	pool := r.rx.Alloc(256*2048, 4096)
	for i := range 256 {
		r.rx.WriteRawDesc(uint16(i), pool+uint64(i)*2048, bufSize, 2, 0)
		r.rx.Publish(uint16(i))
	}
	// The raw reads go where the device's go: each frame into the next
	// of the 256 buffers, in ring order, and a spill buffer after it for
	// the rest of the largest frame (the device's readv holds as many
	// buffers as the recent frames needed, here one, and its spill
	// buffer). So the ratio is the device's own work, not where the bytes
	// land.
	spillAddr := r.rx.Alloc(vnet.HeaderSize+vnet.MaxFrame-bufSize, 4096)
	spill, err := r.mem.Slice(spillAddr, vnet.HeaderSize+vnet.MaxFrame-bufSize)
	if err != nil {
		b.Fatal(err)
	}
	rawIOV := make([][2]unix.Iovec, 256)
	for i := range rawIOV {
		buf, err := r.mem.Slice(pool+uint64(i)*2048, bufSize)
		if err != nil {
			b.Fatal(err)
		}
		rawIOV[i] = [2]unix.Iovec{{Base: &buf[0]}, {Base: &spill[0]}}
		rawIOV[i][0].SetLen(bufSize)
		rawIOV[i][1].SetLen(len(spill))
	}
	next := 0
	var s samples
	b.SetBytes(int64(size))
	b.ResetTimer()
	rawBatch := func(n int) time.Duration {
		b.StopTimer()
		inject(n)
		b.StartTimer()
		start := time.Now()
		var rerr error
		tap.Control(func(fd uintptr) {
			for got := 0; got < n; {
				_, _, errno := unix.RawSyscall(unix.SYS_READV, fd, uintptr(unsafe.Pointer(&rawIOV[next][0])), 2)
				switch errno {
				case 0:
					got++
					next = (next + 1) % len(rawIOV)
				case unix.EAGAIN:
					// Not queued yet: wait as the netpoller would.
					fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
					unix.Poll(fds, 1000)
				default:
					rerr = errno
					return
				}
			}
		})
		took := time.Since(start)
		if rerr != nil {
			b.Fatal(rerr)
		}
		return took
	}
	devBatch := func(n int) time.Duration {
		b.StopTimer()
		inject(n)
		b.StartTimer()
		start := time.Now()
		if err := r.dev.Receive(n); err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		for range n {
			h, _, ok := r.rx.Used()
			if !ok {
				b.Fatal("a frame was not completed")
			}
			r.rx.Publish(h)
		}
		r.rx.ResetFree()
		return took
	}
	s.run(b, rawBatch, devBatch)
	b.StopTimer()
	if st := r.dev.Stats(); st.RXFrames != uint64(b.N) || st.RXDropped+st.RXMalformed != 0 {
		b.Fatalf("stats %+v after %d frames", st, b.N)
	}
	s.report(b)
}

func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}
