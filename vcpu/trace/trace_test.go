package trace

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/gvmm/gvmm/kvm"
	"github.com/gvmm/gvmm/vcpu"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testNamer names a UART in port slot 0 and a virtio device in MMIO slot 2.
type testNamer struct{}

func (testNamer) DeviceName(k vcpu.Kind, slot int) string {
	switch {
	case slot == 0 && (k == vcpu.KindIOIn || k == vcpu.KindIOOut):
		return "serial0"
	case slot == 2 && (k == vcpu.KindMMIORead || k == vcpu.KindMMIOWrite):
		return "virtio-blk0"
	}
	return ""
}

func (testNamer) RegisterName(k vcpu.Kind, slot int, off uint64, write bool) string {
	switch {
	case slot == 0 && off == 0 && write:
		return "THR"
	case slot == 0 && off == 5:
		return "LSR"
	case slot == 2 && off == 0x50:
		return "QueueNotify"
	}
	return ""
}

func opName(op uint8) string {
	if op == 3 {
		return "movbe"
	}
	return ""
}

// randomExit makes an exit of a random kind, with stale values in the
// fields the kind does not use, as the exit loop leaves them.
func randomExit(rng *rand.Rand, i int, start int64) vcpu.Exit {
	e := vcpu.Exit{
		VCPU: i, Start: start, RunNs: rng.Int64N(1e6), HandleNs: rng.Int64N(1e5),
		Addr: rng.Uint64(), Data: rng.Uint64(), Offset: rng.Uint64(), Size: 4, Count: 9, Slot: 7, Op: 200,
	}
	switch rng.IntN(8) {
	case 0:
		e.Kind, e.Reason, e.Addr, e.Size, e.Count, e.Slot, e.Offset, e.Data = vcpu.KindIOOut, kvm.ExitIO, 0x3f8, 1, 1, 0, 0, uint64(rng.IntN(256))
	case 1:
		e.Kind, e.Reason, e.Addr, e.Size, e.Count, e.Slot, e.Offset, e.Data = vcpu.KindIOIn, kvm.ExitIO, 0x3fd, 1, 1, 0, 5, 0x60
	case 2:
		e.Kind, e.Reason, e.Addr, e.Size, e.Count, e.Slot, e.Offset = vcpu.KindIOIn, kvm.ExitIO, 0x1f0, 2, 256, -1, 0
	case 3:
		e.Kind, e.Reason, e.Addr, e.Size, e.Count, e.Slot, e.Offset = vcpu.KindMMIOWrite, kvm.ExitMMIO, 0xd0000050, 4, 1, 2, 0x50
	case 4:
		e.Kind, e.Reason, e.Addr, e.Size, e.Count, e.Slot, e.Offset = vcpu.KindMMIORead, kvm.ExitMMIO, 0xfee00300+uint64(rng.IntN(4))*16, 4, 1, -1, 0
	case 5:
		e.Kind, e.Reason, e.Slot, e.Op = vcpu.KindFallback, kvm.ExitInternalError, -1, uint8(rng.IntN(5))
	case 6:
		e.Kind, e.Reason, e.Slot = vcpu.KindIntr, 0, -1
	case 7:
		e.Kind, e.Reason, e.Slot = vcpu.KindOther, kvm.ExitIRQWindowOpen, -1
	}
	return e
}

// wantRecord is what a reader should return for e: the fields e's kind
// uses, the rest zero.
func wantRecord(e vcpu.Exit, mono0 int64) Record {
	r := Record{Time: e.Start - mono0}
	r.VCPU, r.Kind, r.Reason, r.Start, r.Count, r.Slot = e.VCPU, e.Kind, e.Reason, e.Start, 1, -1
	r.RunNs, r.HandleNs = max(e.RunNs, 0), max(e.HandleNs, 0)
	switch e.Kind {
	case vcpu.KindIOIn, vcpu.KindIOOut, vcpu.KindMMIORead, vcpu.KindMMIOWrite:
		r.Addr, r.Size, r.Data, r.Slot, r.Offset = e.Addr, e.Size, e.Data, e.Slot, e.Offset
		if e.Kind <= vcpu.KindIOOut {
			r.Count = e.Count
		}
		off := e.Offset
		if e.Slot < 0 {
			off = e.Addr
		}
		r.Device = testNamer{}.DeviceName(e.Kind, e.Slot)
		r.Register = testNamer{}.RegisterName(e.Kind, e.Slot, off, e.Kind == vcpu.KindIOOut || e.Kind == vcpu.KindMMIOWrite)
	case vcpu.KindFallback:
		r.Op = e.Op
		r.Register = opName(e.Op)
	}
	return r
}

// writeTrace has nvcpu goroutines observe n random exits each, at once,
// and returns the trace and the records a reader should find per vCPU.
func writeTrace(t testing.TB, nvcpu, n int) ([]byte, [][]Record) {
	var buf bytes.Buffer
	w := NewWriter(&buf, nvcpu, testNamer{}, opName)
	want := make([][]Record, nvcpu)
	var wg sync.WaitGroup
	for i := range nvcpu {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 99))
			o := w.VCPU(i)
			start := w.mono0 + rng.Int64N(1e6)
			for range n {
				// Mostly forward, sometimes a step back (clocks
				// are per-CPU), sometimes a long idle stretch.
				start += rng.Int64N(20000) - 1000 + rng.Int64N(2)*rng.Int64N(1e10)
				e := randomExit(rng, i, start)
				o.Observe(&e)
				want[i] = append(want[i], wantRecord(e, w.mono0))
			}
		})
	}
	wg.Wait()
	require.NoError(t, w.Close())
	return buf.Bytes(), want
}

// readAll reads a trace, grouping records by vCPU.
func readAll(t testing.TB, b []byte) (Header, [][]Record, error) {
	r, err := NewReader(bytes.NewReader(b))
	if err != nil {
		return Header{}, nil, err
	}
	got := make([][]Record, r.Header().VCPUs)
	for {
		rec, err := r.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			return r.Header(), got, err
		}
		got[rec.VCPU] = append(got[rec.VCPU], rec)
	}
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name     string
		nvcpu, n int
	}{
		{"empty", 2, 0},
		{"one exit", 1, 1},
		{"4 vCPUs, many chunks each", 4, 40000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, want := writeTrace(t, tc.nvcpu, tc.n)
			hdr, got, err := readAll(t, b)
			require.NoError(t, err)
			assert.Equal(t, tc.nvcpu, hdr.VCPUs)
			assert.Equal(t, uint16(Version), hdr.Version)
			for i := range want {
				require.Len(t, got[i], len(want[i]), "vCPU %d", i)
				for j := range want[i] {
					if !assert.Equal(t, want[i][j], got[i][j], "vCPU %d record %d", i, j) {
						return
					}
				}
			}
			if tc.n > 0 {
				t.Logf("%d exits, %d bytes: %.1f bytes/exit", tc.nvcpu*tc.n, len(b), float64(len(b))/float64(tc.nvcpu*tc.n))
			}
		})
	}
}

// TestKeyTableBound checks that a guest touching more addresses than the
// key table holds is still traced exactly, with the surplus spelled out.
func TestKeyTableBound(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, 1, testNamer{}, opName)
	var want []Record
	for a := range uint64(maxKeys + 500) {
		for _, k := range []vcpu.Kind{vcpu.KindMMIORead, vcpu.KindMMIOWrite} {
			e := vcpu.Exit{Kind: k, Reason: kvm.ExitMMIO, Addr: 0xe000_0000 + 8*a, Size: 8, Slot: -1, Data: a, Start: w.mono0 + int64(a), HandleNs: 5}
			w.VCPU(0).Observe(&e)
			want = append(want, wantRecord(e, w.mono0))
		}
	}
	require.NoError(t, w.Close())
	assert.LessOrEqual(t, w.vcpus[0].keys.n, maxKeys+2)
	_, got, err := readAll(t, buf.Bytes())
	require.NoError(t, err)
	assert.Equal(t, want, got[0])
}

func TestObserveAfterCloseIsDropped(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, 1, nil, nil)
	e := vcpu.Exit{Kind: vcpu.KindHLT, Start: w.mono0}
	w.VCPU(0).Observe(&e)
	require.NoError(t, w.Close())
	require.NoError(t, w.Close(), "Close twice")
	w.VCPU(0).Observe(&e)
	_, got, err := readAll(t, buf.Bytes())
	require.NoError(t, err)
	assert.Len(t, got[0], 1)
}

// failWriter fails every write after the first n bytes.
type failWriter struct{ n int }

var errDiskFull = errors.New("disk full")

func (f *failWriter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		f.n = 0
		return 0, errDiskFull
	}
	f.n -= len(p)
	return len(p), nil
}

func TestWriteError(t *testing.T) {
	w := NewWriter(&failWriter{n: 1000}, 2, nil, nil)
	rng := rand.New(rand.NewPCG(1, 1))
	for i := range 200000 { // far more than the writer's buffers hold
		e := randomExit(rng, i%2, w.mono0+int64(i))
		w.VCPU(i % 2).Observe(&e)
	}
	err := w.Close()
	assert.ErrorIs(t, err, errDiskFull)
	assert.ErrorIs(t, w.Err(), errDiskFull)
}

func TestTruncated(t *testing.T) {
	b, want := writeTrace(t, 2, 120)
	total := len(want[0]) + len(want[1])
	// Every cut near the ends, where the header and end block are, and
	// every 7th byte in between.
	var cuts []int
	for cut := 0; cut < len(b); cut++ {
		if cut < 300 || cut > len(b)-300 || cut%7 == 0 {
			cuts = append(cuts, cut)
		}
	}
	for _, cut := range cuts {
		_, got, err := readAll(t, b[:cut])
		require.ErrorIs(t, err, ErrTruncated, "cut at %d of %d", cut, len(b))
		if got != nil {
			n := len(got[0]) + len(got[1])
			assert.Less(t, n, total+1)
			for i := range got {
				if len(got[i]) > 0 {
					assert.Equal(t, want[i][:len(got[i])], got[i], "records before the cut are intact")
				}
			}
		}
	}
	_, _, err := readAll(t, b[:len(b)-1])
	assert.ErrorContains(t, err, "in the end block")
	_, _, err = readAll(t, b[:headerSize])
	assert.ErrorContains(t, err, "no end block (the trace was not closed; 0 records read)")
}

func TestCorrupt(t *testing.T) {
	b, _ := writeTrace(t, 2, 3000)
	hdr := func(f func(h []byte)) []byte {
		c := bytes.Clone(b)
		f(c)
		return c
	}
	for _, tc := range []struct {
		name string
		b    []byte
		err  error
		msg  string
	}{
		{"not a trace", []byte("#!/bin/sh\necho hello, world, this is long enough\n"), ErrNotTrace, "bad magic"},
		{"short non-trace", []byte("GV?"), ErrNotTrace, "bad magic"},
		{"future version", hdr(func(h []byte) { h[8] = 2 }), ErrVersion, "version 2"},
		{"header bit flip", hdr(func(h []byte) { h[20] ^= 1 }), ErrCorrupt, "header checksum"},
		{"payload bit flip", hdr(func(h []byte) { h[headerSize+100] ^= 0x10 }), ErrCorrupt, "checksum"},
		{"bad block tag", hdr(func(h []byte) { h[headerSize] = 'X' }), ErrCorrupt, "unknown block tag 0x58"},
		{"data after the end", append(bytes.Clone(b), 0), ErrCorrupt, "data after the end block"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := readAll(t, tc.b)
			assert.ErrorIs(t, err, tc.err)
			assert.ErrorContains(t, err, tc.msg)
		})
	}
}

// TestMissingChunk drops a whole (valid) chunk: the end block notices.
func TestMissingChunk(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, 2, nil, nil)
	for i := range 30000 {
		e := vcpu.Exit{Kind: vcpu.KindIntr, Start: w.mono0 + int64(i), Slot: -1}
		w.VCPU(i % 2).Observe(&e)
	}
	require.NoError(t, w.Close())
	b := buf.Bytes()
	r, err := NewReader(bytes.NewReader(b))
	require.NoError(t, err)
	var starts []int64
	for {
		_, err := r.Next()
		if err != nil {
			require.ErrorIs(t, err, io.EOF)
			break
		}
		if len(starts) == 0 || starts[len(starts)-1] != r.chunkAt {
			starts = append(starts, r.chunkAt)
		}
	}
	require.GreaterOrEqual(t, len(starts), 4, "two chunks per vCPU")
	for i := range len(starts) - 1 {
		cut := append(bytes.Clone(b[:starts[i]]), b[starts[i+1]:]...)
		_, _, err = readAll(t, cut)
		assert.ErrorIs(t, err, ErrCorrupt, "without chunk %d", i)
	}
}

func TestNewWriterPairsClocks(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, 1, nil, nil)
	before := vcpu.Now()
	e := vcpu.Exit{Kind: vcpu.KindHLT, Start: before}
	w.VCPU(0).Observe(&e)
	require.NoError(t, w.Close())
	r, err := NewReader(&buf)
	require.NoError(t, err)
	rec, err := r.Next()
	require.NoError(t, err)
	assert.GreaterOrEqual(t, rec.Time, int64(0))
	assert.WithinDuration(t, r.Header().Start, r.Header().Wall(rec.Time), 1e9)
}

func TestTraceObserveDoesNotAllocate(t *testing.T) {
	w := NewWriter(io.Discard, 1, testNamer{}, opName)
	defer w.Close()
	o := w.VCPU(0)
	rng := rand.New(rand.NewPCG(5, 5))
	exits := make([]vcpu.Exit, 64)
	for i := range exits {
		exits[i] = randomExit(rng, 0, w.mono0+int64(i)*1000)
	}
	// Warm up: define every key and cycle through all the buffers.
	for i := range 200000 {
		o.Observe(&exits[i%len(exits)])
	}
	i := 0
	allocs := testing.AllocsPerRun(50000, func() {
		o.Observe(&exits[i%len(exits)])
		i++
	})
	assert.Zero(t, allocs)
}

// countWriter counts what is written to it.
type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

// BenchmarkTraceObserve is the cost tracing adds to each exit, on a serial
// console's exits (THR writes and LSR polls, with realistic latencies), and
// the trace's size per exit.
func BenchmarkTraceObserve(b *testing.B) {
	var cw countWriter
	w := NewWriter(&cw, 1, testNamer{}, opName)
	o := w.VCPU(0)
	rng := rand.New(rand.NewPCG(5, 5))
	exits := make([]vcpu.Exit, 64)
	for i := range exits {
		if i%2 == 0 {
			exits[i] = vcpu.Exit{Kind: vcpu.KindIOOut, Reason: kvm.ExitIO, Addr: 0x3f8, Size: 1, Count: 1, Data: uint64(32 + rng.IntN(90)), Slot: 0, Offset: 0}
		} else {
			exits[i] = vcpu.Exit{Kind: vcpu.KindIOIn, Reason: kvm.ExitIO, Addr: 0x3fd, Size: 1, Count: 1, Data: 0x60, Slot: 0, Offset: 5}
		}
		exits[i].HandleNs = 300 + rng.Int64N(1500)
		exits[i].RunNs = 500 + rng.Int64N(5000)
	}
	b.ReportAllocs()
	t := w.mono0
	n := 0
	for i := 0; b.Loop(); i++ {
		e := &exits[i%len(exits)]
		t += e.RunNs + e.HandleNs
		e.Start = t
		o.Observe(e)
		n++
	}
	b.StopTimer()
	require.NoError(b, w.Close())
	b.ReportMetric(float64(cw.n)/float64(n), "bytes/exit")
}

func TestKeyTable(t *testing.T) {
	var kt keyTable
	_, ok := kt.get(tkey{})
	assert.False(t, ok, "empty table")
	seen := map[tkey]keyRef{}
	for i := range 3000 {
		// Keys that differ in one field at a time, to stress the hash.
		k := tkey{kind: vcpu.Kind(i % 4), slot: i%5 - 1, off: uint64(i%3) << 40, addr: uint64(i/7) << (i % 30), size: uint8(i % 3), raw: i%11 == 0}
		if _, dup := seen[k]; dup {
			continue
		}
		ref := keyRef{id: uint64(len(seen)), raw: k.raw}
		kt.put(k, ref)
		seen[k] = ref
	}
	assert.Equal(t, len(seen), kt.n)
	assert.LessOrEqual(t, 2*kt.n, len(kt.slots), "at most half full")
	for k, ref := range seen {
		got, ok := kt.get(k)
		require.True(t, ok, "key %+v", k)
		require.Equal(t, ref, got, "key %+v", k)
	}
	_, ok = kt.get(tkey{kind: vcpu.KindHLT, reason: 5})
	assert.False(t, ok)
}
