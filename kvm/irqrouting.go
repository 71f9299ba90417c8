package kvm

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// This file holds GSI routing and the irqfd and ioeventfd variants
// message-signalled and level-triggered device interrupts need (api.rst
// sections KVM_SET_GSI_ROUTING, KVM_IRQFD, KVM_IOEVENTFD). Its ioctls are
// issued with unix.Syscall directly, each pointer converted in the call
// expression.

// Request numbers, _IOW(KVMIO, nr, size) (include/uapi/linux/kvm.h):
// direction write (1) in bits 31:30, the argument size in bits 29:16,
// KVMIO (0xAE) in bits 15:8, nr in bits 7:0.
const (
	// KVM_SET_GSI_ROUTING: _IOW(KVMIO, 0x6a, struct kvm_irq_routing), whose
	// header is 8 bytes.
	reqSetGSIRouting = 1<<30 | 8<<16 | 0xAE<<8 | 0x6a
	// KVM_IRQFD: _IOW(KVMIO, 0x76, struct kvm_irqfd), 32 bytes.
	reqIRQFDRouting = 1<<30 | 32<<16 | 0xAE<<8 | 0x76
	// KVM_IOEVENTFD: _IOW(KVMIO, 0x79, struct kvm_ioeventfd), 64 bytes.
	reqIOEventFDRouting = 1<<30 | 64<<16 | 0xAE<<8 | 0x79
)

// More capabilities (KVM_CAP_*).
const (
	CapIRQFDResample = 82
	CapSignalMSI     = 77
)

// Routing entry types and irqchips (KVM_IRQ_ROUTING_*, KVM_IRQCHIP_*).
const (
	IRQRoutingIRQChip = 1
	IRQRoutingMSI     = 2

	IRQChipPICMaster = 0
	IRQChipPICSlave  = 1
	IRQChipIOAPIC    = 2
)

// irqfd flags (KVM_IRQFD_FLAG_*).
const (
	IRQFDDeassign = 1 << 0
	// IRQFDResample makes the GSI level-triggered: the irqfd asserts it,
	// and the guest's EOI de-asserts it and signals the resample eventfd.
	IRQFDResample = 1 << 1
)

// MaxIRQRoutes is KVM_MAX_IRQ_ROUTES: the size of the routing table.
const MaxIRQRoutes = 4096

// IRQRoutingEntry mirrors struct kvm_irq_routing_entry, 48 bytes: a GSI
// and where it goes, an irqchip pin or an MSI message.
type IRQRoutingEntry struct {
	GSI   uint32
	Type  uint32
	Flags uint32
	_     uint32
	// U is the union: {irqchip, pin} for IRQRoutingIRQChip, {address_lo,
	// address_hi, data} for IRQRoutingMSI.
	U [8]uint32
}

// IRQChipRoute routes gsi to pin of an in-kernel irqchip.
func IRQChipRoute(gsi, chip, pin uint32) IRQRoutingEntry {
	return IRQRoutingEntry{GSI: gsi, Type: IRQRoutingIRQChip, U: [8]uint32{chip, pin}}
}

// MSIRoute routes gsi to an MSI message.
func MSIRoute(gsi uint32, address uint64, data uint32) IRQRoutingEntry {
	return IRQRoutingEntry{GSI: gsi, Type: IRQRoutingMSI, U: [8]uint32{uint32(address), uint32(address >> 32), data}}
}

// DefaultIRQRoutes returns the routing KVM installs with
// KVM_CREATE_IRQCHIP (kvm_setup_default_irq_routing,
// arch/x86/kvm/irq_comm.c): GSI 0-15 to the I/O APIC pin and the PIC pin of
// the same number, GSI 16-23 to the I/O APIC. KVM_SET_GSI_ROUTING replaces
// the whole table, so a table with MSI routes starts with these.
func DefaultIRQRoutes() []IRQRoutingEntry {
	var r []IRQRoutingEntry
	for gsi := uint32(0); gsi < 24; gsi++ {
		r = append(r, IRQChipRoute(gsi, IRQChipIOAPIC, gsi))
		if gsi < 16 {
			chip := uint32(IRQChipPICMaster)
			if gsi >= 8 {
				chip = IRQChipPICSlave
			}
			r = append(r, IRQChipRoute(gsi, chip, gsi%8))
		}
	}
	return r
}

// SetGSIRouting replaces the VM's GSI routing table (KVM_SET_GSI_ROUTING).
func (vm *VM) SetGSIRouting(entries []IRQRoutingEntry) error {
	if len(entries) > MaxIRQRoutes {
		return fmt.Errorf("KVM_SET_GSI_ROUTING: %d entries, at most %d", len(entries), MaxIRQRoutes)
	}
	// struct kvm_irq_routing: u32 nr, u32 flags, then the entries. The
	// buffer is Go memory the kernel reads during the call.
	const hdr = 8
	entrySize := int(unsafe.Sizeof(IRQRoutingEntry{}))
	buf := make([]uint64, (hdr+len(entries)*entrySize+7)/8)
	b := unsafe.Slice((*byte)(unsafe.Pointer(&buf[0])), len(buf)*8)
	*(*uint32)(unsafe.Pointer(&b[0])) = uint32(len(entries))
	for i := range entries {
		*(*IRQRoutingEntry)(unsafe.Pointer(&b[hdr+i*entrySize])) = entries[i]
	}
	for {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(vm.fd), reqSetGSIRouting, uintptr(unsafe.Pointer(&buf[0])))
		switch errno {
		case 0:
			return nil
		case unix.EINTR:
			continue
		}
		return fmt.Errorf("KVM_SET_GSI_ROUTING (%d entries): %w", len(entries), errno)
	}
}

// irqfdArgs mirrors struct kvm_irqfd, 32 bytes.
type irqfdArgs struct {
	FD         uint32
	GSI        uint32
	Flags      uint32
	ResampleFD uint32
	_          [16]uint8
}

func (vm *VM) irqfd(a irqfdArgs) error {
	for {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(vm.fd), reqIRQFDRouting, uintptr(unsafe.Pointer(&a)))
		switch errno {
		case 0:
			return nil
		case unix.EINTR:
			continue
		}
		return errno
	}
}

// AssignIRQFD makes a write to eventfd fd inject GSI gsi (KVM_IRQFD). With
// resampleFD >= 0 the GSI is treated as level-triggered
// (KVM_IRQFD_FLAG_RESAMPLE): fd asserts it, and when the guest acknowledges
// the interrupt KVM de-asserts it and signals resampleFD, so that the VMM
// can assert it again if its device still wants service.
func (vm *VM) AssignIRQFD(fd int, gsi uint32, resampleFD int) error {
	a := irqfdArgs{FD: uint32(fd), GSI: gsi}
	if resampleFD >= 0 {
		a.Flags, a.ResampleFD = IRQFDResample, uint32(resampleFD)
	}
	if err := vm.irqfd(a); err != nil {
		return fmt.Errorf("KVM_IRQFD gsi %d: %w", gsi, err)
	}
	return nil
}

// DeassignIRQFD detaches eventfd fd from GSI gsi (KVM_IRQFD_FLAG_DEASSIGN).
func (vm *VM) DeassignIRQFD(fd int, gsi uint32) error {
	if err := vm.irqfd(irqfdArgs{FD: uint32(fd), GSI: gsi, Flags: IRQFDDeassign}); err != nil {
		return fmt.Errorf("KVM_IRQFD deassign gsi %d: %w", gsi, err)
	}
	return nil
}

// ioeventfdArgs mirrors struct kvm_ioeventfd, 64 bytes.
type ioeventfdArgs struct {
	Datamatch uint64
	Addr      uint64
	Len       uint32
	FD        int32
	Flags     uint32
	_         [36]uint8
}

// SetIOEventFD assigns (or with deassign, removes) an MMIO ioeventfd: a
// guest write of length bytes to addr signals eventfd fd inside the kernel,
// with no exit to userspace (KVM_IOEVENTFD, any data).
func (vm *VM) SetIOEventFD(fd int, addr uint64, length uint32, deassign bool) error {
	a := ioeventfdArgs{Addr: addr, Len: length, FD: int32(fd)}
	if deassign {
		a.Flags = IOEventFDDeassign
	}
	for {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(vm.fd), reqIOEventFDRouting, uintptr(unsafe.Pointer(&a)))
		switch errno {
		case 0:
			return nil
		case unix.EINTR:
			continue
		}
		return fmt.Errorf("KVM_IOEVENTFD %#x (%d bytes, deassign %v): %w", addr, length, deassign, errno)
	}
}
