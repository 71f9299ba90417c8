// Package blk is the virtio block device (virtio 1.2 section 5.2): a disk
// image (package disk) served to the guest through any virtio transport.
//
// It offers SIZE_MAX, SEG_MAX, BLK_SIZE, FLUSH, RO for read-only images,
// DISCARD and WRITE_ZEROES for writable ones, MQ with one queue per vCPU,
// and the transport features INDIRECT_DESC and EVENT_IDX. Requests are IN,
// OUT, FLUSH (fdatasync), GET_ID, DISCARD and WRITE_ZEROES (both punch
// holes); anything else is answered VIRTIO_BLK_S_UNSUPP.
//
// Each queue has a worker goroutine that waits for the queue's kick
// eventfd, takes the available requests in batches of up to 16, does their
// I/O straight between guest memory and the image (pread/pwrite,
// preadv/pwritev; up to Config.Parallel at once), completes them in the
// order it took them, and raises the queue's interrupt once per batch when
// the driver wants one. A completion is published
// only after the I/O returned, so nothing the guest saw complete is lost if
// gvmm dies.
//
// The guest is untrusted: every address comes through the virtqueue's
// checks, every sector range is checked against the image, and a malformed
// request is answered VIRTIO_BLK_S_IOERR. A broken queue (a malformed ring)
// or a request without a status byte makes the device ask for a reset
// (Activation.Fail); its worker then ignores the queue until the reset.
package blk

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/gvmm/gvmm/eventfd"
	"github.com/gvmm/gvmm/virtio"
	"github.com/gvmm/gvmm/virtio/blk/disk"
)

// Feature bits (section 5.2.3).
const (
	FeatureSizeMax     uint64 = 1 << 1  // VIRTIO_BLK_F_SIZE_MAX
	FeatureSegMax      uint64 = 1 << 2  // VIRTIO_BLK_F_SEG_MAX
	FeatureRO          uint64 = 1 << 5  // VIRTIO_BLK_F_RO
	FeatureBlkSize     uint64 = 1 << 6  // VIRTIO_BLK_F_BLK_SIZE
	FeatureFlush       uint64 = 1 << 9  // VIRTIO_BLK_F_FLUSH
	FeatureMQ          uint64 = 1 << 12 // VIRTIO_BLK_F_MQ
	FeatureDiscard     uint64 = 1 << 13 // VIRTIO_BLK_F_DISCARD
	FeatureWriteZeroes uint64 = 1 << 14 // VIRTIO_BLK_F_WRITE_ZEROES
)

// Configuration layout (struct virtio_blk_config, section 5.2.4).
const (
	cfgCapacity              = 0  // le64, in 512-byte sectors
	cfgSizeMax               = 8  // le32
	cfgSegMax                = 12 // le32
	cfgBlkSize               = 20 // le32
	cfgWriteback             = 32 // u8
	cfgNumQueues             = 34 // le16
	cfgMaxDiscardSectors     = 36 // le32
	cfgMaxDiscardSeg         = 40 // le32
	cfgDiscardAlignment      = 44 // le32, in sectors
	cfgMaxWriteZeroesSectors = 48 // le32
	cfgMaxWriteZeroesSeg     = 52 // le32
	cfgWriteZeroesMayUnmap   = 56 // u8
	configSize               = 60
)

const (
	// DefaultQueueSize is each queue's maximum size.
	DefaultQueueSize = 256
	// sizeMax is the largest buffer the driver may use (SIZE_MAX).
	sizeMax = 4 << 20
	// maxSegments is max_discard_seg and max_write_zeroes_seg.
	maxSegments = 32
	// maxRangeSectors is max_discard_sectors and max_write_zeroes_sectors:
	// 2 GiB per segment.
	maxRangeSectors = 1 << 22
)

// Config describes a block device.
type Config struct {
	// Disk is the image; the device does not close it.
	Disk *disk.File
	// Queues is the number of request queues (one per vCPU), at least 1.
	Queues int
	// QueueSize is each queue's maximum size, a power of 2;
	// DefaultQueueSize if 0.
	QueueSize uint16
	// Serial is the GET_ID answer, at most IDBytes bytes.
	Serial string
	// Parallel is how many requests of one queue may run at once (on
	// that many goroutines); DefaultParallel if 0, 1 for one at a time
	// (still taken and completed in batches).
	Parallel int
}

// DefaultParallel is how many requests of a queue run at once by default:
// a guest that has several in flight (a large read split in two, page
// cache writeback) gets them served together, as by QEMU's thread pool.
const DefaultParallel = 4

// Device is a virtio block device.
type Device struct {
	cfg      Config
	features uint64
	config   [configSize]byte
	id       [IDBytes]byte

	mu      sync.Mutex
	stop    *eventfd.EventFD
	wg      sync.WaitGroup
	workers []*worker

	// Counters, for statistics and tests.
	requests atomic.Uint64
	errors   atomic.Uint64
}

// New returns a block device for cfg.
func New(cfg Config) (*Device, error) {
	if cfg.Disk == nil {
		return nil, fmt.Errorf("virtio-blk: no disk")
	}
	if cfg.Queues < 1 || cfg.Queues > 1024 {
		return nil, fmt.Errorf("virtio-blk: %d queues: 1 to 1024", cfg.Queues)
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.Parallel == 0 {
		cfg.Parallel = DefaultParallel
	}
	if cfg.Parallel < 1 || cfg.Parallel > maxBatch {
		return nil, fmt.Errorf("virtio-blk: %d requests at once: 1 to %d", cfg.Parallel, maxBatch)
	}
	if s := cfg.QueueSize; s < 4 || s&(s-1) != 0 || s > virtio.MaxQueueSize {
		return nil, fmt.Errorf("virtio-blk: queue size %d is not a power of 2 from 4 to %d", s, virtio.MaxQueueSize)
	}
	if len(cfg.Serial) > IDBytes {
		return nil, fmt.Errorf("virtio-blk: serial %q is longer than %d bytes", cfg.Serial, IDBytes)
	}
	d := &Device{cfg: cfg}
	copy(d.id[:], cfg.Serial)
	d.features = FeatureSizeMax | FeatureSegMax | FeatureBlkSize | FeatureFlush |
		virtio.FeatureIndirectDesc | virtio.FeatureEventIdx
	if cfg.Queues > 1 {
		d.features |= FeatureMQ
	}
	if cfg.Disk.ReadOnly() {
		d.features |= FeatureRO
	} else {
		d.features |= FeatureDiscard | FeatureWriteZeroes
	}
	le := binary.LittleEndian
	c := d.config[:]
	le.PutUint64(c[cfgCapacity:], cfg.Disk.Size()>>sectorShift)
	le.PutUint32(c[cfgSizeMax:], sizeMax)
	// Two descriptors of every chain are the header and the status.
	le.PutUint32(c[cfgSegMax:], uint32(cfg.QueueSize)-2)
	le.PutUint32(c[cfgBlkSize:], uint32(cfg.Disk.BlockSize()))
	if cfg.Disk.Cache() != disk.CacheWritethrough {
		c[cfgWriteback] = 1
	}
	le.PutUint16(c[cfgNumQueues:], uint16(cfg.Queues))
	if !cfg.Disk.ReadOnly() {
		align := uint32(cfg.Disk.BlockSize() >> sectorShift)
		le.PutUint32(c[cfgMaxDiscardSectors:], maxRangeSectors)
		le.PutUint32(c[cfgMaxDiscardSeg:], maxSegments)
		le.PutUint32(c[cfgDiscardAlignment:], align)
		le.PutUint32(c[cfgMaxWriteZeroesSectors:], maxRangeSectors)
		le.PutUint32(c[cfgMaxWriteZeroesSeg:], maxSegments)
		c[cfgWriteZeroesMayUnmap] = 1
	}
	return d, nil
}

// Type implements virtio.Device.
func (d *Device) Type() virtio.DeviceType { return virtio.TypeBlock }

// Features implements virtio.Device.
func (d *Device) Features() uint64 { return d.features }

// NumQueues implements virtio.Device.
func (d *Device) NumQueues() int { return d.cfg.Queues }

// MaxQueueSize implements virtio.Device.
func (d *Device) MaxQueueSize() uint16 { return d.cfg.QueueSize }

// ConfigSize implements virtio.Device.
func (d *Device) ConfigSize() int { return configSize }

// ReadConfig implements virtio.Device.
func (d *Device) ReadConfig(off uint64, data []byte) { virtio.ReadConfig(d.config[:], off, data) }

// WriteConfig implements virtio.Device: the configuration is read-only
// (writeback is writable only with VIRTIO_BLK_F_CONFIG_WCE, not offered).
func (d *Device) WriteConfig(uint64, []byte) {}

// AcceptFeatures implements virtio.Device: any subset works.
func (d *Device) AcceptFeatures(uint64) error { return nil }

// Requests returns how many requests the device completed, and how many of
// them failed.
func (d *Device) Requests() (total, failed uint64) { return d.requests.Load(), d.errors.Load() }

// Activate implements virtio.Device: one worker per enabled queue.
func (d *Device) Activate(a virtio.Activation) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stop != nil {
		return fmt.Errorf("virtio-blk: activated twice")
	}
	stop, err := eventfd.New()
	if err != nil {
		return fmt.Errorf("virtio-blk: %w", err)
	}
	d.stop = stop
	for i, aq := range a.Queues {
		if aq.Queue == nil {
			continue
		}
		w := newWorker(d, i, aq, a)
		d.workers = append(d.workers, w)
		d.wg.Add(1)
		go w.run(stop)
	}
	return nil
}

// Reset implements virtio.Device: it signals the workers to stop and waits
// for them; a request in flight finishes first.
func (d *Device) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stop == nil {
		return
	}
	_ = d.stop.Signal()
	d.wg.Wait()
	for _, w := range d.workers {
		w.close()
	}
	d.workers = nil
	d.stop.Close()
	d.stop = nil
}

// ProcessQueue runs queue i's pending requests on the calling goroutine,
// as its worker would after a kick: for benchmarks that drive the device
// without the worker's wake-up.
func (d *Device) ProcessQueue(i int) {
	d.mu.Lock()
	var w *worker
	for _, x := range d.workers {
		if x.index == i {
			w = x
		}
	}
	d.mu.Unlock()
	if w != nil {
		w.mu.Lock()
		w.process()
		w.mu.Unlock()
	}
}
