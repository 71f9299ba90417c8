package blk

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gvmm/gvmm/eventfd"
	"github.com/gvmm/gvmm/memory"
	"github.com/gvmm/gvmm/virtio"
	"github.com/gvmm/gvmm/virtio/blk/disk"
	"github.com/gvmm/gvmm/virtio/virtiotest"
)

const ringBase = 0x10000

// fakeIRQ records the device's interrupts.
type fakeIRQ struct {
	mu     sync.Mutex
	queue  map[int]int
	config int
	fired  chan struct{}
}

func newFakeIRQ() *fakeIRQ { return &fakeIRQ{queue: map[int]int{}, fired: make(chan struct{}, 1024)} }

func (f *fakeIRQ) NotifyQueue(i int) {
	f.mu.Lock()
	f.queue[i]++
	f.mu.Unlock()
	f.fired <- struct{}{}
}

func (f *fakeIRQ) NotifyConfig() {
	f.mu.Lock()
	f.config++
	f.mu.Unlock()
}

// rig is a block device on a disk file, driven through one queue by a
// fake driver in a memory-backed guest.
type rig struct {
	t      testing.TB
	mem    *memory.Guest
	drv    *virtiotest.Driver
	dev    *Device
	file   *disk.File
	path   string
	kick   *eventfd.EventFD
	irq    *fakeIRQ
	failed chan error
}

func newRig(t testing.TB, size int, opts disk.Options, features uint64) *rig {
	path := filepath.Join(t.TempDir(), "disk.img")
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i / 512)
	}
	require.NoError(t, os.WriteFile(path, b, 0o644))
	f, err := disk.Open(path, opts)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	g, err := memory.New(64 << 20)
	require.NoError(t, err)
	t.Cleanup(func() { g.Close() })
	dev, err := New(Config{Disk: f, Queues: 1, Serial: "serial-1"})
	require.NoError(t, err)
	kick, err := eventfd.New()
	require.NoError(t, err)
	t.Cleanup(func() { kick.Close() })
	r := &rig{t: t, mem: g, dev: dev, file: f, path: path, kick: kick, irq: newFakeIRQ(), failed: make(chan error, 8)}
	if features == 0 {
		features = virtio.FeatureVersion1 | virtio.FeatureIndirectDesc | virtio.FeatureEventIdx
	}
	r.drv = virtiotest.NewDriver(g, ringBase, 256, features, 32<<20)
	q, err := virtio.NewQueue(g, r.drv.Config())
	require.NoError(t, err)
	require.NoError(t, dev.Activate(virtio.Activation{
		Features: features, Mem: g, Interrupt: r.irq,
		Queues: []virtio.ActiveQueue{{Queue: q, Kick: kick}},
		Fail:   func(err error) { r.failed <- err },
	}))
	t.Cleanup(dev.Reset)
	return r
}

func header(typ uint32, sector uint64) []byte {
	h := make([]byte, headerSize)
	binary.LittleEndian.PutUint32(h[0:], typ)
	binary.LittleEndian.PutUint64(h[8:], sector)
	return h
}

// submit makes the chain available, kicks, and waits for it to come back;
// it returns the status byte and the used length.
func (r *rig) submit(descs ...virtiotest.Desc) (status byte, written uint32) {
	r.t.Helper()
	var statusAddr uint64
	for _, d := range descs {
		if d.Write {
			statusAddr = d.Addr + uint64(d.Len) - 1
		}
	}
	head, ok := r.drv.Add(descs...)
	require.True(r.t, ok)
	require.NoError(r.t, r.kick.Signal())
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if h, n, ok := r.drv.Used(); ok {
			require.Equal(r.t, head, h)
			return r.drv.Get(statusAddr, 1)[0], n
		}
		select {
		case err := <-r.failed:
			r.t.Fatalf("device failed: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	r.t.Fatal("request never completed")
	return 0, 0
}

func TestRequests(t *testing.T) {
	r := newRig(t, 1<<20, disk.Options{}, 0)
	d := r.drv
	st := d.Alloc(1, 1)
	buf := d.Alloc(8192, 4096)

	// IN: two sectors from sector 3, split over two buffers.
	s, n := r.submit(virtiotest.Desc{Addr: d.Put(header(TypeIn, 3)), Len: 16},
		virtiotest.Desc{Addr: buf, Len: 512, Write: true}, virtiotest.Desc{Addr: buf + 512, Len: 512, Write: true},
		virtiotest.Desc{Addr: st, Len: 1, Write: true})
	assert.Equal(t, byte(StatusOK), s)
	assert.Equal(t, uint32(1025), n, "data and status")
	got := d.Get(buf, 1024)
	assert.Equal(t, bytes.Repeat([]byte{3}, 512), got[:512])
	assert.Equal(t, bytes.Repeat([]byte{4}, 512), got[512:])

	// OUT, then read it back.
	data := d.Put(bytes.Repeat([]byte{0xAB}, 4096))
	s, n = r.submit(virtiotest.Desc{Addr: d.Put(header(TypeOut, 8)), Len: 16},
		virtiotest.Desc{Addr: data, Len: 4096}, virtiotest.Desc{Addr: st, Len: 1, Write: true})
	assert.Equal(t, byte(StatusOK), s)
	assert.Equal(t, uint32(1), n)
	file, err := os.ReadFile(r.path)
	require.NoError(t, err)
	assert.Equal(t, bytes.Repeat([]byte{0xAB}, 4096), file[8*512:8*512+4096])

	// FLUSH.
	s, _ = r.submit(virtiotest.Desc{Addr: d.Put(header(TypeFlush, 0)), Len: 16}, virtiotest.Desc{Addr: st, Len: 1, Write: true})
	assert.Equal(t, byte(StatusOK), s)

	// GET_ID.
	id := d.Alloc(IDBytes, 1)
	s, n = r.submit(virtiotest.Desc{Addr: d.Put(header(TypeGetID, 0)), Len: 16},
		virtiotest.Desc{Addr: id, Len: IDBytes, Write: true}, virtiotest.Desc{Addr: st, Len: 1, Write: true})
	assert.Equal(t, byte(StatusOK), s)
	assert.Equal(t, uint32(IDBytes+1), n)
	assert.Equal(t, append([]byte("serial-1"), make([]byte, IDBytes-8)...), d.Get(id, IDBytes))

	// WRITE_ZEROES and DISCARD punch holes.
	seg := func(sector uint64, sectors, flags uint32) uint64 {
		b := make([]byte, segmentSize)
		binary.LittleEndian.PutUint64(b[0:], sector)
		binary.LittleEndian.PutUint32(b[8:], sectors)
		binary.LittleEndian.PutUint32(b[12:], flags)
		return d.Put(b)
	}
	s, _ = r.submit(virtiotest.Desc{Addr: d.Put(header(TypeWriteZeroes, 0)), Len: 16},
		virtiotest.Desc{Addr: seg(8, 8, segUnmap), Len: 16}, virtiotest.Desc{Addr: st, Len: 1, Write: true})
	assert.Equal(t, byte(StatusOK), s)
	s, _ = r.submit(virtiotest.Desc{Addr: d.Put(header(TypeDiscard, 0)), Len: 16},
		virtiotest.Desc{Addr: seg(100, 2, 0), Len: 16}, virtiotest.Desc{Addr: st, Len: 1, Write: true})
	assert.Equal(t, byte(StatusOK), s)
	file, err = os.ReadFile(r.path)
	require.NoError(t, err)
	assert.Equal(t, make([]byte, 4096), file[8*512:8*512+4096])
	assert.Equal(t, make([]byte, 1024), file[100*512:102*512])

	total, failed := r.dev.Requests()
	assert.Equal(t, uint64(6), total)
	assert.Zero(t, failed)
}

func TestMalformedRequests(t *testing.T) {
	const size = 1 << 20
	r := newRig(t, size, disk.Options{}, 0)
	d := r.drv
	st := d.Alloc(1, 1)
	buf := d.Alloc(4096, 4096)
	out := func(h []byte, data ...virtiotest.Desc) []virtiotest.Desc {
		return append(append([]virtiotest.Desc{{Addr: d.Put(h), Len: uint32(len(h))}}, data...), virtiotest.Desc{Addr: st, Len: 1, Write: true})
	}
	seg := make([]byte, segmentSize)
	binary.LittleEndian.PutUint64(seg, size/512)
	binary.LittleEndian.PutUint32(seg[8:], 1)
	for _, tc := range []struct {
		name  string
		descs []virtiotest.Desc
		want  byte
	}{
		{"short header", out(header(TypeIn, 0)[:8]), StatusIOErr},
		{"read past the end", out(header(TypeIn, size/512), virtiotest.Desc{Addr: buf, Len: 512, Write: true}), StatusIOErr},
		{"read straddling the end", out(header(TypeIn, size/512-1), virtiotest.Desc{Addr: buf, Len: 1024, Write: true}), StatusIOErr},
		{"huge sector", out(header(TypeIn, 1<<60), virtiotest.Desc{Addr: buf, Len: 512, Write: true}), StatusIOErr},
		{"sector wraps", out(header(TypeOut, ^uint64(0)), virtiotest.Desc{Addr: buf, Len: 512}), StatusIOErr},
		{"partial sector", out(header(TypeOut, 0), virtiotest.Desc{Addr: buf, Len: 100}), StatusIOErr},
		{"unknown type", out(header(99, 0)), StatusUnsupp},
		{"discard with unmap", out(header(TypeDiscard, 0), virtiotest.Desc{Addr: d.Put(append(make([]byte, 12), 1, 0, 0, 0)), Len: 16}), StatusUnsupp},
		{"discard reserved flag", out(header(TypeDiscard, 0), virtiotest.Desc{Addr: d.Put(append(make([]byte, 12), 2, 0, 0, 0)), Len: 16}), StatusUnsupp},
		{"discard past the end", out(header(TypeDiscard, 0), virtiotest.Desc{Addr: d.Put(seg), Len: 16}), StatusIOErr},
		{"segments not whole", out(header(TypeWriteZeroes, 0), virtiotest.Desc{Addr: buf, Len: 10}), StatusIOErr},
		{"no segments", out(header(TypeWriteZeroes, 0)), StatusIOErr},
		{"too many segments", out(header(TypeDiscard, 0), virtiotest.Desc{Addr: buf, Len: segmentSize * (maxSegments + 1)}), StatusIOErr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := r.submit(tc.descs...)
			assert.Equal(t, tc.want, s)
		})
	}
	// The device survived all of it.
	s, _ := r.submit(out(header(TypeIn, 0), virtiotest.Desc{Addr: buf, Len: 512, Write: true})...)
	assert.Equal(t, byte(StatusOK), s)
	assert.Empty(t, r.failed)
}

func TestReadOnly(t *testing.T) {
	r := newRig(t, 1<<20, disk.Options{ReadOnly: true}, 0)
	assert.NotZero(t, r.dev.Features()&FeatureRO)
	assert.Zero(t, r.dev.Features()&(FeatureDiscard|FeatureWriteZeroes))
	before, err := os.ReadFile(r.path)
	require.NoError(t, err)
	d := r.drv
	st := d.Alloc(1, 1)
	s, _ := r.submit(virtiotest.Desc{Addr: d.Put(header(TypeOut, 0)), Len: 16},
		virtiotest.Desc{Addr: d.Put(make([]byte, 512)), Len: 512}, virtiotest.Desc{Addr: st, Len: 1, Write: true})
	assert.Equal(t, byte(StatusIOErr), s)
	s, _ = r.submit(virtiotest.Desc{Addr: d.Put(header(TypeDiscard, 0)), Len: 16},
		virtiotest.Desc{Addr: d.Put(append(make([]byte, 8), 1, 0, 0, 0, 0, 0, 0, 0)), Len: 16}, virtiotest.Desc{Addr: st, Len: 1, Write: true})
	assert.Equal(t, byte(StatusIOErr), s)
	after, err := os.ReadFile(r.path)
	require.NoError(t, err)
	assert.Equal(t, before, after)
}

func TestNoStatusByteNeedsReset(t *testing.T) {
	r := newRig(t, 1<<20, disk.Options{}, 0)
	d := r.drv
	d.Add(virtiotest.Desc{Addr: d.Put(header(TypeFlush, 0)), Len: 16})
	require.NoError(t, r.kick.Signal())
	select {
	case err := <-r.failed:
		assert.ErrorContains(t, err, "status")
	case <-time.After(10 * time.Second):
		t.Fatal("no failure reported")
	}
}

func TestBrokenQueueNeedsReset(t *testing.T) {
	r := newRig(t, 1<<20, disk.Options{}, 0)
	r.drv.WriteRawDesc(0, 0x1000, 16, 1, 0) // loops onto itself
	r.drv.Publish(0)
	require.NoError(t, r.kick.Signal())
	select {
	case err := <-r.failed:
		assert.ErrorIs(t, err, virtio.ErrBroken)
	case <-time.After(10 * time.Second):
		t.Fatal("no failure reported")
	}
	// Reset stops the worker even though the queue is broken.
	r.dev.Reset()
}

func TestConfig(t *testing.T) {
	r := newRig(t, 1<<20, disk.Options{}, 0)
	c := make([]byte, configSize+8)
	r.dev.ReadConfig(0, c)
	le := binary.LittleEndian
	assert.Equal(t, uint64(2048), le.Uint64(c[cfgCapacity:]))
	assert.Equal(t, uint32(254), le.Uint32(c[cfgSegMax:]))
	assert.Equal(t, uint32(512), le.Uint32(c[cfgBlkSize:]))
	assert.Equal(t, uint16(1), le.Uint16(c[cfgNumQueues:]))
	assert.Equal(t, byte(1), c[cfgWriteback])
	assert.Equal(t, make([]byte, 8), c[configSize:], "past the end reads 0")
	r.dev.WriteConfig(0, []byte{1, 2, 3})
	r.dev.ReadConfig(0, c[:8])
	assert.Equal(t, uint64(2048), le.Uint64(c))
	f := r.dev.Features()
	for _, b := range []uint64{FeatureSizeMax, FeatureSegMax, FeatureBlkSize, FeatureFlush, FeatureDiscard, FeatureWriteZeroes,
		virtio.FeatureIndirectDesc, virtio.FeatureEventIdx} {
		assert.NotZero(t, f&b, "feature %#x", b)
	}
	assert.Zero(t, f&FeatureMQ, "one queue")
}
