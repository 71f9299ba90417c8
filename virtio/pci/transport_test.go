package pci

import (
	"encoding/binary"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	devpci "github.com/gvmm/gvmm/devices/pci"
	"github.com/gvmm/gvmm/eventfd"
	"github.com/gvmm/gvmm/memory"
	"github.com/gvmm/gvmm/virtio"
	"github.com/gvmm/gvmm/virtio/virtiotest"
)

// fakeDevice is a virtio device that records what the transport does.
type fakeDevice struct {
	mu        sync.Mutex
	activated *virtio.Activation
	resets    int
	reject    bool
	cfg       [8]byte
}

func (d *fakeDevice) Type() virtio.DeviceType { return virtio.TypeBlock }
func (d *fakeDevice) Features() uint64 {
	return 1<<9 | virtio.FeatureEventIdx | virtio.FeatureIndirectDesc
}
func (d *fakeDevice) NumQueues() int       { return 2 }
func (d *fakeDevice) MaxQueueSize() uint16 { return 64 }
func (d *fakeDevice) ConfigSize() int      { return len(d.cfg) }
func (d *fakeDevice) ReadConfig(off uint64, data []byte) {
	for i := range data {
		if o := off + uint64(i); o < uint64(len(d.cfg)) {
			data[i] = d.cfg[o]
		}
	}
}
func (d *fakeDevice) WriteConfig(uint64, []byte) {}
func (d *fakeDevice) AcceptFeatures(uint64) error {
	if d.reject {
		return assert.AnError
	}
	return nil
}
func (d *fakeDevice) Activate(a virtio.Activation) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.activated = &a
	return nil
}
func (d *fakeDevice) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.activated = nil
	d.resets++
}

type vec struct {
	mu       sync.Mutex
	triggers int
	msg      devpci.MSIMessage
}

func (v *vec) SetMessage(m devpci.MSIMessage) error {
	v.mu.Lock()
	v.msg = m
	v.mu.Unlock()
	return nil
}
func (v *vec) Trigger() error { v.mu.Lock(); v.triggers++; v.mu.Unlock(); return nil }

type line struct {
	mu     sync.Mutex
	high   bool
	raised int
}

func (l *line) SetLevel(h bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if h && !l.high {
		l.raised++
	}
	l.high = h
}

type ioev struct {
	mu   sync.Mutex
	regs map[uint64]*eventfd.EventFD
}

func (e *ioev) RegisterIOEvent(addr uint64, n uint32, ev *eventfd.EventFD) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.regs[addr] = ev
	return nil
}
func (e *ioev) UnregisterIOEvent(addr uint64, n uint32, ev *eventfd.EventFD) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.regs, addr)
	return nil
}

type harness struct {
	t    *testing.T
	tr   *Transport
	dev  *fakeDevice
	vecs []*vec
	intx *line
	ev   *ioev
	mem  *memory.Guest
}

func newHarness(t *testing.T) *harness {
	g, err := memory.New(memory.MinSize)
	require.NoError(t, err)
	t.Cleanup(func() { g.Close() })
	h := &harness{t: t, dev: &fakeDevice{}, intx: &line{}, ev: &ioev{regs: map[uint64]*eventfd.EventFD{}}, mem: g}
	var vs []devpci.MSIVector
	for i := 0; i < 3; i++ {
		v := &vec{}
		h.vecs = append(h.vecs, v)
		vs = append(vs, v)
	}
	h.tr, err = New(Config{Device: h.dev, Mem: g, Vectors: vs, INTx: h.intx, IOEvents: h.ev})
	require.NoError(t, err)
	t.Cleanup(func() { h.tr.Close() })
	return h
}

func (h *harness) w(off uint64, v uint64, n int) {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint64(b, v)
	h.tr.bar0Access(off, b[:n], true)
}

func (h *harness) r(off uint64, n int) uint64 {
	b := make([]byte, 8)
	h.tr.bar0Access(off, b[:n], false)
	return binary.LittleEndian.Uint64(b)
}

// TestLinuxInit walks the transport through what Linux's virtio_pci
// (modern) and virtio core do at probe (virtio 1.2 section 3.1.1).
func TestLinuxInit(t *testing.T) {
	h := newHarness(t)
	f := h.tr.Function()

	// Identity and capabilities.
	cfg := make([]byte, 0x100)
	f.ReadConfig(0, cfg)
	le := binary.LittleEndian
	assert.Equal(t, uint16(0x1AF4), le.Uint16(cfg[0:]))
	assert.Equal(t, uint16(0x1042), le.Uint16(cfg[2:]))
	assert.Equal(t, byte(1), cfg[devpci.RegRevision])
	types := map[byte]byte{}
	for p := cfg[devpci.RegCapPtr]; p != 0; p = cfg[p+1] {
		if cfg[p] == capVendor {
			types[cfg[p+3]] = cfg[p+4]
		} else {
			assert.Equal(t, byte(devpci.CapIDMSIX), cfg[p])
		}
	}
	assert.Equal(t, map[byte]byte{cfgTypeCommon: 0, cfgTypeNotify: 0, cfgTypeISR: 0, cfgTypeDevice: 0, cfgTypePCI: 0}, types)

	// The root would assign BAR 0; do it as firmware does.
	f.Assign(0, 0xC000_0000, devpci.CommandMemory)
	assert.Len(t, h.ev.regs, 2, "a notification ioeventfd per queue")
	assert.Contains(t, h.ev.regs, uint64(0xC000_0000+notifyOff+4))
	f.Assign(0, 0xD000_0000, devpci.CommandMemory)
	assert.Contains(t, h.ev.regs, uint64(0xD000_0000+notifyOff), "moved with the BAR")
	assert.NotContains(t, h.ev.regs, uint64(0xC000_0000+notifyOff))

	// Reset, ACKNOWLEDGE, DRIVER.
	h.w(ccDeviceStatus, 0, 1)
	assert.Zero(t, h.r(ccDeviceStatus, 1))
	h.w(ccDeviceStatus, uint64(virtio.StatusAcknowledge), 1)
	h.w(ccDeviceStatus, uint64(virtio.StatusAcknowledge|virtio.StatusDriver), 1)
	// Features.
	h.w(ccDeviceFeatureSelect, 0, 4)
	lo := h.r(ccDeviceFeature, 4)
	h.w(ccDeviceFeatureSelect, 1, 4)
	hi := h.r(ccDeviceFeature, 4)
	offered := lo | hi<<32
	assert.Equal(t, h.dev.Features()|virtio.FeatureVersion1, offered)
	h.w(ccDriverFeatureSelect, 0, 4)
	h.w(ccDriverFeature, uint64(uint32(offered)), 4)
	h.w(ccDriverFeatureSelect, 1, 4)
	h.w(ccDriverFeature, offered>>32, 4)
	h.w(ccDeviceStatus, uint64(virtio.StatusAcknowledge|virtio.StatusDriver|virtio.StatusFeaturesOK), 1)
	assert.NotZero(t, h.r(ccDeviceStatus, 1)&uint64(virtio.StatusFeaturesOK))

	// MSI-X on, config vector 0.
	f.WriteConfig(0x42, []byte{0x02, 0x80})
	h.w(ccConfigMSIXVector, 0, 2)
	assert.Equal(t, uint64(0), h.r(ccConfigMSIXVector, 2))
	h.w(ccConfigMSIXVector, 7, 2)
	assert.Equal(t, uint64(NoVector), h.r(ccConfigMSIXVector, 2), "no such vector reads back NO_VECTOR")
	h.w(ccConfigMSIXVector, 0, 2)

	// Queues.
	assert.Equal(t, uint64(2), h.r(ccNumQueues, 2))
	drivers := []*virtiotest.Driver{}
	for q := 0; q < 2; q++ {
		h.w(ccQueueSelect, uint64(q), 2)
		assert.Equal(t, uint64(64), h.r(ccQueueSize, 2))
		d := virtiotest.NewDriver(h.mem, uint64(0x100000*(q+1)), 32, offered, 0)
		drivers = append(drivers, d)
		h.w(ccQueueSize, 32, 2)
		// 64-bit fields as two 32-bit halves (vp_iowrite64_twopart).
		h.w(ccQueueDesc, d.Desc&0xFFFFFFFF, 4)
		h.w(ccQueueDesc+4, d.Desc>>32, 4)
		h.w(ccQueueDriver, d.Avail, 8)
		h.w(ccQueueDevice, d.UsedRing, 8)
		h.w(ccQueueMSIXVector, uint64(q+1), 2)
		assert.Equal(t, uint64(q+1), h.r(ccQueueMSIXVector, 2))
		assert.Equal(t, uint64(q), h.r(ccQueueNotifyOff, 2))
	}
	h.w(ccQueueSelect, 5, 2)
	assert.Zero(t, h.r(ccQueueSize, 2), "no queue 5")
	for q := 0; q < 2; q++ {
		h.w(ccQueueSelect, uint64(q), 2)
		h.w(ccQueueEnable, 1, 2)
		assert.Equal(t, uint64(1), h.r(ccQueueEnable, 2))
	}
	h.w(ccDeviceStatus, uint64(virtio.StatusAcknowledge|virtio.StatusDriver|virtio.StatusFeaturesOK|virtio.StatusDriverOK), 1)
	a := h.dev.activated
	require.NotNil(t, a, "activated at DRIVER_OK")
	assert.Equal(t, offered, a.Features)
	require.Len(t, a.Queues, 2)
	assert.Equal(t, uint16(32), a.Queues[1].Queue.Size())

	// Notification through the MMIO handler signals the kick.
	h.w(notifyOff+4, 1, 2)
	assert.True(t, a.Queues[1].Kick.Signalled())

	// Program and unmask vector 2; queue 1's interrupt goes there.
	var entry [16]byte
	le.PutUint64(entry[0:], 0xFEE0_0000)
	le.PutUint32(entry[8:], 0x31)
	h.tr.bar0Access(msixTableOff+2*16, entry[:8], true)
	h.tr.bar0Access(msixTableOff+2*16+8, entry[8:12], true)
	h.tr.bar0Access(msixTableOff+2*16+12, entry[12:16], true)
	a.Interrupt.NotifyQueue(1)
	assert.Equal(t, 1, h.vecs[2].triggers)
	assert.Equal(t, devpci.MSIMessage{Address: 0xFEE0_0000, Data: 0x31}, h.vecs[2].msg)
	assert.Zero(t, h.intx.raised, "no INTx with MSI-X on")

	// A device failure: NEEDS_RESET and a config interrupt (vector 0 is
	// masked: pending).
	a.Fail(assert.AnError)
	assert.NotZero(t, h.r(ccDeviceStatus, 1)&uint64(virtio.StatusDeviceNeedsReset))
	assert.ErrorIs(t, h.tr.Failure(), assert.AnError)

	// Reset.
	h.w(ccDeviceStatus, 0, 1)
	assert.Zero(t, h.r(ccDeviceStatus, 1))
	assert.Nil(t, h.dev.activated)
	h.w(ccQueueSelect, 0, 2)
	assert.Zero(t, h.r(ccQueueEnable, 2))
	assert.Equal(t, uint64(64), h.r(ccQueueSize, 2))
	assert.Equal(t, uint64(NoVector), h.r(ccQueueMSIXVector, 2))
}

func TestINTxAndISR(t *testing.T) {
	h := newHarness(t)
	h.tr.NotifyQueue(0)
	assert.True(t, h.intx.high)
	assert.Equal(t, uint64(isrQueue), h.r(isrOff, 1), "reading the ISR acknowledges")
	assert.False(t, h.intx.high)
	assert.Zero(t, h.r(isrOff, 1))
	h.tr.NotifyConfig()
	assert.Equal(t, uint64(isrConfig), h.r(isrOff, 1))
	h.tr.NotifyQueue(9) // no such queue: nothing
	assert.False(t, h.intx.high)
}

func TestFeatureNegotiationFails(t *testing.T) {
	h := newHarness(t)
	set := func(s uint8) { h.w(ccDeviceStatus, uint64(s), 1) }
	set(virtio.StatusAcknowledge | virtio.StatusDriver)
	// No VERSION_1: FEATURES_OK does not stick.
	h.w(ccDriverFeature, 1<<9, 4)
	set(virtio.StatusAcknowledge | virtio.StatusDriver | virtio.StatusFeaturesOK)
	assert.Zero(t, h.r(ccDeviceStatus, 1)&uint64(virtio.StatusFeaturesOK))
	// A feature the device did not offer.
	h.w(ccDriverFeatureSelect, 1, 4)
	h.w(ccDriverFeature, 1|1<<2, 4)
	set(virtio.StatusAcknowledge | virtio.StatusDriver | virtio.StatusFeaturesOK)
	assert.Zero(t, h.r(ccDeviceStatus, 1)&uint64(virtio.StatusFeaturesOK))
	// DRIVER_OK without FEATURES_OK: the device asks for a reset.
	set(virtio.StatusAcknowledge | virtio.StatusDriver | virtio.StatusDriverOK)
	assert.Nil(t, h.dev.activated)
	assert.NotZero(t, h.r(ccDeviceStatus, 1)&uint64(virtio.StatusDeviceNeedsReset))
}

func TestBadQueueNeedsReset(t *testing.T) {
	h := newHarness(t)
	set := func(s uint8) { h.w(ccDeviceStatus, uint64(s), 1) }
	set(virtio.StatusAcknowledge | virtio.StatusDriver)
	h.w(ccDriverFeatureSelect, 1, 4)
	h.w(ccDriverFeature, 1, 4)
	set(virtio.StatusAcknowledge | virtio.StatusDriver | virtio.StatusFeaturesOK)
	h.w(ccQueueSelect, 0, 2)
	h.w(ccQueueSize, 3, 2) // not a power of 2
	h.w(ccQueueEnable, 1, 2)
	set(virtio.StatusAcknowledge | virtio.StatusDriver | virtio.StatusFeaturesOK | virtio.StatusDriverOK)
	assert.Nil(t, h.dev.activated)
	assert.NotZero(t, h.r(ccDeviceStatus, 1)&uint64(virtio.StatusDeviceNeedsReset))
	assert.ErrorIs(t, h.tr.Failure(), virtio.ErrBroken)
}

func TestPCICfgCapAndOddAccesses(t *testing.T) {
	h := newHarness(t)
	f := h.tr.Function()
	// Find the PCI configuration access capability.
	cfg := make([]byte, 0x100)
	f.ReadConfig(0, cfg)
	var p byte
	for p = cfg[devpci.RegCapPtr]; p != 0; p = cfg[p+1] {
		if cfg[p] == capVendor && cfg[p+3] == cfgTypePCI {
			break
		}
	}
	require.NotZero(t, p)
	// Read num_queues (common config 0x12, 2 bytes) through it.
	f.WriteConfig(uint64(p)+capOffBar, []byte{0})
	f.WriteConfig(uint64(p)+capOffOffset, []byte{ccNumQueues, 0, 0, 0})
	f.WriteConfig(uint64(p)+capOffLength, []byte{2, 0, 0, 0})
	b := make([]byte, 4)
	f.ReadConfig(uint64(p)+capOffExtra, b)
	assert.Equal(t, uint16(2), binary.LittleEndian.Uint16(b))

	// Whatever the guest does to BAR 0 must not panic.
	for off := uint64(0); off < bar0Size+16; off += 3 {
		for _, n := range []int{1, 2, 3, 4, 8} {
			h.tr.bar0Access(off, make([]byte, n), false)
			h.tr.bar0Access(off, []byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}[:n], true)
		}
	}
}
