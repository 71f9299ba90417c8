package virtio

import "github.com/gvmm/gvmm/eventfd"

// Device is a virtio device model: what a transport needs to present it to
// a driver and to run it. It knows nothing of its transport, of PCI or of
// KVM.
//
// The transport calls every method from vCPU threads, one call at a time
// per device; Activate and Reset alternate (Reset may also come without
// Activate).
type Device interface {
	// Type is the virtio device ID.
	Type() DeviceType
	// Features returns the feature bits the device offers, device-specific
	// ones (bits 0-23) and any of TransportFeatures it supports.
	Features() uint64
	// NumQueues returns how many virtqueues the device has.
	NumQueues() int
	// MaxQueueSize returns the largest queue size the device accepts, a
	// power of 2; the driver may choose a smaller one.
	MaxQueueSize() uint16
	// ConfigSize is the length of the device-specific configuration space.
	ConfigSize() int
	// ReadConfig and WriteConfig access the device-specific configuration
	// space at offset off (section 2.5): any offset and length, as the
	// guest chose them, must be tolerated. Bytes outside the space read as
	// 0 and are dropped on write.
	ReadConfig(off uint64, data []byte)
	WriteConfig(off uint64, data []byte)
	// AcceptFeatures checks the features the driver chose (a subset of
	// Features, VERSION_1 included) when it sets FEATURES_OK; an error
	// leaves FEATURES_OK clear (section 2.2.2).
	AcceptFeatures(features uint64) error
	// Activate starts the device when the driver sets DRIVER_OK. The device
	// starts workers for its queues; they run until Reset. An error means
	// the device cannot run: the transport sets DEVICE_NEEDS_RESET.
	Activate(a Activation) error
	// Reset stops every worker and returns the device to its initial
	// state (section 2.1, 4.1.4.3.2). When it returns, no worker of the
	// device touches guest memory, a queue or the interrupt any more.
	Reset()
}

// Activation is what a device gets when the driver sets DRIVER_OK.
type Activation struct {
	// Features are the negotiated feature bits.
	Features uint64
	// Mem is guest memory.
	Mem Memory
	// Queues has one entry per queue, in order.
	Queues []ActiveQueue
	// Interrupt delivers used buffer and configuration change
	// notifications to the driver.
	Interrupt Interrupt
	// Fail reports that the device cannot go on (a broken queue, a
	// backend failure): the transport sets DEVICE_NEEDS_RESET and sends a
	// configuration change notification (section 2.1.2). Safe from any
	// goroutine, any number of times.
	Fail func(err error)
}

// ActiveQueue is one queue of an activated device.
type ActiveQueue struct {
	// Queue is nil if the driver did not enable the queue.
	Queue *Queue
	// Kick is signalled when the driver notifies the queue. The transport
	// owns it; the device only waits on it.
	Kick *eventfd.EventFD
}

// Interrupt is how a device notifies the driver. The transport implements
// it (MSI-X vectors or INTx and the ISR status on PCI); it may be called
// from any goroutine.
type Interrupt interface {
	// NotifyQueue sends a used buffer notification for queue index.
	NotifyQueue(index int)
	// NotifyConfig sends a configuration change notification.
	NotifyConfig()
}

// ReadConfig copies the device configuration space config at off into
// data, for Device.ReadConfig: bytes past its end read as zero, whatever
// offset and length the driver asks for.
func ReadConfig(config []byte, off uint64, data []byte) {
	for i := range data {
		if o := off + uint64(i); o >= off && o < uint64(len(config)) {
			data[i] = config[o]
		} else {
			data[i] = 0
		}
	}
}
