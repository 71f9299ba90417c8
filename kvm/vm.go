package kvm

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// VM is a KVM virtual machine: the VM fd.
type VM struct {
	fd           int
	vcpuMmapSize int
}

// FD returns the raw VM file descriptor.
func (vm *VM) FD() int { return vm.fd }

// Close closes the VM fd. The caller must first stop and close every vCPU and
// unmap guest memory only afterwards: KVM keeps the VM alive while any vCPU
// fd is open.
func (vm *VM) Close() error {
	if vm.fd < 0 {
		return nil
	}
	err := unix.Close(vm.fd)
	vm.fd = -1
	if err != nil {
		return fmt.Errorf("close the VM fd: %w", err)
	}
	return nil
}

// CheckExtension is KVM_CHECK_EXTENSION on the VM fd (KVM_CAP_CHECK_EXTENSION_VM).
func (vm *VM) CheckExtension(cap int) (int, error) {
	n, err := ioctlInt(vm.fd, reqCheckExtension, uintptr(cap))
	if err != nil {
		return n, fmt.Errorf("KVM_CHECK_EXTENSION %s on the VM: %w", CapName(cap), err)
	}
	return n, nil
}

// SetUserMemoryRegion installs, moves or deletes (size 0) a memory slot.
func (vm *VM) SetUserMemoryRegion(r UserspaceMemoryRegion) error {
	if _, err := ioctlPtr(vm.fd, reqSetUserMemoryRegion, unsafe.Pointer(&r)); err != nil {
		return fmt.Errorf("KVM_SET_USER_MEMORY_REGION slot %d at %#x (%d bytes): %w", r.Slot, r.GuestPhysAddr, r.MemorySize, err)
	}
	return nil
}

// SetTSSAddr places the three-page TSS region Intel VMX needs for real-mode
// emulation (api.rst, KVM_SET_TSS_ADDR). It must lie in guest-physical space
// that is not RAM.
func (vm *VM) SetTSSAddr(addr uint64) error {
	if _, err := ioctlInt(vm.fd, reqSetTSSAddr, uintptr(addr)); err != nil {
		return fmt.Errorf("KVM_SET_TSS_ADDR %#x: %w", addr, err)
	}
	return nil
}

// SetIdentityMapAddr places the one-page EPT identity map (api.rst,
// KVM_SET_IDENTITY_MAP_ADDR), which must not overlap RAM or the TSS.
func (vm *VM) SetIdentityMapAddr(addr uint64) error {
	a := addr
	if _, err := ioctlPtr(vm.fd, reqSetIdentityMapAddr, unsafe.Pointer(&a)); err != nil {
		return fmt.Errorf("KVM_SET_IDENTITY_MAP_ADDR %#x: %w", addr, err)
	}
	return nil
}

// CreateIRQChip creates the in-kernel PIC pair, IOAPIC and local APICs.
func (vm *VM) CreateIRQChip() error {
	if _, err := ioctlInt(vm.fd, reqCreateIRQChip, 0); err != nil {
		return fmt.Errorf("KVM_CREATE_IRQCHIP: %w", err)
	}
	return nil
}

// PITSpeakerDummy asks KVM to emulate a dummy PC speaker port (0x61)
// (KVM_PIT_SPEAKER_DUMMY), so the guest's PIT calibration reads don't exit.
const PITSpeakerDummy = 1

// CreatePIT2 creates the in-kernel i8254 PIT.
func (vm *VM) CreatePIT2(flags uint32) error {
	c := pitConfig{Flags: flags}
	if _, err := ioctlPtr(vm.fd, reqCreatePIT2, unsafe.Pointer(&c)); err != nil {
		return fmt.Errorf("KVM_CREATE_PIT2: %w", err)
	}
	return nil
}

// PIT2 returns the in-kernel PIT's state.
func (vm *VM) PIT2() (PITState2, error) {
	var s PITState2
	if _, err := ioctlPtr(vm.fd, reqGetPIT2, unsafe.Pointer(&s)); err != nil {
		return s, fmt.Errorf("KVM_GET_PIT2: %w", err)
	}
	return s, nil
}

// SetPIT2 sets the in-kernel PIT's state.
func (vm *VM) SetPIT2(s PITState2) error {
	if _, err := ioctlPtr(vm.fd, reqSetPIT2, unsafe.Pointer(&s)); err != nil {
		return fmt.Errorf("KVM_SET_PIT2: %w", err)
	}
	return nil
}

// IRQChip returns the state of an in-kernel interrupt controller
// (chip 0 = master PIC, 1 = slave PIC, 2 = IOAPIC).
func (vm *VM) IRQChip(chip uint32) (IRQChip, error) {
	c := IRQChip{ChipID: chip}
	if _, err := ioctlPtr(vm.fd, reqGetIRQChip, unsafe.Pointer(&c)); err != nil {
		return c, fmt.Errorf("KVM_GET_IRQCHIP %d: %w", chip, err)
	}
	return c, nil
}

// SetIRQChip sets the state of an in-kernel interrupt controller.
func (vm *VM) SetIRQChip(c IRQChip) error {
	if _, err := ioctlPtr(vm.fd, reqSetIRQChip, unsafe.Pointer(&c)); err != nil {
		return fmt.Errorf("KVM_SET_IRQCHIP %d: %w", c.ChipID, err)
	}
	return nil
}

// IRQLine sets the level of a GSI on the in-kernel irqchip (KVM_IRQ_LINE).
// It allocates nothing, so device code may call it on every register access.
func (vm *VM) IRQLine(gsi uint32, high bool) error {
	l := irqLevel{IRQ: gsi}
	if high {
		l.Level = 1
	}
	if _, err := ioctlPtr(vm.fd, reqIRQLine, unsafe.Pointer(&l)); err != nil {
		return fmt.Errorf("KVM_IRQ_LINE gsi %d: %w", gsi, err)
	}
	return nil
}

// IRQFD makes a write to eventfd fd inject GSI gsi (KVM_IRQFD).
func (vm *VM) IRQFD(fd int, gsi uint32) error {
	r := irqfd{FD: uint32(fd), GSI: gsi}
	if _, err := ioctlPtr(vm.fd, reqIRQFD, unsafe.Pointer(&r)); err != nil {
		return fmt.Errorf("KVM_IRQFD gsi %d: %w", gsi, err)
	}
	return nil
}

// ioeventfd flags (KVM_IOEVENTFD_FLAG_*).
const (
	IOEventFDDatamatch = 1 << 0
	IOEventFDPIO       = 1 << 1
	IOEventFDDeassign  = 1 << 2
)

// IOEventFD makes a guest write of length bytes to addr (a port when flags
// has IOEventFDPIO) signal eventfd fd inside the kernel, without an exit to
// userspace (KVM_IOEVENTFD).
func (vm *VM) IOEventFD(fd int, addr uint64, length uint32, datamatch uint64, flags uint32) error {
	r := ioeventfd{Datamatch: datamatch, Addr: addr, Len: length, FD: int32(fd), Flags: flags}
	if _, err := ioctlPtr(vm.fd, reqIOEventFD, unsafe.Pointer(&r)); err != nil {
		return fmt.Errorf("KVM_IOEVENTFD %#x: %w", addr, err)
	}
	return nil
}

// EnableCap enables a VM capability with its arguments (KVM_ENABLE_CAP).
func (vm *VM) EnableCap(cap uint32, args ...uint64) error {
	c := enableCap{Cap: cap}
	copy(c.Args[:], args)
	if _, err := ioctlPtr(vm.fd, reqEnableCap, unsafe.Pointer(&c)); err != nil {
		return fmt.Errorf("KVM_ENABLE_CAP %s: %w", CapName(int(cap)), err)
	}
	return nil
}

// Clock returns the VM's kvmclock (KVM_GET_CLOCK).
func (vm *VM) Clock() (ClockData, error) {
	var c ClockData
	if _, err := ioctlPtr(vm.fd, reqGetClock, unsafe.Pointer(&c)); err != nil {
		return c, fmt.Errorf("KVM_GET_CLOCK: %w", err)
	}
	return c, nil
}

// CreateVCPU creates vCPU id and maps its kvm_run area.
func (vm *VM) CreateVCPU(id int) (*VCPU, error) {
	fd, err := ioctlInt(vm.fd, reqCreateVCPU, uintptr(id))
	if err != nil {
		return nil, fmt.Errorf("KVM_CREATE_VCPU %d: %w", id, err)
	}
	if vm.vcpuMmapSize < int(unsafe.Sizeof(RunData{})) {
		unix.Close(fd)
		return nil, fmt.Errorf("vCPU %d: KVM_GET_VCPU_MMAP_SIZE %d is smaller than struct kvm_run", id, vm.vcpuMmapSize)
	}
	m, err := unix.Mmap(fd, 0, vm.vcpuMmapSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("mmap vCPU %d run area: %w", id, err)
	}
	return &VCPU{fd: fd, id: id, mmap: m, run: runData(m)}, nil
}
