// Package pci is the virtio-over-PCI transport (virtio 1.2 section 4.1),
// modern only: a PCI function with vendor 0x1AF4 and device 0x1040 plus the
// virtio device type, revision 1, whose BAR 0 holds the common
// configuration, notification, ISR and device-specific configuration
// structures and the MSI-X table, each described by a vendor-specific
// capability (section 4.1.4). Linux's virtio_pci (modern) binds to it.
//
// BAR 0 (32 KiB, 32-bit memory):
//
//	0x0000  common configuration (struct virtio_pci_common_cfg, 0x40 bytes)
//	0x1000  ISR status (1 byte)
//	0x2000  device-specific configuration (up to 4 KiB)
//	0x3000  notifications: queue q at 0x3000 + 4*q (notify_off_multiplier 4)
//	0x4000  MSI-X table, one 16-byte entry per vector (up to 256)
//	0x5000  MSI-X pending bit array
//
// Queue notifications reach the device without an exit to userspace: each
// queue's notify address is registered with IOEvents (KVM_IOEVENTFD) to
// signal the queue's eventfd, and is moved whenever the guest moves BAR 0.
// A write that still reaches the MMIO handler (no IOEvents, or an access
// size KVM did not match) signals the same eventfd.
//
// Interrupts: with MSI-X enabled, queue q raises the vector the driver
// wrote to its queue_msix_vector, and configuration changes the one in
// config_msix_vector. Otherwise the transport sets the ISR bits and raises
// INTx, which stays high until the driver reads the ISR (section 4.1.4.5).
package pci
