package vcpu_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gvmm/gvmm/devices"
	"github.com/gvmm/gvmm/kvm"
	"github.com/gvmm/gvmm/kvm/kvmtest"
	"github.com/gvmm/gvmm/vcpu"
	"github.com/gvmm/gvmm/vcpu/stats"
	"github.com/gvmm/gvmm/vcpu/trace"
)

// loopGuest is CPL3 code that makes n rounds of one port write (0x80) and
// one MMIO write (kvmtest.MMIOAddr), then writes to port 0xF4. With n = 0 it
// loops forever. CPL3 code runs natively even on hosts that emulate guest
// kernel code, so the loop measures exits, not an instruction emulator.
func loopGuest(n uint32) []byte {
	c := []byte{0xB9}
	c = binary.LittleEndian.AppendUint32(c, n) // mov ecx, n
	c = append(c, 0x48, 0xBB)
	c = binary.LittleEndian.AppendUint64(c, kvmtest.MMIOAddr) // mov rbx, MMIOAddr
	c = append(c,
		0xE6, 0x80, // loop: out 0x80, al
		0x88, 0x03, // mov [rbx], al
		0xFF, 0xC9, // dec ecx
		0x75, 0xF8, // jnz loop
		0xE6, 0xF4, // out 0xf4, al
	)
	return c
}

// sink is a device that counts writes and can signal after a number of them.
type sink struct {
	n      atomic.Uint64
	target atomic.Uint64
	hit    chan struct{}
}

func (s *sink) Read(uint64, []byte) {}
func (s *sink) Write(uint64, []byte) {
	if n := s.n.Add(1); n == s.target.Load() {
		select {
		case s.hit <- struct{}{}:
		default:
		}
	}
}

// RegisterName names the register, as the real devices do for statistics.
func (s *sink) RegisterName(uint64, bool) string { return "DATA" }

type stopper struct{ v *vcpu.VCPU }

func (s *stopper) Read(uint64, []byte)  {}
func (s *stopper) Write(uint64, []byte) { s.v.Stop() }

type namer struct{ pio, mmio *devices.Bus }

func (n namer) bus(k vcpu.Kind) *devices.Bus {
	if k == vcpu.KindMMIORead || k == vcpu.KindMMIOWrite {
		return n.mmio
	}
	return n.pio
}
func (n namer) DeviceName(k vcpu.Kind, slot int) string {
	if slot < 0 {
		return ""
	}
	return n.bus(k).SlotName(slot)
}
func (n namer) RegisterName(k vcpu.Kind, slot int, off uint64, w bool) string { return "DATA" }

// rig is a test guest wired to gvmm's exit loop.
type rig struct {
	g         *kvmtest.Guest
	v         *vcpu.VCPU
	pio, mmio devices.Bus
	sink      *sink
}

func newRig(tb testing.TB, n uint32, obs func(*rig) vcpu.Observer) *rig {
	r := &rig{g: kvmtest.New(tb, loopGuest(n), kvmtest.Options{User: true}), sink: &sink{hit: make(chan struct{}, 1)}}
	st := &stopper{}
	must := func(err error) {
		if err != nil {
			tb.Fatal(err)
		}
	}
	must(r.pio.Insert(r.sink, "sink", 0x80, 1))
	must(r.pio.Insert(st, "exit", 0xF4, 1))
	must(r.mmio.Insert(r.sink, "msink", kvmtest.MMIOAddr, 8))
	var o vcpu.Observer
	if obs != nil {
		o = obs(r)
	}
	r.v = vcpu.New(vcpu.Config{CPU: r.g.VCPU, PIO: &r.pio, MMIO: &r.mmio, Observer: o})
	st.v = r.v
	return r
}

// bareLoop runs the guest with nothing but KVM_RUN and a switch on the exit
// reason: the floor any VMM's dispatch sits on.
func bareLoop(g *kvmtest.Guest) error {
	run := g.VCPU.RunData()
	for {
		if err := g.VCPU.Run(); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return err
		}
		switch run.ExitReason {
		case kvm.ExitIO:
			if _, _, port, _, _ := run.IO(); port == 0xF4 {
				return nil
			}
		case kvm.ExitMMIO:
		default:
			return fmt.Errorf("exit %s", kvm.ExitName(run.ExitReason))
		}
	}
}

// variant is one way to run the loop guest, timed per exit.
type variant struct {
	name string
	run  func(tb testing.TB, rounds uint32) time.Duration
}

func gvmmVariant(name string, obs func(*rig) vcpu.Observer) variant {
	return variant{name, func(tb testing.TB, rounds uint32) time.Duration {
		r := newRig(tb, rounds, obs)
		start := time.Now()
		if err := r.v.Run(); err != nil {
			tb.Fatal(err)
		}
		return time.Since(start)
	}}
}

var variants = []variant{
	{"bare", func(tb testing.TB, rounds uint32) time.Duration {
		g := kvmtest.New(tb, loopGuest(rounds), kvmtest.Options{User: true})
		start := time.Now()
		if err := bareLoop(g); err != nil {
			tb.Fatal(err)
		}
		return time.Since(start)
	}},
	gvmmVariant("gvmm", nil),
	gvmmVariant("gvmm+stats", func(r *rig) vcpu.Observer {
		return stats.New(1, namer{&r.pio, &r.mmio}, nil).VCPU(0)
	}),
	gvmmVariant("gvmm+trace", func(r *rig) vcpu.Observer {
		return trace.NewWriter(io.Discard, 1, namer{&r.pio, &r.mmio}, nil).VCPU(0)
	}),
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// BenchmarkExitLoop times port and MMIO exits through gvmm's full dispatch
// (bus lookup, device, counters) against a bare KVM_RUN loop on the same
// guest in the same run, and with statistics and tracing on. Variants run
// interleaved, several rounds each, and the medians are compared, so that
// drift on a busy host hits them all alike. It reports ns per exit for each
// and the ratios gvmm/bare, stats/gvmm and trace/gvmm.
func BenchmarkExitLoop(b *testing.B) {
	kvmtest.SkipIfUnavailable(b)
	const rounds = 7
	per := uint32(b.N)
	if per < 1000 {
		per = 1000
	}
	ns := make(map[string][]float64)
	b.ResetTimer()
	for i := 0; i < rounds; i++ {
		for _, v := range variants {
			d := v.run(b, per)
			ns[v.name] = append(ns[v.name], float64(d.Nanoseconds())/float64(2*per))
		}
	}
	b.StopTimer()
	m := map[string]float64{}
	for _, v := range variants {
		m[v.name] = median(ns[v.name])
		b.ReportMetric(m[v.name], v.name+"-ns/exit")
	}
	b.ReportMetric(m["gvmm"]/m["bare"], "gvmm/bare")
	b.ReportMetric(m["gvmm+stats"]/m["gvmm"], "stats/gvmm")
	b.ReportMetric(m["gvmm+trace"]/m["gvmm"], "trace/gvmm")
	b.ReportMetric(0, "ns/op")
}

// TestExitLoopAllocatesNothing checks that handling an exit with statistics
// off allocates nothing: the guest loops on port and MMIO writes while
// AllocsPerRun counts the heap allocations of the whole process across
// 2,000 exits per run.
func TestExitLoopAllocatesNothing(t *testing.T) {
	r := newRig(t, 0, nil) // ecx = 0: dec wraps, the loop runs ~4 billion rounds
	done := make(chan error, 1)
	go func() { done <- r.v.Run() }()
	defer func() {
		r.v.Stop()
		<-done
	}()
	// One timer for the whole test: time.After would allocate per call.
	timeout := time.NewTimer(2 * time.Minute)
	defer timeout.Stop()
	waitFor := func(k uint64) {
		r.sink.target.Store(r.sink.n.Load() + k)
		select {
		case <-r.sink.hit:
		case err := <-done:
			t.Fatalf("vCPU stopped: %v", err)
		case <-timeout.C:
			t.Fatal("the guest made no progress")
		}
	}
	waitFor(2000) // warm up
	allocs := testing.AllocsPerRun(10, func() { waitFor(2000) })
	if allocs != 0 {
		t.Fatalf("%v allocations per 2,000 exits with statistics off, want 0", allocs)
	}
	t.Logf("%d exits handled, 0 allocations", r.sink.n.Load())
}
