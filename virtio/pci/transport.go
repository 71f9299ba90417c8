package pci

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/gvmm/gvmm/devices"
	devpci "github.com/gvmm/gvmm/devices/pci"
	"github.com/gvmm/gvmm/eventfd"
	"github.com/gvmm/gvmm/virtio"
)

// PCI identity of a modern virtio device (virtio 1.2 section 4.1.2).
const (
	VendorID = 0x1AF4
	// DeviceIDBase plus the virtio device type is the PCI device ID.
	DeviceIDBase = 0x1040
	// revision 1 marks a non-transitional device (section 4.1.2.1).
	revision = 1
	// subsystemID is the subsystem device ID QEMU gives modern devices;
	// Linux ignores it for device IDs of 0x1040 and up.
	subsystemID = 0x1100
)

// BAR 0 layout (see the package documentation).
const (
	bar0Size     = 0x8000
	commonOff    = 0x0000
	commonSize   = 0x40
	isrOff       = 0x1000
	isrSize      = 0x1000
	deviceOff    = 0x2000
	deviceMax    = 0x1000
	notifyOff    = 0x3000
	notifyMult   = 4
	notifySize   = 0x1000
	msixTableOff = 0x4000
	msixPBAOff   = 0x5000
	// MaxQueues is the most queues the notification area holds.
	MaxQueues = notifySize / notifyMult
	// MaxVectors is the most MSI-X vectors the table area holds.
	MaxVectors = 0x1000 / devpci.MSIXEntrySize
)

// Common configuration (struct virtio_pci_common_cfg, section 4.1.4.3).
const (
	ccDeviceFeatureSelect = 0x00 // le32 RW
	ccDeviceFeature       = 0x04 // le32 RO
	ccDriverFeatureSelect = 0x08 // le32 RW
	ccDriverFeature       = 0x0C // le32 RW
	ccConfigMSIXVector    = 0x10 // le16 RW
	ccNumQueues           = 0x12 // le16 RO
	ccDeviceStatus        = 0x14 // u8 RW
	ccConfigGeneration    = 0x15 // u8 RO
	ccQueueSelect         = 0x16 // le16 RW
	ccQueueSize           = 0x18 // le16 RW
	ccQueueMSIXVector     = 0x1A // le16 RW
	ccQueueEnable         = 0x1C // le16 RW
	ccQueueNotifyOff      = 0x1E // le16 RO
	ccQueueDesc           = 0x20 // le64 RW
	ccQueueDriver         = 0x28 // le64 RW
	ccQueueDevice         = 0x30 // le64 RW
	ccQueueNotifyData     = 0x38 // le16 RO
	ccQueueReset          = 0x3A // le16 RW
)

// NoVector is VIRTIO_MSI_NO_VECTOR: no MSI-X vector (section 4.1.4.3).
const NoVector = 0xFFFF

// ISR status bits (section 4.1.4.5).
const (
	isrQueue  = 1
	isrConfig = 2
)

// IOEvents makes guest writes to an MMIO address signal an eventfd inside
// the host kernel, with no exit to userspace. The VMM implements it with
// KVM_IOEVENTFD.
type IOEvents interface {
	RegisterIOEvent(addr uint64, length uint32, e *eventfd.EventFD) error
	UnregisterIOEvent(addr uint64, length uint32, e *eventfd.EventFD) error
}

// Config describes a transport.
type Config struct {
	// Device is the virtio device to present.
	Device virtio.Device
	// Mem is guest memory, for the queues.
	Mem virtio.Memory
	// Vectors are the MSI-X vectors, ideally one per queue plus one for
	// configuration changes; at most MaxVectors. None: no MSI-X
	// capability, INTx only.
	Vectors []devpci.MSIVector
	// INTx is the function's INTA# line, used while MSI-X is off; nil
	// leaves the function without INTx.
	INTx devices.IRQLine
	// IOEvents registers the notification addresses; nil leaves every
	// notification to the MMIO handler.
	IOEvents IOEvents
}

type queueRegs struct {
	size                 uint16
	enabled              bool
	desc, driver, device uint64
}

// Transport is one virtio device on PCI.
type Transport struct {
	dev      virtio.Device
	mem      virtio.Memory
	fn       *devpci.Function
	msix     *devpci.MSIX
	intx     devices.IRQLine
	ioevents IOEvents
	features uint64
	maxSize  uint16
	kicks    []*eventfd.EventFD

	// mu serialises the driver's register accesses (vCPU threads).
	mu             sync.Mutex
	status         uint8
	deviceFeatSel  uint32
	driverFeatSel  uint32
	driverFeatures uint64
	queueSel       uint16
	queues         []queueRegs
	active         bool

	// Read by workers without mu.
	configVector atomic.Uint32
	queueVectors []atomic.Uint32
	needsReset   atomic.Bool
	failure      atomic.Pointer[error]

	// intxMu keeps the ISR and the INTx level in step.
	intxMu sync.Mutex
	isr    uint8
	level  bool

	// evMu guards the ioeventfd registrations.
	evMu      sync.Mutex
	evBase    uint64
	evMapped  bool
	evErr     error
	closeOnce sync.Once
}

// New builds the transport and its PCI function.
func New(cfg Config) (*Transport, error) {
	d := cfg.Device
	n := d.NumQueues()
	switch {
	case n < 1 || n > MaxQueues:
		return nil, fmt.Errorf("virtio-pci: %d queues: 1 to %d", n, MaxQueues)
	case d.ConfigSize() > deviceMax:
		return nil, fmt.Errorf("virtio-pci: device configuration of %d bytes: at most %d", d.ConfigSize(), deviceMax)
	case len(cfg.Vectors) > MaxVectors:
		return nil, fmt.Errorf("virtio-pci: %d MSI-X vectors: at most %d", len(cfg.Vectors), MaxVectors)
	}
	if s := d.MaxQueueSize(); s == 0 || s > virtio.MaxQueueSize || s&(s-1) != 0 {
		return nil, fmt.Errorf("virtio-pci: maximum queue size %d is not a power of 2 up to %d", s, virtio.MaxQueueSize)
	}
	t := &Transport{
		dev: d, mem: cfg.Mem, intx: cfg.INTx, ioevents: cfg.IOEvents,
		features:     d.Features() | virtio.FeatureVersion1,
		maxSize:      d.MaxQueueSize(),
		queues:       make([]queueRegs, n),
		queueVectors: make([]atomic.Uint32, n),
	}
	t.resetRegs()
	for i := 0; i < n; i++ {
		e, err := eventfd.New()
		if err != nil {
			t.closeKicks()
			return nil, fmt.Errorf("virtio-pci: queue %d: %w", i, err)
		}
		t.kicks = append(t.kicks, e)
	}

	caps := []devpci.Capability{}
	if len(cfg.Vectors) > 0 {
		m, err := devpci.NewMSIX(cfg.Vectors, 0, msixTableOff, msixPBAOff)
		if err != nil {
			t.closeKicks()
			return nil, err
		}
		t.msix = m
		caps = append(caps, m)
	}
	caps = append(caps,
		&structCap{cfgType: cfgTypeCommon, offset: commonOff, length: commonSize},
		&structCap{cfgType: cfgTypeNotify, offset: notifyOff, length: notifyMult * uint32(n), multiplier: notifyMult},
		&structCap{cfgType: cfgTypeISR, offset: isrOff, length: 1},
		&structCap{cfgType: cfgTypeDevice, offset: deviceOff, length: uint32(max(d.ConfigSize(), 1))},
		&pciCfgCap{access: t.bar0Access},
	)
	var pin uint8
	if cfg.INTx != nil {
		pin = 1
	}
	fn, err := devpci.NewFunction(devpci.Header{
		VendorID: VendorID, DeviceID: DeviceIDBase + uint16(d.Type()), Revision: revision,
		SubsystemVendorID: VendorID, SubsystemID: subsystemID,
		Class: classOf(d.Type()), InterruptPin: pin,
	}, []devpci.BAR{{Size: bar0Size, Region: bar0{t}, Name: "virtio"}}, caps)
	if err != nil {
		t.closeKicks()
		return nil, err
	}
	fn.AddBARHook(t.barMoved)
	t.fn = fn
	return t, nil
}

func classOf(t virtio.DeviceType) uint32 {
	switch t {
	case virtio.TypeBlock:
		// As QEMU's virtio-blk-pci: SCSI storage controller.
		return devpci.ClassStorageSCSI
	case virtio.TypeNet:
		return devpci.ClassNetEthernet
	}
	return 0xFF0000 // "device does not fit any defined class"
}

// Function returns the PCI function to put on the bus.
func (t *Transport) Function() *devpci.Function { return t.fn }

// MSIX returns the MSI-X capability, or nil.
func (t *Transport) MSIX() *devpci.MSIX { return t.msix }

// Kick returns queue i's notification eventfd.
func (t *Transport) Kick(i int) *eventfd.EventFD { return t.kicks[i] }

// IOEventError returns the last failure to register a notification
// address, or nil: notifications then exit to userspace.
func (t *Transport) IOEventError() error {
	t.evMu.Lock()
	defer t.evMu.Unlock()
	return t.evErr
}

// Failure returns what made the device ask for a reset, or nil.
func (t *Transport) Failure() error {
	if p := t.failure.Load(); p != nil {
		return *p
	}
	return nil
}

// Close resets the device (stopping its workers), unregisters the
// notification addresses and closes the eventfds.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		t.mu.Lock()
		t.resetLocked()
		t.mu.Unlock()
		t.evMu.Lock()
		if t.evMapped {
			t.unregisterLocked()
		}
		t.evMapped = false
		t.evMu.Unlock()
		t.closeKicks()
	})
	return nil
}

func (t *Transport) closeKicks() {
	for _, k := range t.kicks {
		k.Close()
	}
}

// barMoved follows BAR 0 with the notification ioeventfds.
func (t *Transport) barMoved(bar int, addr uint64, mapped bool) {
	if bar != 0 || t.ioevents == nil {
		return
	}
	t.evMu.Lock()
	defer t.evMu.Unlock()
	if t.evMapped {
		t.unregisterLocked()
	}
	t.evMapped, t.evBase = mapped, addr
	if !mapped {
		return
	}
	for i, k := range t.kicks {
		// Linux writes the queue index as 16 bits (vp_notify,
		// iowrite16); other sizes exit to userspace and are handled by
		// the MMIO handler the same way.
		if err := t.ioevents.RegisterIOEvent(addr+notifyOff+notifyMult*uint64(i), 2, k); err != nil {
			t.evErr = fmt.Errorf("virtio-pci: queue %d notification: %w", i, err)
		}
	}
}

func (t *Transport) unregisterLocked() {
	for i, k := range t.kicks {
		_ = t.ioevents.UnregisterIOEvent(t.evBase+notifyOff+notifyMult*uint64(i), 2, k)
	}
}

// resetRegs returns the registers to their reset values (section
// 4.1.4.3.2): queue sizes at the maximum, every queue disabled, no
// vectors.
func (t *Transport) resetRegs() {
	t.status, t.deviceFeatSel, t.driverFeatSel, t.driverFeatures, t.queueSel = 0, 0, 0, 0, 0
	for i := range t.queues {
		t.queues[i] = queueRegs{size: t.maxSize}
		t.queueVectors[i].Store(NoVector)
	}
	t.configVector.Store(NoVector)
	t.needsReset.Store(false)
	t.failure.Store(nil)
	t.intxMu.Lock()
	t.isr = 0
	t.setLevelLocked(false)
	t.intxMu.Unlock()
}

// resetLocked stops the device and resets the registers.
func (t *Transport) resetLocked() {
	// The device may have workers even if it never got to run (an
	// Activate that failed half-way): always reset it.
	t.dev.Reset()
	t.active = false
	t.resetRegs()
}

type bar0 struct{ t *Transport }

func (b bar0) Read(off uint64, data []byte)  { b.t.bar0Access(off, data, false) }
func (b bar0) Write(off uint64, data []byte) { b.t.bar0Access(off, data, true) }

func (t *Transport) bar0Access(off uint64, data []byte, write bool) {
	n := uint64(len(data))
	within := func(start, size uint64) bool { return off >= start && off-start+n <= size }
	switch {
	case within(commonOff, commonSize):
		if write {
			t.writeCommon(off-commonOff, data)
		} else {
			t.readCommon(off-commonOff, data)
		}
	case within(isrOff, isrSize):
		if write {
			return
		}
		clear(data)
		if off == isrOff {
			data[0] = t.readISR()
		}
	case within(deviceOff, deviceMax):
		if write {
			t.dev.WriteConfig(off-deviceOff, data)
		} else {
			t.dev.ReadConfig(off-deviceOff, data)
		}
	case within(notifyOff, notifySize):
		if write {
			if q := (off - notifyOff) / notifyMult; q < uint64(len(t.kicks)) {
				_ = t.kicks[q].Signal()
			}
		} else {
			clear(data)
		}
	case t.msix != nil && within(msixTableOff, devpci.MSIXTableSize(t.msix.Vectors())):
		if write {
			t.msix.WriteTable(off-msixTableOff, data)
		} else {
			t.msix.ReadTable(off-msixTableOff, data)
		}
	case t.msix != nil && within(msixPBAOff, devpci.MSIXPBASize(t.msix.Vectors())):
		if !write {
			t.msix.ReadPBA(off-msixPBAOff, data)
		}
	default:
		if !write {
			clear(data)
		}
	}
}

// commonImage renders the common configuration structure.
func (t *Transport) commonImage() [commonSize]byte {
	var b [commonSize]byte
	le := binary.LittleEndian
	le.PutUint32(b[ccDeviceFeatureSelect:], t.deviceFeatSel)
	if t.deviceFeatSel < 2 {
		le.PutUint32(b[ccDeviceFeature:], uint32(t.features>>(32*t.deviceFeatSel)))
	}
	le.PutUint32(b[ccDriverFeatureSelect:], t.driverFeatSel)
	if t.driverFeatSel < 2 {
		le.PutUint32(b[ccDriverFeature:], uint32(t.driverFeatures>>(32*t.driverFeatSel)))
	}
	le.PutUint16(b[ccConfigMSIXVector:], uint16(t.configVector.Load()))
	le.PutUint16(b[ccNumQueues:], uint16(len(t.queues)))
	b[ccDeviceStatus] = t.statusLocked()
	le.PutUint16(b[ccQueueSelect:], t.queueSel)
	if q := int(t.queueSel); q < len(t.queues) {
		r := t.queues[q]
		le.PutUint16(b[ccQueueSize:], r.size)
		le.PutUint16(b[ccQueueMSIXVector:], uint16(t.queueVectors[q].Load()))
		if r.enabled {
			le.PutUint16(b[ccQueueEnable:], 1)
		}
		le.PutUint16(b[ccQueueNotifyOff:], uint16(q))
		le.PutUint64(b[ccQueueDesc:], r.desc)
		le.PutUint64(b[ccQueueDriver:], r.driver)
		le.PutUint64(b[ccQueueDevice:], r.device)
		le.PutUint16(b[ccQueueNotifyData:], uint16(q))
	}
	// A queue_select past the last queue reads queue_size 0: "not
	// available" (section 4.1.4.3.2).
	return b
}

func (t *Transport) statusLocked() uint8 {
	s := t.status
	if t.needsReset.Load() {
		s |= virtio.StatusDeviceNeedsReset
	}
	return s
}

func (t *Transport) readCommon(off uint64, data []byte) {
	t.mu.Lock()
	img := t.commonImage()
	t.mu.Unlock()
	readBytes(img[:], int(off), data)
}

// writeCommon applies a write of any size to the common configuration: the
// bytes are merged into the current image, then each field they touched
// takes its new value, in offset order.
func (t *Transport) writeCommon(off uint64, data []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	img := t.commonImage()
	copy(img[off:], data)
	le := binary.LittleEndian
	touched := func(field, size uint64) bool { return off < field+size && field < off+uint64(len(data)) }

	if touched(ccDeviceFeatureSelect, 4) {
		t.deviceFeatSel = le.Uint32(img[ccDeviceFeatureSelect:])
	}
	if touched(ccDriverFeatureSelect, 4) {
		t.driverFeatSel = le.Uint32(img[ccDriverFeatureSelect:])
	}
	if touched(ccDriverFeature, 4) && t.driverFeatSel < 2 && t.status&virtio.StatusFeaturesOK == 0 {
		shift := 32 * t.driverFeatSel
		t.driverFeatures = t.driverFeatures&^(0xFFFFFFFF<<shift) | uint64(le.Uint32(img[ccDriverFeature:]))<<shift
	}
	if touched(ccConfigMSIXVector, 2) {
		t.configVector.Store(uint32(t.vector(le.Uint16(img[ccConfigMSIXVector:]))))
	}
	if touched(ccQueueSelect, 2) {
		t.queueSel = le.Uint16(img[ccQueueSelect:])
	}
	if q := int(t.queueSel); q < len(t.queues) {
		r := &t.queues[q]
		// Queue registers are frozen once the queue is enabled, and
		// while the device runs (section 4.1.4.3.2: the driver must not
		// change them then).
		if !r.enabled && !t.active {
			if touched(ccQueueSize, 2) {
				r.size = le.Uint16(img[ccQueueSize:])
			}
			if touched(ccQueueDesc, 8) {
				r.desc = le.Uint64(img[ccQueueDesc:])
			}
			if touched(ccQueueDriver, 8) {
				r.driver = le.Uint64(img[ccQueueDriver:])
			}
			if touched(ccQueueDevice, 8) {
				r.device = le.Uint64(img[ccQueueDevice:])
			}
		}
		if touched(ccQueueMSIXVector, 2) {
			t.queueVectors[q].Store(uint32(t.vector(le.Uint16(img[ccQueueMSIXVector:]))))
		}
		if touched(ccQueueEnable, 2) && le.Uint16(img[ccQueueEnable:]) == 1 && !t.active {
			r.enabled = true
		}
	}
	if touched(ccDeviceStatus, 1) {
		t.setStatusLocked(img[ccDeviceStatus])
	}
}

// vector returns v if it names an MSI-X table entry, else NoVector: what
// the driver reads back tells it whether the mapping took (section
// 4.1.5.1.2.1).
func (t *Transport) vector(v uint16) uint16 {
	if t.msix == nil || int(v) >= t.msix.Vectors() {
		return NoVector
	}
	return v
}

// setStatusLocked handles a write of device_status (sections 2.1, 3.1.1,
// 4.1.4.3.2).
func (t *Transport) setStatusLocked(s uint8) {
	if s == 0 {
		t.resetLocked()
		return
	}
	old := t.status
	s &^= virtio.StatusDeviceNeedsReset // the device's bit
	if s&virtio.StatusFeaturesOK != 0 && old&virtio.StatusFeaturesOK == 0 {
		if err := t.checkFeatures(); err != nil {
			// Leave FEATURES_OK clear: the driver reads it back and
			// gives up (section 2.2.2).
			s &^= virtio.StatusFeaturesOK
		}
	}
	t.status = s
	if s&virtio.StatusDriverOK != 0 && old&virtio.StatusDriverOK == 0 && !t.active {
		if s&virtio.StatusFeaturesOK == 0 {
			t.fail(errors.New("DRIVER_OK without FEATURES_OK"))
			return
		}
		if err := t.activateLocked(); err != nil {
			t.fail(err)
		}
	}
}

func (t *Transport) checkFeatures() error {
	f := t.driverFeatures
	if f&^t.features != 0 {
		return fmt.Errorf("driver accepted features %#x the device did not offer", f&^t.features)
	}
	if f&virtio.FeatureVersion1 == 0 {
		return errors.New("driver did not accept VIRTIO_F_VERSION_1 (legacy drivers are not supported)")
	}
	return t.dev.AcceptFeatures(f)
}

func (t *Transport) activateLocked() error {
	a := virtio.Activation{
		Features:  t.driverFeatures,
		Mem:       t.mem,
		Queues:    make([]virtio.ActiveQueue, len(t.queues)),
		Interrupt: t,
		Fail:      t.fail,
	}
	for i, r := range t.queues {
		a.Queues[i].Kick = t.kicks[i]
		if !r.enabled {
			continue
		}
		q, err := virtio.NewQueue(t.mem, virtio.QueueConfig{
			Size: r.size, Desc: r.desc, Driver: r.driver, Device: r.device, Features: t.driverFeatures,
		})
		if err != nil {
			return fmt.Errorf("queue %d: %w", i, err)
		}
		a.Queues[i].Queue = q
	}
	if err := t.dev.Activate(a); err != nil {
		return err
	}
	t.active = true
	return nil
}

// fail sets DEVICE_NEEDS_RESET and tells the driver (section 2.1.2). It
// is the Activation.Fail of the device: workers call it, so it takes no
// lock a vCPU thread may hold while waiting for them.
func (t *Transport) fail(err error) {
	if t.needsReset.Swap(true) {
		return
	}
	t.failure.Store(&err)
	t.NotifyConfig()
}

// NotifyQueue implements virtio.Interrupt.
func (t *Transport) NotifyQueue(i int) {
	if i < 0 || i >= len(t.queueVectors) {
		return
	}
	if t.msix != nil && t.msix.Enabled() {
		if v := t.queueVectors[i].Load(); v != NoVector {
			t.msix.Notify(int(v))
		}
		return
	}
	t.raiseISR(isrQueue)
}

// NotifyConfig implements virtio.Interrupt.
func (t *Transport) NotifyConfig() {
	if t.msix != nil && t.msix.Enabled() {
		if v := t.configVector.Load(); v != NoVector {
			t.msix.Notify(int(v))
		}
		return
	}
	t.raiseISR(isrConfig)
}

func (t *Transport) raiseISR(bit uint8) {
	t.intxMu.Lock()
	defer t.intxMu.Unlock()
	t.isr |= bit
	t.setLevelLocked(true)
}

// readISR returns the ISR status and clears it, lowering INTx (section
// 4.1.4.5: reading the ISR acknowledges the interrupt).
func (t *Transport) readISR() uint8 {
	t.intxMu.Lock()
	defer t.intxMu.Unlock()
	v := t.isr
	t.isr = 0
	t.setLevelLocked(false)
	return v
}

func (t *Transport) setLevelLocked(high bool) {
	if t.intx == nil || t.level == high {
		return
	}
	t.level = high
	t.intx.SetLevel(high)
}
