// Package pci is gvmm's PCI bus: a host bridge reached through
// configuration mechanism #1 (ports 0xCF8/0xCFC) and ECAM (PCI Express
// memory-mapped configuration), type-0 functions with their configuration
// space, memory BARs and capability list, and the MSI-X capability.
//
// References: PCI Local Bus Specification 3.0 (configuration mechanism #1
// section 3.2.2.3.2, configuration header 6.1, BARs 6.2.5.1, capabilities
// 6.7, MSI-X 6.8.2) and PCI Express Base Specification 4.0 section 7.2.2
// (ECAM). There are no PCI-to-PCI bridges: one bus, single-function
// devices.
//
// # What the guest can change
//
// The guest sizes and moves BARs and turns memory decoding on and off in
// the command register. A Function reports each change of where a BAR is
// decoded to its BAR hooks: the Root moves the BAR's handler on the MMIO
// bus (devices.Bus.Move, Remove), and a device moves whatever it registered
// at absolute addresses (a virtio transport's ioeventfds). A BAR is decoded
// only while memory space is enabled, its address is non-zero and the range
// fits (below 4 GiB for a 32-bit BAR) without overlapping another device.
//
// # Interrupts
//
// A function raises INTx through a devices.IRQLine (its pin is routed by
// the ACPI _PRT; see INTxGSI), or message-signalled interrupts through
// MSIX, which hands each unmasked vector's message to an MSIVector. The VMM
// implements MSIVector (with KVM GSI routing and an irqfd); nothing here
// knows of KVM.
package pci
