// Package virtio is the transport- and device-independent core of gvmm's
// virtio devices (virtio 1.2, OASIS): feature and status bits, the split
// virtqueue (queue.go), descriptor chains as lists of guest buffers
// (iovec.go), and the contract between a device model and its transport
// (device.go).
//
// The layers, each knowing nothing of the ones around it:
//
//	virtio         Queue, Chain, Device, Interrupt: no PCI, no KVM
//	virtio/pci     the virtio-over-PCI transport (virtio 1.2 section 4.1)
//	virtio/blk     the block device (section 5.2); its file backend in virtio/blk/disk
//
// A device implements Device. The transport negotiates features, collects the
// queue addresses the driver programs, and on DRIVER_OK calls
// Device.Activate with one ActiveQueue per queue: the Queue itself, an
// eventfd that the driver's notifications signal (through KVM_IOEVENTFD, so
// a kick never exits to userspace) and the Interrupt to raise. The device
// then runs its queues on worker goroutines of its own, off the vCPU
// threads, until Device.Reset stops them.
//
// # The guest is untrusted
//
// Everything a queue reads from guest memory is copied out once and checked
// before use: ring indices against the queue size, descriptor indices
// against the table they index, every buffer against guest RAM (Memory).
// Chains are bounded by the queue size, so a looping chain ends in an
// error, not a hang. A queue that saw a malformed ring is broken: it returns
// ErrBroken from then on, and the device reports it with Activation.Fail,
// which makes the transport set DEVICE_NEEDS_RESET (section 2.1.1).
//
// # Memory ordering
//
// The rings are shared with vCPUs running concurrently. The queue reads the
// driver's avail index with a 32-bit atomic load before it reads the ring
// entries and descriptors the index covers, publishes used elements before
// the used index with an atomic store (XCHG, a full barrier on x86-64), and
// places a full barrier between writing avail_event or the used flags and
// re-reading the avail index (section 2.7.10, the "race" the spec warns of).
package virtio
