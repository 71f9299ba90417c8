package net

import (
	"bytes"
	"encoding/binary"
	"errors"
	stdnet "net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gvmm/gvmm/eventfd"
	"github.com/gvmm/gvmm/memory"
	"github.com/gvmm/gvmm/virtio"
	"github.com/gvmm/gvmm/virtio/virtiotest"
)

// fakeBackend is a Backend in memory: frames queued with deliver are
// read by the device, frames the device writes are recorded.
type fakeBackend struct {
	mu       sync.Mutex
	rx       chan []byte
	tx       [][]byte
	offloads []Offloads
	cancel   chan struct{}
	idles    int
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{rx: make(chan []byte, 1024), cancel: make(chan struct{})}
}

func (f *fakeBackend) ReadFrame(bufs [][]byte, idle func()) (int, error) {
	f.mu.Lock()
	cancel := f.cancel
	f.mu.Unlock()
	var fr []byte
	select {
	case fr = <-f.rx:
	default:
		if idle != nil {
			f.mu.Lock()
			f.idles++
			f.mu.Unlock()
			idle()
		}
		select {
		case fr = <-f.rx:
		case <-cancel:
			return 0, os.ErrDeadlineExceeded
		}
	}
	// A tap fills the buffers in order and drops what does not fit.
	n := 0
	for _, b := range bufs {
		n += copy(b, fr[n:])
	}
	if n < len(fr) {
		return 0, errors.New("frame larger than the buffers")
	}
	return n, nil
}

func (f *fakeBackend) WriteFrame(bufs [][]byte) (int, error) {
	var b []byte
	for _, x := range bufs {
		b = append(b, x...)
	}
	f.mu.Lock()
	f.tx = append(f.tx, b)
	f.mu.Unlock()
	return len(b), nil
}

func (f *fakeBackend) SetOffload(o Offloads) error {
	f.mu.Lock()
	f.offloads = append(f.offloads, o)
	f.mu.Unlock()
	return nil
}

func (f *fakeBackend) SetDeadline(t time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t.IsZero() {
		f.cancel = make(chan struct{})
	} else if t.Before(time.Now()) {
		close(f.cancel)
	}
	return nil
}

func (f *fakeBackend) sent() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.tx...)
}

// fakeIRQ counts the used buffer notifications of each queue, and wakes
// a driver waiting on wake[queue] (buffered, so none is lost).
type fakeIRQ struct {
	mu    sync.Mutex
	count map[int]int
	wake  [2]chan struct{}
}

func newFakeIRQ() *fakeIRQ {
	return &fakeIRQ{count: map[int]int{}, wake: [2]chan struct{}{make(chan struct{}, 1), make(chan struct{}, 1)}}
}

func (f *fakeIRQ) NotifyQueue(i int) {
	f.mu.Lock()
	f.count[i]++
	f.mu.Unlock()
	if i >= 0 && i < len(f.wake) {
		select {
		case f.wake[i] <- struct{}{}:
		default:
		}
	}
}

func (f *fakeIRQ) NotifyConfig() {}

// rig is a network device on a fake backend, driven by fake drivers of
// its two queues in a memory-backed guest.
type rig struct {
	t        testing.TB
	mem      *memory.Guest
	dev      *Device
	be       *fakeBackend
	rx, tx   *virtiotest.Driver
	rxKick   *eventfd.EventFD
	txKick   *eventfd.EventFD
	irq      *fakeIRQ
	failed   chan error
	features uint64
}

const allFeatures = FeatureCSum | FeatureGuestCSum | FeatureMAC | FeatureStatus | FeatureMrgRxBuf |
	FeatureGuestTSO4 | FeatureGuestTSO6 | FeatureGuestECN | FeatureHostTSO4 | FeatureHostTSO6 |
	FeatureHostECN | FeatureHostUFO | virtio.FeatureVersion1 | virtio.FeatureIndirectDesc | virtio.FeatureEventIdx

func newRig(t testing.TB, features uint64, manual bool) *rig {
	g, err := memory.New(64 << 20)
	require.NoError(t, err)
	t.Cleanup(func() { g.Close() })
	be := newFakeBackend()
	dev, err := New(Config{Backend: be, MAC: stdnet.HardwareAddr{0x52, 0x54, 0, 0x12, 0x34, 0x56}, ManualReceive: manual})
	require.NoError(t, err)
	r := &rig{t: t, mem: g, dev: dev, be: be, irq: newFakeIRQ(), failed: make(chan error, 8), features: features}
	r.rxKick, err = eventfd.New()
	require.NoError(t, err)
	r.txKick, err = eventfd.New()
	require.NoError(t, err)
	t.Cleanup(func() { r.rxKick.Close(); r.txKick.Close() })
	r.activate()
	t.Cleanup(dev.Reset)
	return r
}

// activate lays out fresh queues and activates the device on them.
func (r *rig) activate() {
	t := r.t
	r.rx = virtiotest.NewDriver(r.mem, 0x10000, 256, r.features, 16<<20)
	r.tx = virtiotest.NewDriver(r.mem, 0x2000000, 256, r.features, 16<<20)
	rq, err := virtio.NewQueue(r.mem, r.rx.Config())
	require.NoError(t, err)
	tq, err := virtio.NewQueue(r.mem, r.tx.Config())
	require.NoError(t, err)
	require.NoError(t, r.dev.AcceptFeatures(r.features))
	require.NoError(t, r.dev.Activate(virtio.Activation{
		Features: r.features, Mem: r.mem, Interrupt: r.irq,
		Queues: []virtio.ActiveQueue{{Queue: rq, Kick: r.rxKick}, {Queue: tq, Kick: r.txKick}},
		Fail:   func(err error) { r.failed <- err },
	}))
}

// restart resets the device and activates it on fresh queues.
func (r *rig) restart() {
	r.dev.Reset()
	r.activate()
}

// hdr returns a header's wire bytes.
func hdr(h Header) []byte {
	var b [HeaderSize]byte
	h.Encode(&b)
	return b[:]
}

// ethFrame is an Ethernet frame of n bytes whose contents depend on seed.
func ethFrame(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed
	}
	return b
}

func (r *rig) waitFor(cond func() bool, what string) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		select {
		case err := <-r.failed:
			r.t.Fatalf("device failed: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestAcceptFeatures(t *testing.T) {
	d, err := New(Config{Backend: newFakeBackend(), MAC: DerivedMAC("tap0")})
	require.NoError(t, err)
	v1 := virtio.FeatureVersion1
	cases := []struct {
		name     string
		features uint64
		err      string
	}{
		{"everything offered", d.Features() | v1, ""},
		{"nothing but VERSION_1", v1, ""},
		{"Linux's usual set", v1 | FeatureCSum | FeatureGuestCSum | FeatureMAC | FeatureStatus | FeatureMrgRxBuf | FeatureGuestTSO4 | FeatureHostTSO4, ""},
		{"no VERSION_1", FeatureMAC, "VERSION_1"},
		{"GUEST_TSO4 without GUEST_CSUM", v1 | FeatureGuestTSO4, "GUEST_TSO4 without GUEST_CSUM"},
		{"GUEST_TSO6 without GUEST_CSUM", v1 | FeatureGuestTSO6, "GUEST_TSO6 without GUEST_CSUM"},
		{"GUEST_ECN without TSO", v1 | FeatureGuestCSum | FeatureGuestECN, "GUEST_ECN without"},
		{"GUEST_UFO without GUEST_CSUM", v1 | FeatureGuestUFO, "GUEST_UFO without GUEST_CSUM"},
		{"HOST_TSO4 without CSUM", v1 | FeatureHostTSO4, "HOST_TSO4 without CSUM"},
		{"HOST_TSO6 without CSUM", v1 | FeatureHostTSO6, "HOST_TSO6 without CSUM"},
		{"HOST_ECN without TSO", v1 | FeatureCSum | FeatureHostECN, "HOST_ECN without"},
		{"HOST_UFO without CSUM", v1 | FeatureHostUFO, "HOST_UFO without CSUM"},
		{"a feature not offered (CTRL_VQ)", v1 | 1<<17, "not offered"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := d.AcceptFeatures(c.features)
			if c.err == "" {
				assert.NoError(t, err)
			} else {
				assert.ErrorContains(t, err, c.err)
			}
		})
	}
}

func TestOffloadsFollowNegotiation(t *testing.T) {
	v1 := virtio.FeatureVersion1
	cases := []struct {
		name     string
		features uint64
		want     Offloads
	}{
		{"none", v1, Offloads{}},
		{"checksum only", v1 | FeatureGuestCSum, Offloads{CSum: true}},
		{"TSO4 and TSO6 with ECN", v1 | FeatureGuestCSum | FeatureGuestTSO4 | FeatureGuestTSO6 | FeatureGuestECN,
			Offloads{CSum: true, TSO4: true, TSO6: true, ECN: true}},
		{"UFO", v1 | FeatureGuestCSum | FeatureGuestUFO, Offloads{CSum: true, UFO: true}},
		{"host side only: nothing for the guest", v1 | FeatureCSum | FeatureHostTSO4, Offloads{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, c.features, true)
			assert.Equal(t, []Offloads{c.want}, r.be.offloads)
		})
	}
}

func TestConfigSpace(t *testing.T) {
	d, err := New(Config{Backend: newFakeBackend(), MAC: stdnet.HardwareAddr{0x52, 0x54, 0, 0x12, 0x34, 0x56}})
	require.NoError(t, err)
	b := make([]byte, 12)
	d.ReadConfig(0, b)
	assert.Equal(t, []byte{0x52, 0x54, 0, 0x12, 0x34, 0x56, 1, 0, 1, 0, 0, 0}, b, "MAC, status LINK_UP, 1 queue pair, zeros beyond")
	d.WriteConfig(0, []byte{1, 2, 3, 4, 5, 6})
	d.ReadConfig(0, b[:6])
	assert.Equal(t, []byte{0x52, 0x54, 0, 0x12, 0x34, 0x56}, b[:6], "the MAC is read-only")
	assert.Equal(t, virtio.TypeNet, d.Type())
	assert.Equal(t, 2, d.NumQueues())
}

func TestMACs(t *testing.T) {
	a, b := DerivedMAC("tap0"), DerivedMAC("tap1")
	assert.Equal(t, a, DerivedMAC("tap0"), "stable")
	assert.NotEqual(t, a, b)
	for _, m := range []stdnet.HardwareAddr{a, b} {
		assert.Equal(t, byte(0x02), m[0]&0x03, "locally administered unicast: %v", m)
		assert.NoError(t, CheckMAC(m))
	}
	assert.Error(t, CheckMAC(stdnet.HardwareAddr{1, 0, 0x5e, 0, 0, 1}))
	assert.Error(t, CheckMAC(stdnet.HardwareAddr{0, 0, 0, 0, 0, 0}))
	assert.Error(t, CheckMAC(stdnet.HardwareAddr{0x52, 0x54, 0, 0x12, 0x34}))
}

func TestParseTX(t *testing.T) {
	frame := ethFrame(100, 1)
	all := allFeatures
	cases := []struct {
		name     string
		h        Header
		frameLen int
		features uint64
		ok       bool
	}{
		{"plain", Header{}, 100, all, true},
		{"partial checksum", Header{Flags: FlagNeedsCSum, CSumStart: 34, CSumOff: 16}, 100, all, true},
		{"checksum at the very end", Header{Flags: FlagNeedsCSum, CSumStart: 90, CSumOff: 8}, 100, all, true},
		{"checksum past the end", Header{Flags: FlagNeedsCSum, CSumStart: 90, CSumOff: 9}, 100, all, false},
		{"checksum without CSUM", Header{Flags: FlagNeedsCSum, CSumStart: 34, CSumOff: 16}, 100, virtio.FeatureVersion1, false},
		{"DATA_VALID on transmit", Header{Flags: FlagDataValid}, 100, all, false},
		{"TSO4", Header{Flags: FlagNeedsCSum, GSOType: GSOTCPv4, GSOSize: 1448, HdrLen: 54, CSumStart: 34, CSumOff: 16}, 100, all, true},
		{"TSO6 with ECN", Header{Flags: FlagNeedsCSum, GSOType: GSOTCPv6 | GSOECN, GSOSize: 1428, CSumStart: 54, CSumOff: 16}, 100, all, true},
		{"TSO4 without HOST_TSO4", Header{Flags: FlagNeedsCSum, GSOType: GSOTCPv4, GSOSize: 1448, CSumStart: 34, CSumOff: 16}, 100, virtio.FeatureVersion1 | FeatureCSum, false},
		{"TSO4 without NEEDS_CSUM", Header{GSOType: GSOTCPv4, GSOSize: 1448}, 100, all, false},
		{"TSO4 with gso_size 0", Header{Flags: FlagNeedsCSum, GSOType: GSOTCPv4, CSumStart: 34, CSumOff: 16}, 100, all, false},
		{"unknown GSO type", Header{Flags: FlagNeedsCSum, GSOType: 2, GSOSize: 1000, CSumStart: 34, CSumOff: 16}, 100, all, false},
		{"ECN alone", Header{GSOType: GSOECN}, 100, all, false},
		{"hdr_len past the end", Header{HdrLen: 101}, 100, all, false},
		{"runt frame", Header{}, 13, all, false},
		{"largest frame", Header{}, MaxFrame, all, true},
		{"too large", Header{}, MaxFrame + 1, all, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := ethFrame(c.frameLen, 3)
			if c.frameLen == 100 {
				body = frame
			}
			h := c.h
			h.NumBuffers = 7 // the driver's garbage: zeroed on the way out
			in := append(hdr(h), body...)
			// Split it across three buffers, one cut inside the header.
			cut := min(40, len(in))
			iov := virtio.IOVec{in[:5], in[5:cut], in[cut:]}
			var f TXFrame
			err := ParseTX(iov, c.features, &f)
			if !c.ok {
				require.Error(t, err)
				assert.ErrorIs(t, err, ErrMalformed)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, c.frameLen, f.Len)
			var got []byte
			for _, b := range f.Frame {
				got = append(got, b...)
			}
			assert.Equal(t, body, got)
			h.NumBuffers = 0
			assert.Equal(t, hdr(h), f.Wire[:])
		})
	}
}

func TestPlace(t *testing.T) {
	cases := []struct {
		name      string
		frameLen  int
		caps      []uint64
		mergeable bool
		want      []uint32
		err       bool
	}{
		{"fits one", 100, []uint64{1526, 1526}, true, []uint32{100}, false},
		{"exactly one", 1526, []uint64{1526, 1526}, true, []uint32{1526}, false},
		{"spans three", 4000, []uint64{1526, 1526, 1526}, true, []uint32{1526, 1526, 948}, false},
		{"short of buffers", 4000, []uint64{1526, 1526}, true, []uint32{1526, 1526}, true},
		{"not mergeable: one chain only", 2000, []uint64{1526, 1526}, false, []uint32{1526}, true},
		{"not mergeable: fits", 1500, []uint64{65562}, false, []uint32{1500}, false},
		{"first buffer below a header", 100, []uint64{8, 1526}, true, nil, true},
		{"frame below a header", 5, []uint64{1526}, true, nil, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Place(c.frameLen, c.caps, c.mergeable, nil)
			assert.Equal(t, c.err, err != nil, "%v", err)
			if len(c.want) > 0 || len(got) > 0 {
				assert.Equal(t, c.want, got)
			}
		})
	}
}

// txFrame queues a transmit chain of hdr+frame split in the given sizes
// (the last takes the rest).
func (r *rig) queueTX(b []byte, splits ...int) uint16 {
	var descs []virtiotest.Desc
	for _, n := range splits {
		descs = append(descs, virtiotest.Desc{Addr: r.tx.Put(b[:n]), Len: uint32(n)})
		b = b[n:]
	}
	descs = append(descs, virtiotest.Desc{Addr: r.tx.Put(b), Len: uint32(len(b))})
	head, ok := r.tx.Add(descs...)
	require.True(r.t, ok)
	return head
}

func TestTransmit(t *testing.T) {
	r := newRig(t, allFeatures, false)
	good := append(hdr(Header{Flags: FlagNeedsCSum, CSumStart: 34, CSumOff: 16, NumBuffers: 3}), ethFrame(1500, 1)...)
	tso := append(hdr(Header{Flags: FlagNeedsCSum, GSOType: GSOTCPv4, GSOSize: 1448, HdrLen: 66, CSumStart: 34, CSumOff: 16}), ethFrame(65000, 2)...)
	bad := append(hdr(Header{Flags: FlagDataValid}), ethFrame(100, 3)...)
	short := []byte{1, 2, 3}
	r.queueTX(good, 12)
	r.queueTX(tso, 6, 30000)
	r.queueTX(bad)
	r.queueTX(short)
	// The descriptor table as the driver wrote it.
	table := r.tx.Get(r.tx.Desc, 16*256)
	require.NoError(t, r.txKick.Signal())
	r.waitFor(func() bool { s := r.dev.Stats(); return s.TXFrames+s.TXMalformed == 4 }, "4 frames")
	r.waitFor(func() bool {
		return r.tx.Free() == 256 || func() bool { _, _, ok := r.tx.Used(); return !ok && r.tx.Free() == 256 }()
	}, "every chain back")
	sent := r.be.sent()
	require.Len(t, sent, 2)
	wantGood := append([]byte(nil), good...)
	binary.LittleEndian.PutUint16(wantGood[hdrNumBuffers:], 0)
	assert.True(t, bytes.Equal(wantGood, sent[0]), "header (num_buffers zeroed) and frame as the driver gave them")
	assert.True(t, bytes.Equal(tso, sent[1]), "a 64 KiB TSO frame in one write")
	s := r.dev.Stats()
	assert.Equal(t, Stats{TXFrames: 2, TXBytes: 1500 + 65000, TXMalformed: 2}, s)
	assert.Equal(t, table, r.tx.Get(r.tx.Desc, 16*256), "descriptors untouched")
}

// postRX makes n receive chains of size bytes each available.
func (r *rig) postRX(n int, size uint32) []uint64 {
	var addrs []uint64
	for range n {
		a := r.rx.Alloc(uint64(size), 64)
		addrs = append(addrs, a)
		_, ok := r.rx.Add(virtiotest.Desc{Addr: a, Len: size, Write: true})
		require.True(r.t, ok)
	}
	return addrs
}

type usedElem struct {
	head uint16
	len  uint32
}

func (r *rig) usedRX() []usedElem {
	var out []usedElem
	for {
		h, n, ok := r.rx.Used()
		if !ok {
			return out
		}
		out = append(out, usedElem{h, n})
	}
}

func TestReceiveMergeable(t *testing.T) {
	r := newRig(t, allFeatures, true)
	const bufSize = 1526
	addrs := r.postRX(200, bufSize)
	table := r.rx.Get(r.rx.Desc, 16*256)
	frames := [][]byte{
		append(hdr(Header{}), ethFrame(60, 1)...),                                                                                      // one buffer
		append(hdr(Header{Flags: FlagDataValid}), ethFrame(bufSize-HeaderSize, 2)...),                                                  // exactly one
		append(hdr(Header{Flags: FlagNeedsCSum, GSOType: GSOTCPv4, GSOSize: 1448, CSumStart: 34, CSumOff: 16}), ethFrame(65000, 3)...), // 43 buffers
		append(hdr(Header{}), ethFrame(3000, 4)...),                                                                                    // 2 buffers and a bit
	}
	for _, f := range frames {
		r.be.rx <- f
	}
	require.NoError(t, r.dev.Receive(len(frames)))
	used := r.usedRX()
	next := 0
	for i, f := range frames {
		k := (len(f) + bufSize - 1) / bufSize
		require.GreaterOrEqual(t, len(used), next+k, "frame %d", i)
		var got []byte
		for j := 0; j < k; j++ {
			u := used[next+j]
			want := uint32(min(bufSize, len(f)-j*bufSize))
			assert.Equal(t, want, u.len, "frame %d buffer %d", i, j)
			got = append(got, r.rx.Get(addrs[next+j], int(u.len))...)
		}
		nb := binary.LittleEndian.Uint16(got[hdrNumBuffers:])
		assert.Equal(t, uint16(k), nb, "frame %d: num_buffers", i)
		want := append([]byte(nil), f...)
		binary.LittleEndian.PutUint16(want[hdrNumBuffers:], uint16(k))
		assert.True(t, bytes.Equal(want, got), "frame %d arrives whole", i)
		next += k
	}
	assert.Equal(t, next, len(used))
	s := r.dev.Stats()
	assert.Equal(t, uint64(len(frames)), s.RXFrames)
	assert.Zero(t, s.RXDropped+s.RXMalformed)
	assert.Equal(t, table, r.rx.Get(r.rx.Desc, 16*256), "descriptors untouched")
	assert.Positive(t, r.irq.count[rxQueue], "the driver was interrupted")
}

// TestReceiveWaitsForBuffers: a frame larger than the buffers the driver
// has given waits, spilled, for more, and then arrives whole.
func TestReceiveWaitsForBuffers(t *testing.T) {
	r := newRig(t, allFeatures, false)
	const bufSize = 2048
	addrs := r.postRX(2, bufSize)
	f := append(hdr(Header{}), ethFrame(10000, 5)...)
	r.be.rx <- f
	time.Sleep(50 * time.Millisecond)
	assert.Empty(t, r.usedRX(), "nothing completes before the frame fits")
	addrs = append(addrs, r.postRX(4, bufSize)...)
	require.NoError(t, r.rxKick.Signal())
	var used []usedElem
	r.waitFor(func() bool { used = append(used, r.usedRX()...); return len(used) == 5 }, "5 buffers used")
	var got []byte
	for i, u := range used {
		got = append(got, r.rx.Get(addrs[i], int(u.len))...)
	}
	want := append([]byte(nil), f...)
	binary.LittleEndian.PutUint16(want[hdrNumBuffers:], 5)
	assert.True(t, bytes.Equal(want, got))
}

func TestReceiveNotMergeable(t *testing.T) {
	features := allFeatures &^ (FeatureMrgRxBuf | FeatureGuestTSO4 | FeatureGuestTSO6 | FeatureGuestECN)
	r := newRig(t, features, true)
	addrs := r.postRX(4, 1526)
	small := append(hdr(Header{}), ethFrame(1000, 6)...)
	big := append(hdr(Header{}), ethFrame(3000, 7)...)
	r.be.rx <- big
	r.be.rx <- small
	require.NoError(t, r.dev.Receive(2))
	used := r.usedRX()
	require.Len(t, used, 1, "the frame too big for one buffer is dropped")
	assert.Equal(t, uint32(len(small)), used[0].len)
	got := r.rx.Get(addrs[0], len(small))
	assert.Equal(t, uint16(1), binary.LittleEndian.Uint16(got[hdrNumBuffers:]), "num_buffers is 1")
	assert.True(t, bytes.Equal(small[HeaderSize:], got[HeaderSize:]))
	s := r.dev.Stats()
	assert.Equal(t, uint64(1), s.RXFrames)
	assert.Equal(t, uint64(1), s.RXDropped)
}

func TestReceiveBufferTooSmall(t *testing.T) {
	r := newRig(t, allFeatures, true)
	a := r.rx.Alloc(8, 8)
	_, ok := r.rx.Add(virtiotest.Desc{Addr: a, Len: 8, Write: true})
	require.True(t, ok)
	// A chain with only a device-readable buffer: no room at all.
	_, ok = r.rx.Add(virtiotest.Desc{Addr: r.rx.Alloc(64, 8), Len: 64})
	require.True(t, ok)
	addrs := r.postRX(1, 1526)
	f := append(hdr(Header{}), ethFrame(100, 8)...)
	r.be.rx <- f
	require.NoError(t, r.dev.Receive(1))
	used := r.usedRX()
	require.Len(t, used, 3)
	assert.Equal(t, uint32(0), used[0].len, "the 8-byte buffer comes back unused")
	assert.Equal(t, uint32(0), used[1].len, "so does the read-only one")
	assert.Equal(t, uint32(len(f)), used[2].len)
	assert.True(t, bytes.Equal(f[HeaderSize:], r.rx.Get(addrs[0]+HeaderSize, 100)))
	assert.Equal(t, uint64(2), r.dev.Stats().RXMalformed)
}

func TestBrokenQueueNeedsReset(t *testing.T) {
	r := newRig(t, allFeatures, false)
	// avail.idx far ahead of what the queue can hold.
	r.tx.SetAvailIdx(1000)
	require.NoError(t, r.txKick.Signal())
	select {
	case err := <-r.failed:
		assert.ErrorIs(t, err, virtio.ErrBroken)
	case <-time.After(10 * time.Second):
		t.Fatal("a broken transmit queue was not reported")
	}
}

// TestResetStopsWorkers: Reset returns while the receive worker waits on
// the backend and the transmit worker on its kick.
func TestResetStopsWorkers(t *testing.T) {
	r := newRig(t, allFeatures, false)
	r.postRX(4, 1526)
	require.NoError(t, r.rxKick.Signal())
	r.waitFor(func() bool { r.be.mu.Lock(); defer r.be.mu.Unlock(); return r.be.idles > 0 }, "the receiver to block")
	done := make(chan struct{})
	go func() { r.dev.Reset(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Reset hangs")
	}
}
