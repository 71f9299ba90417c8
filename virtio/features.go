package virtio

// Feature bits independent of the device type (virtio 1.2 section 6,
// "Reserved Feature Bits"). Device-specific bits are 0 to 23.
const (
	// FeatureIndirectDesc: the driver may use indirect descriptor tables
	// (VIRTIO_F_INDIRECT_DESC, bit 28; section 2.7.5.3).
	FeatureIndirectDesc uint64 = 1 << 28
	// FeatureEventIdx: used_event and avail_event suppress notifications
	// (VIRTIO_F_EVENT_IDX, bit 29; section 2.7.7, 2.7.10).
	FeatureEventIdx uint64 = 1 << 29
	// FeatureVersion1: the device complies with virtio 1.x, not the
	// legacy interface (VIRTIO_F_VERSION_1, bit 32).
	FeatureVersion1 uint64 = 1 << 32
	// FeatureAccessPlatform: buffers are behind an IOMMU (bit 33). Never
	// offered: guest-physical addresses are used as they are.
	FeatureAccessPlatform uint64 = 1 << 33
	// FeatureRingPacked: the packed virtqueue layout (bit 34). Never
	// offered: only split virtqueues are implemented.
	FeatureRingPacked uint64 = 1 << 34
)

// TransportFeatures are the bits every gvmm device offers on top of its own:
// virtio 1.x, indirect descriptors and event indices, all handled by Queue.
const TransportFeatures = FeatureVersion1 | FeatureIndirectDesc | FeatureEventIdx

// Device status bits (virtio 1.2 section 2.1).
const (
	StatusAcknowledge      uint8 = 1
	StatusDriver           uint8 = 2
	StatusDriverOK         uint8 = 4
	StatusFeaturesOK       uint8 = 8
	StatusDeviceNeedsReset uint8 = 64
	StatusFailed           uint8 = 128
)

// DeviceType is a virtio device ID (virtio 1.2 section 5, "Device Types").
type DeviceType uint16

// Device IDs.
const (
	TypeNet   DeviceType = 1
	TypeBlock DeviceType = 2
)

func (t DeviceType) String() string {
	switch t {
	case TypeNet:
		return "net"
	case TypeBlock:
		return "block"
	}
	return "virtio device " + itoa(uint64(t))
}

func itoa(v uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}
