// Package net is the virtio network device (virtio 1.2 section 5.1): an
// Ethernet interface whose frames go to and come from a host backend, a
// tap device in gvmm (package virtio/net/tap).
//
// It offers MAC, STATUS (the link is always up), MRG_RXBUF, the checksum
// and segmentation offloads in both directions (CSUM, HOST_TSO4/6,
// HOST_ECN, HOST_UFO; GUEST_CSUM, GUEST_TSO4/6, GUEST_ECN and, where the
// tap takes it, GUEST_UFO), and the transport features INDIRECT_DESC and
// EVENT_IDX. There is one receive queue (0) and one transmit queue (1), no
// control queue.
//
// Frames keep their virtio_net_hdr all the way: the tap is opened with
// IFF_VNET_HDR and a 12-byte header, the layout of section 5.1.6 with
// VERSION_1, so a 64 KiB TSO segment crosses between guest and host in one
// system call, and the host's stack does the segmentation and the
// checksums. The offloads the driver accepts for its receive side are
// handed to the tap (TUNSETOFFLOAD) when the device starts, so the host
// only sends the guest what it agreed to take.
//
// Transmit runs on the transmit queue's kick (an ioeventfd, no exit to
// userspace, waited for through Go's netpoller): a worker takes every
// chain, checks its header (ParseTX), and writes header and frame to the
// tap with one writev straight from guest memory (the header from the
// checked copy). Receive runs on a
// goroutine that reads the tap through Go's netpoller (no signals, no
// polling ticker) with one readv straight into the driver's receive
// buffers: the device holds enough of them to take the largest frame, and
// a small spill buffer takes the rest when the driver has not given
// enough. With MRG_RXBUF a frame fills as many buffers as it needs and
// num_buffers in its header says how many (section 5.1.6.4).
//
// The guest is untrusted: every chain comes through the virtqueue's
// checks, headers are copied out before they are looked at, and a
// malformed frame or header is dropped and counted (Stats), never passed
// on. Descriptors are used as the driver gave them; the device writes
// only into device-writable buffers and the used ring.
package net

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	stdnet "net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gvmm/gvmm/eventfd"
	"github.com/gvmm/gvmm/virtio"
)

// Feature bits (virtio 1.2 section 5.1.3).
const (
	FeatureCSum      uint64 = 1 << 0  // VIRTIO_NET_F_CSUM: the device completes partial checksums
	FeatureGuestCSum uint64 = 1 << 1  // VIRTIO_NET_F_GUEST_CSUM: the driver takes partial checksums
	FeatureMAC       uint64 = 1 << 5  // VIRTIO_NET_F_MAC: config has the MAC address
	FeatureGuestTSO4 uint64 = 1 << 7  // VIRTIO_NET_F_GUEST_TSO4
	FeatureGuestTSO6 uint64 = 1 << 8  // VIRTIO_NET_F_GUEST_TSO6
	FeatureGuestECN  uint64 = 1 << 9  // VIRTIO_NET_F_GUEST_ECN
	FeatureGuestUFO  uint64 = 1 << 10 // VIRTIO_NET_F_GUEST_UFO
	FeatureHostTSO4  uint64 = 1 << 11 // VIRTIO_NET_F_HOST_TSO4
	FeatureHostTSO6  uint64 = 1 << 12 // VIRTIO_NET_F_HOST_TSO6
	FeatureHostECN   uint64 = 1 << 13 // VIRTIO_NET_F_HOST_ECN
	FeatureHostUFO   uint64 = 1 << 14 // VIRTIO_NET_F_HOST_UFO
	FeatureMrgRxBuf  uint64 = 1 << 15 // VIRTIO_NET_F_MRG_RXBUF
	FeatureStatus    uint64 = 1 << 16 // VIRTIO_NET_F_STATUS: config has the link status
)

// Configuration layout (struct virtio_net_config, section 5.1.4): mac[6],
// le16 status, le16 max_virtqueue_pairs (meaningful only with MQ, not
// offered; 1 all the same).
const (
	cfgMAC        = 0
	cfgStatus     = 6
	cfgMaxVQPairs = 8
	configSize    = 10
	// statusLinkUp is VIRTIO_NET_S_LINK_UP.
	statusLinkUp = 1
)

// Queues (section 5.1.2): receiveq1, transmitq1.
const (
	rxQueue = 0
	txQueue = 1
	// DefaultQueueSize is each queue's maximum size, QEMU's default.
	DefaultQueueSize = 256
)

// Offloads are what a backend may hand the device in received frames
// (TUNSETOFFLOAD on a tap): partial checksums, and TCP and UDP segments
// larger than the MTU.
type Offloads struct {
	CSum, TSO4, TSO6, ECN, UFO bool
}

// Backend carries frames, each prefixed by its HeaderSize-byte
// virtio_net_hdr, between the device and the host.
type Backend interface {
	// ReadFrame reads one header and frame into bufs, filling them in
	// order, and returns its length. When none is waiting it calls idle
	// (if not nil) once, then blocks until one arrives or the read
	// deadline passes.
	ReadFrame(bufs [][]byte, idle func()) (int, error)
	// WriteFrame writes one header and frame, gathered from bufs.
	WriteFrame(bufs [][]byte) (int, error)
	// SetOffload says what the backend may put in received frames.
	SetOffload(o Offloads) error
	// SetDeadline sets the deadline of blocked and future reads and
	// writes; a past one makes them return at once, the zero time none.
	SetDeadline(t time.Time) error
}

// Config describes a network device.
type Config struct {
	// Backend carries the frames. The device does not close it.
	Backend Backend
	// MAC is the guest's address.
	MAC stdnet.HardwareAddr
	// QueueSize is each queue's maximum size, a power of 2;
	// DefaultQueueSize if 0.
	QueueSize uint16
	// NoGuestUFO leaves GUEST_UFO out: the backend cannot hand UFO frames
	// over.
	NoGuestUFO bool
	// ManualReceive starts no receive worker: Receive runs it on the
	// caller's goroutine instead (benchmarks and tests).
	ManualReceive bool
}

// Stats counts what the device did. Malformed transmit frames and
// received frames the driver had no room for are dropped and counted.
type Stats struct {
	TXFrames, TXBytes, TXMalformed, TXErrors  uint64
	RXFrames, RXBytes, RXDropped, RXMalformed uint64
}

type counters struct {
	txFrames, txBytes, txMalformed, txErrors  atomic.Uint64
	rxFrames, rxBytes, rxDropped, rxMalformed atomic.Uint64
}

// Device is a virtio network device.
type Device struct {
	cfg      Config
	features uint64
	config   [configSize]byte

	mu sync.Mutex
	// active is set from Activate to Reset; waiters are the workers'
	// kick waiters, which Reset stops.
	active  bool
	waiters []*eventfd.Waiter
	wg      sync.WaitGroup
	rx      *receiver
	tx      *transmitter

	c counters
	// lastErr is the last backend error, for diagnostics.
	lastErr atomic.Pointer[error]
}

// DerivedMAC returns a locally administered unicast MAC address derived
// from name (a tap's): stable from one run to the next, and different for
// different names. IEEE 802: bit 0 of the first byte clear (unicast), bit 1
// set (locally administered).
func DerivedMAC(name string) stdnet.HardwareAddr {
	h := sha256.Sum256([]byte("gvmm-net:" + name))
	mac := stdnet.HardwareAddr(h[:6:6])
	mac[0] = mac[0]&^0x01 | 0x02
	return mac
}

// CheckMAC checks that mac can be a guest's address: 6 bytes, unicast, not
// all zero.
func CheckMAC(mac stdnet.HardwareAddr) error {
	switch {
	case len(mac) != 6:
		return fmt.Errorf("MAC address %v is not 6 bytes", mac)
	case mac[0]&1 != 0:
		return fmt.Errorf("MAC address %v is a multicast address", mac)
	case binary.BigEndian.Uint32(mac[:4])|uint32(binary.BigEndian.Uint16(mac[4:])) == 0:
		return fmt.Errorf("MAC address %v is all zero", mac)
	}
	return nil
}

// New returns a network device for cfg.
func New(cfg Config) (*Device, error) {
	if cfg.Backend == nil {
		return nil, errors.New("virtio-net: no backend")
	}
	if err := CheckMAC(cfg.MAC); err != nil {
		return nil, fmt.Errorf("virtio-net: %w", err)
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if s := cfg.QueueSize; s < 2 || s&(s-1) != 0 || s > virtio.MaxQueueSize {
		return nil, fmt.Errorf("virtio-net: queue size %d is not a power of 2 from 2 to %d", s, virtio.MaxQueueSize)
	}
	d := &Device{cfg: cfg}
	d.features = FeatureCSum | FeatureGuestCSum | FeatureMAC | FeatureStatus | FeatureMrgRxBuf |
		FeatureGuestTSO4 | FeatureGuestTSO6 | FeatureGuestECN |
		FeatureHostTSO4 | FeatureHostTSO6 | FeatureHostECN | FeatureHostUFO |
		virtio.FeatureIndirectDesc | virtio.FeatureEventIdx
	if !cfg.NoGuestUFO {
		d.features |= FeatureGuestUFO
	}
	copy(d.config[cfgMAC:], cfg.MAC)
	binary.LittleEndian.PutUint16(d.config[cfgStatus:], statusLinkUp)
	binary.LittleEndian.PutUint16(d.config[cfgMaxVQPairs:], 1)
	return d, nil
}

// Type implements virtio.Device.
func (d *Device) Type() virtio.DeviceType { return virtio.TypeNet }

// Features implements virtio.Device.
func (d *Device) Features() uint64 { return d.features }

// NumQueues implements virtio.Device: one receive and one transmit queue.
func (d *Device) NumQueues() int { return 2 }

// MaxQueueSize implements virtio.Device.
func (d *Device) MaxQueueSize() uint16 { return d.cfg.QueueSize }

// ConfigSize implements virtio.Device.
func (d *Device) ConfigSize() int { return configSize }

// ReadConfig implements virtio.Device.
func (d *Device) ReadConfig(off uint64, data []byte) { virtio.ReadConfig(d.config[:], off, data) }

// WriteConfig implements virtio.Device: a modern driver writes no field
// (section 5.1.4.2; the MAC is writable only through the legacy
// interface), so writes are dropped.
func (d *Device) WriteConfig(uint64, []byte) {}

// featureDeps are the feature bit requirements of section 5.1.3.1: each
// feature needs at least one of the bits beside it.
var featureDeps = []struct {
	feature, needs uint64
	what           string
}{
	{FeatureGuestTSO4, FeatureGuestCSum, "GUEST_TSO4 without GUEST_CSUM"},
	{FeatureGuestTSO6, FeatureGuestCSum, "GUEST_TSO6 without GUEST_CSUM"},
	{FeatureGuestECN, FeatureGuestTSO4 | FeatureGuestTSO6, "GUEST_ECN without GUEST_TSO4 or GUEST_TSO6"},
	{FeatureGuestUFO, FeatureGuestCSum, "GUEST_UFO without GUEST_CSUM"},
	{FeatureHostTSO4, FeatureCSum, "HOST_TSO4 without CSUM"},
	{FeatureHostTSO6, FeatureCSum, "HOST_TSO6 without CSUM"},
	{FeatureHostECN, FeatureHostTSO4 | FeatureHostTSO6, "HOST_ECN without HOST_TSO4 or HOST_TSO6"},
	{FeatureHostUFO, FeatureCSum, "HOST_UFO without CSUM"},
}

// AcceptFeatures implements virtio.Device: it refuses a set that breaks
// the requirements between feature bits (section 5.1.3.1), and one
// without VERSION_1 (whose header would be 10 bytes, not 12).
func (d *Device) AcceptFeatures(f uint64) error {
	if f&^d.features&^virtio.FeatureVersion1 != 0 {
		return fmt.Errorf("virtio-net: features %#x were not offered", f&^d.features&^virtio.FeatureVersion1)
	}
	if f&virtio.FeatureVersion1 == 0 {
		return errors.New("virtio-net: VERSION_1 not negotiated")
	}
	for _, dep := range featureDeps {
		if f&dep.feature != 0 && f&dep.needs == 0 {
			return fmt.Errorf("virtio-net: %s (virtio 1.2 section 5.1.3.1)", dep.what)
		}
	}
	return nil
}

// guestOffloads are the offloads the backend may hand a driver that
// negotiated features.
func guestOffloads(features uint64) Offloads {
	if features&FeatureGuestCSum == 0 {
		return Offloads{}
	}
	return Offloads{CSum: true,
		TSO4: features&FeatureGuestTSO4 != 0,
		TSO6: features&FeatureGuestTSO6 != 0,
		ECN:  features&FeatureGuestECN != 0,
		UFO:  features&FeatureGuestUFO != 0}
}

// Activate implements virtio.Device: it hands the backend the receive
// offloads the driver took and starts the receive and transmit workers.
func (d *Device) Activate(a virtio.Activation) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.active {
		return errors.New("virtio-net: activated twice")
	}
	if len(a.Queues) != 2 {
		return fmt.Errorf("virtio-net: %d queues, want 2", len(a.Queues))
	}
	if err := d.cfg.Backend.SetOffload(guestOffloads(a.Features)); err != nil {
		return fmt.Errorf("virtio-net: %w", err)
	}
	if err := d.cfg.Backend.SetDeadline(time.Time{}); err != nil {
		return fmt.Errorf("virtio-net: %w", err)
	}
	// The workers wait for kicks through the netpoller, as the receiver
	// waits for the tap: a parked worker holds no P, so the goroutine a
	// kick or a frame wakes runs at once.
	var kicks [2]*eventfd.Waiter
	for i, q := range a.Queues {
		if q.Queue == nil {
			continue
		}
		w, err := q.Kick.NewWaiter()
		if err != nil {
			d.closeWaiters()
			return fmt.Errorf("virtio-net queue %d: %w", i, err)
		}
		kicks[i] = w
		d.waiters = append(d.waiters, w)
	}
	d.active = true
	if q := a.Queues[rxQueue]; q.Queue != nil {
		d.rx = newReceiver(d, q, kicks[rxQueue], a)
		if !d.cfg.ManualReceive {
			d.wg.Add(1)
			go d.rx.run()
		}
	}
	if q := a.Queues[txQueue]; q.Queue != nil {
		d.tx = newTransmitter(d, q, kicks[txQueue], a)
		d.wg.Add(1)
		go d.tx.run()
	}
	return nil
}

func (d *Device) closeWaiters() {
	for _, w := range d.waiters {
		w.Close()
	}
	d.waiters = nil
}

// Reset implements virtio.Device: it wakes the workers, from their kick
// waiters and from the backend, and waits for them. Receive buffers the
// device held are simply forgotten, as the reset forgets the queues.
func (d *Device) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.active {
		return
	}
	for _, w := range d.waiters {
		_ = w.Stop()
	}
	_ = d.cfg.Backend.SetDeadline(time.Unix(1, 0))
	d.wg.Wait()
	d.rx, d.tx = nil, nil
	d.closeWaiters()
	d.active = false
}

// Stats returns the device's counters.
func (d *Device) Stats() Stats {
	c := &d.c
	return Stats{
		TXFrames: c.txFrames.Load(), TXBytes: c.txBytes.Load(),
		TXMalformed: c.txMalformed.Load(), TXErrors: c.txErrors.Load(),
		RXFrames: c.rxFrames.Load(), RXBytes: c.rxBytes.Load(),
		RXDropped: c.rxDropped.Load(), RXMalformed: c.rxMalformed.Load(),
	}
}

// LastError returns the last error the backend gave, or nil.
func (d *Device) LastError() error {
	if p := d.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

func (d *Device) backendError(err error) { d.lastErr.Store(&err) }

// Receive reads frames (received or dropped) from the backend into the receive queue on
// the calling goroutine, as the receive worker does, for a device
// configured with ManualReceive; it returns early when the device is
// reset. The driver's interrupt is settled before it returns.
func (d *Device) Receive(frames int) error {
	d.mu.Lock()
	r := d.rx
	d.mu.Unlock()
	if r == nil || !d.cfg.ManualReceive {
		return errors.New("virtio-net: Receive needs an active device with ManualReceive")
	}
	for range frames {
		if err := r.receive(); err != nil {
			return err
		}
	}
	r.flushIRQ()
	return nil
}

// ProcessTX runs the transmit queue's pending chains on the calling
// goroutine, as its worker does after a kick: for benchmarks.
func (d *Device) ProcessTX() {
	d.mu.Lock()
	t := d.tx
	d.mu.Unlock()
	if t != nil {
		t.mu.Lock()
		t.process()
		t.mu.Unlock()
	}
}
