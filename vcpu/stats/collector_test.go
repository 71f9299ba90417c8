package stats

import (
	"io"
	"sync"
	"testing"
	"time"

	"github.com/gvmm/gvmm/kvm"
	"github.com/gvmm/gvmm/vcpu"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testNamer names a COM1-like UART in port slot 0 and an RTC in slot 1.
type testNamer struct{}

func (testNamer) DeviceName(k vcpu.Kind, slot int) string {
	switch {
	case slot == 0 && (k == vcpu.KindIOIn || k == vcpu.KindIOOut):
		return "serial0"
	case slot == 1:
		return "rtc0"
	}
	return ""
}

func (testNamer) RegisterName(k vcpu.Kind, slot int, off uint64, write bool) string {
	if slot != 0 {
		return ""
	}
	switch {
	case off == 0 && write:
		return "THR"
	case off == 0:
		return "RBR"
	case off == 5:
		return "LSR"
	}
	return ""
}

func opName(op uint8) string {
	if op == 3 {
		return "movbe"
	}
	return ""
}

func ioExit(k vcpu.Kind, slot int, port, off uint64, handle, run int64) vcpu.Exit {
	return vcpu.Exit{Kind: k, Reason: kvm.ExitIO, Addr: port, Size: 1, Count: 1, Slot: slot, Offset: off, HandleNs: handle, RunNs: run}
}

func TestObserveAttribution(t *testing.T) {
	c := New(2, testNamer{}, opName)
	v0, v1 := c.VCPU(0), c.VCPU(1)
	for _, tc := range []struct {
		o vcpu.Observer
		e vcpu.Exit
		n int
	}{
		{v0, ioExit(vcpu.KindIOOut, 0, 0x3f8, 0, 1000, 5000), 10},
		{v0, ioExit(vcpu.KindIOIn, 0, 0x3fd, 5, 500, 5000), 10},
		{v1, ioExit(vcpu.KindIOIn, 0, 0x3fd, 5, 500, 5000), 5},
		{v1, ioExit(vcpu.KindIOOut, -1, 0x80, 0, 200, 100), 3},
		{v1, ioExit(vcpu.KindIOIn, 1, 0x71, 1, 300, 100), 1},
		{v0, vcpu.Exit{Kind: vcpu.KindMMIOWrite, Addr: 0xd000_0050, Slot: -1, HandleNs: 700}, 2},
		{v0, vcpu.Exit{Kind: vcpu.KindFallback, Op: 3, Slot: -1, Addr: 0x3f8, HandleNs: 9000}, 1},
		{v0, vcpu.Exit{Kind: vcpu.KindFallback, Op: 9, Slot: -1, HandleNs: 8000}, 1},
		{v1, vcpu.Exit{Kind: vcpu.KindOther, Reason: kvm.ExitIRQWindowOpen, Slot: -1, HandleNs: 50}, 4},
		// Stale Addr and Slot from an earlier exit must not leak into
		// the kinds that do not use them.
		{v1, vcpu.Exit{Kind: vcpu.KindIntr, Addr: 0x3f8, Slot: 0, HandleNs: 100, RunNs: 1e6}, 6},
		{v0, vcpu.Exit{Kind: vcpu.KindHLT, Addr: 0x3f8, Slot: 0, HandleNs: 10}, 1},
	} {
		for range tc.n {
			tc.o.Observe(&tc.e)
		}
	}
	r := c.Report()
	assert.Equal(t, uint64(44), r.Exits)
	assert.Equal(t, uint64(6), r.EINTR)
	assert.Equal(t, 2, r.VCPUs)

	kinds := map[string]uint64{}
	var share float64
	for _, row := range r.Kinds {
		kinds[row.Kind] = row.Count
		share += row.Share
		assert.Empty(t, row.Device)
		assert.Empty(t, row.Register)
	}
	assert.Equal(t, map[string]uint64{"io-out": 13, "io-in": 16, "mmio-write": 2, "fallback": 2, "other": 4, "eintr": 6, "hlt": 1}, kinds)
	assert.InDelta(t, 1, share, 1e-9)
	assert.Equal(t, []string{"fallback", "io-out", "io-in", "mmio-write", "eintr", "other", "hlt"},
		[]string{r.Kinds[0].Kind, r.Kinds[1].Kind, r.Kinds[2].Kind, r.Kinds[3].Kind, r.Kinds[4].Kind, r.Kinds[5].Kind, r.Kinds[6].Kind},
		"sorted by total handling time")

	type reg struct{ kind, dev, reg string }
	regs := map[reg]Summary{}
	for _, row := range r.Registers {
		regs[reg{row.Kind, row.Device, row.Register}] = row.Summary
	}
	want := map[reg]uint64{
		{"io-out", "serial0", "THR"}:              10,
		{"io-in", "serial0", "LSR"}:               15,
		{"io-out", "unclaimed", "0x80"}:           3,
		{"io-in", "rtc0", "0x1"}:                  1,
		{"mmio-write", "unclaimed", "0xd0000050"}: 2,
		{"fallback", "", "movbe"}:                 1,
		{"fallback", "", "op9"}:                   1,
		{"other", "", "IRQ_WINDOW_OPEN"}:          4,
	}
	got := map[reg]uint64{}
	for k, s := range regs {
		got[k] = s.Count
	}
	assert.Equal(t, want, got)
	lsr := regs[reg{"io-in", "serial0", "LSR"}]
	assert.Equal(t, Summary{Count: 15, TotalNs: 7500, MeanNs: 500, MinNs: 500, P50Ns: 500, P90Ns: 500, P99Ns: 500, MaxNs: 500}, lsr)

	assert.Equal(t, uint64(25), r.PerVCPU[0].Exits)
	assert.Equal(t, map[string]uint64{"io-out": 10, "io-in": 10, "mmio-write": 2, "fallback": 2, "hlt": 1}, r.PerVCPU[0].ByKind)
	assert.Equal(t, map[string]uint64{"io-in": 6, "io-out": 3, "other": 4, "eintr": 6}, r.PerVCPU[1].ByKind)
	assert.Equal(t, uint64(25), r.PerVCPU[0].Run.Count)
	assert.Equal(t, []RegisterCount{
		{Kind: "io-in", Device: "serial0", Register: "LSR", Count: 5, TotalNs: 2500},
		{Kind: "io-out", Device: "unclaimed", Register: "0x80", Count: 3, TotalNs: 600},
		{Kind: "io-in", Device: "rtc0", Register: "0x1", Count: 1, TotalNs: 300},
		{Kind: "other", Register: "IRQ_WINDOW_OPEN", Count: 4, TotalNs: 200},
	}, r.PerVCPU[1].Registers, "vCPU 1's registers")
	assert.Equal(t, int64(6e6+5*5000+4*100), r.PerVCPU[1].Run.TotalNs)
}

func TestNilNamerAndOpName(t *testing.T) {
	c := New(1, nil, nil)
	e := ioExit(vcpu.KindIOOut, 2, 0x3f8, 4, 1, 1)
	c.VCPU(0).Observe(&e)
	e = vcpu.Exit{Kind: vcpu.KindFallback, Op: 3}
	c.VCPU(0).Observe(&e)
	r := c.Report()
	require.Len(t, r.Registers, 2)
	names := []string{r.Registers[0].Device + " " + r.Registers[0].Register, r.Registers[1].Device + " " + r.Registers[1].Register}
	assert.ElementsMatch(t, []string{"slot2 0x4", " op3"}, names)
}

func TestKeyOverflow(t *testing.T) {
	c := New(1, nil, nil)
	o := c.VCPU(0)
	for a := range uint64(maxKeys + 10) {
		e := vcpu.Exit{Kind: vcpu.KindMMIORead, Slot: -1, Addr: 0xd000_0000 + 4*a, HandleNs: 1}
		o.Observe(&e)
		o.Observe(&e)
	}
	r := c.Report()
	assert.Len(t, r.Registers, maxKeys+1)
	assert.Equal(t, uint64(2*(maxKeys+10)), r.Exits)
	var other Row
	for _, row := range r.Registers {
		if row.Device == "(other)" {
			other = row
		}
	}
	assert.Equal(t, uint64(20), other.Count, "registers beyond the bound share a row")
}

func TestNilCollectorCounters(t *testing.T) {
	var c *Collector
	assert.NotPanics(t, func() {
		c.Kick(0)
		c.IRQ(4)
		c.EventFD("x")
	})
}

func TestCountersOutOfRange(t *testing.T) {
	c := New(2, nil, nil)
	c.Kick(5)
	c.Kick(-1)
	c.Kick(1)
	c.IRQ(MaxGSI + 7)
	c.IRQ(4)
	r := c.Report()
	assert.Equal(t, uint64(3), r.Kicks)
	assert.Equal(t, uint64(1), r.PerVCPU[1].Kicks)
	assert.Equal(t, uint64(1), r.IRQsBeyond)
	assert.Equal(t, []IRQCount{{GSI: 4, Count: 1}}, r.IRQs)
}

// TestConcurrent runs vCPU observers, counter feeders and a reporter at
// once; under -race it checks that reports need no locks, and at the end
// that nothing was lost.
func TestConcurrent(t *testing.T) {
	const nvcpu, perVCPU, feeders, perFeeder = 4, 20000, 3, 5000
	c := New(nvcpu, testNamer{}, opName)
	stop := make(chan struct{})
	var reporter sync.WaitGroup
	reporter.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			r := c.Report()
			assert.NoError(t, r.WriteTable(io.Discard))
			assert.NoError(t, r.WriteJSON(io.Discard))
		}
	})
	var wg sync.WaitGroup
	for i := range nvcpu {
		o := c.VCPU(i)
		wg.Go(func() {
			exits := []vcpu.Exit{
				ioExit(vcpu.KindIOOut, 0, 0x3f8, 0, 900, 2000),
				ioExit(vcpu.KindIOIn, 0, 0x3fd, 5, 400, 100),
				{Kind: vcpu.KindIntr, HandleNs: 50},
				{Kind: vcpu.KindMMIORead, Slot: -1, Addr: uint64(0x1000 * i), HandleNs: 700},
			}
			for j := range perVCPU {
				o.Observe(&exits[j%len(exits)])
			}
		})
	}
	names := []string{"dev0", "dev1"}
	for range feeders {
		wg.Go(func() {
			for j := range perFeeder {
				c.Kick(j % nvcpu)
				c.IRQ(uint32(j % 3))
				c.EventFD(names[j%2])
			}
		})
	}
	wg.Wait()
	close(stop)
	reporter.Wait()

	r := c.Report()
	assert.Equal(t, uint64(nvcpu*perVCPU), r.Exits)
	assert.Equal(t, uint64(nvcpu*perVCPU/4), r.EINTR)
	assert.Equal(t, uint64(feeders*perFeeder), r.Kicks)
	for _, v := range r.PerVCPU {
		assert.Equal(t, uint64(perVCPU), v.Exits)
		assert.Equal(t, uint64(feeders*perFeeder/nvcpu), v.Kicks)
	}
	var irqs uint64
	for _, q := range r.IRQs {
		irqs += q.Count
	}
	assert.Equal(t, uint64(feeders*perFeeder), irqs)
	assert.Equal(t, []EventFDCount{{"dev0", feeders * perFeeder / 2}, {"dev1", feeders * perFeeder / 2}}, r.EventFDs)
}

func TestObserveDoesNotAllocate(t *testing.T) {
	c := New(1, testNamer{}, opName)
	o := c.VCPU(0)
	exits := []vcpu.Exit{
		ioExit(vcpu.KindIOOut, 0, 0x3f8, 0, 900, 2000),
		ioExit(vcpu.KindIOIn, 0, 0x3fd, 5, 400, 100),
		{Kind: vcpu.KindFallback, Op: 3, HandleNs: 5000},
		{Kind: vcpu.KindIntr, HandleNs: 50},
	}
	for i := range exits {
		o.Observe(&exits[i]) // first sight may allocate
	}
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		o.Observe(&exits[i%len(exits)])
		i++
	})
	assert.Zero(t, allocs, "Observe on seen keys")

	c.EventFD("virtio-blk0")
	allocs = testing.AllocsPerRun(1000, func() {
		c.Kick(0)
		c.IRQ(4)
		c.EventFD("virtio-blk0")
	})
	assert.Zero(t, allocs, "Kick, IRQ and EventFD")
}

func TestSetStartRates(t *testing.T) {
	c := New(1, nil, nil)
	t0 := time.Unix(1700000000, 0)
	c.SetStart(t0)
	e := vcpu.Exit{Kind: vcpu.KindHLT}
	for range 500 {
		c.VCPU(0).Observe(&e)
	}
	r := c.ReportAt(t0.Add(2 * time.Second))
	assert.Equal(t, int64(2e9), r.ElapsedNs)
	assert.Equal(t, 250.0, r.PerVCPU[0].ExitsPerSec)
}

// BenchmarkObserve is the cost the statistics add to each exit, on a mix of
// already-seen registers like a serial console's.
func BenchmarkObserve(b *testing.B) {
	c := New(1, testNamer{}, opName)
	o := c.VCPU(0)
	exits := []vcpu.Exit{
		ioExit(vcpu.KindIOOut, 0, 0x3f8, 0, 900, 2000),
		ioExit(vcpu.KindIOIn, 0, 0x3fd, 5, 400, 100),
		ioExit(vcpu.KindIOIn, 0, 0x3fd, 5, 420, 100),
		{Kind: vcpu.KindMMIOWrite, Slot: 3, Offset: 0x50, HandleNs: 1500, RunNs: 30000},
		{Kind: vcpu.KindIntr, HandleNs: 50, RunNs: 1e6},
	}
	for i := range exits {
		o.Observe(&exits[i])
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		o.Observe(&exits[i%len(exits)])
	}
}

func TestKeyTable(t *testing.T) {
	var kt keyTable
	assert.Nil(t, kt.get(key{}), "empty table")
	seen := map[key]*keyStats{}
	for i := range 1200 {
		// Keys that differ only in high offset bits, in the slot or in
		// the kind, to stress the hash.
		k := key{kind: vcpu.Kind(i % 4), slot: int32(i%7) - 1, off: uint64(i) << (i % 48)}
		if seen[k] != nil {
			continue
		}
		ks := &keyStats{key: k}
		kt.put(ks)
		seen[k] = ks
	}
	assert.Equal(t, len(seen), kt.n)
	assert.LessOrEqual(t, 2*kt.n, len(kt.slots), "at most half full")
	for k, ks := range seen {
		require.Same(t, ks, kt.get(k), "key %+v", k)
	}
	assert.Nil(t, kt.get(key{kind: vcpu.KindHLT, slot: 99, off: 1}))
}
