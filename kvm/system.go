package kvm

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// DevicePath is the KVM device node.
const DevicePath = "/dev/kvm"

// APIVersion is the only KVM API version there has ever been (api.rst,
// KVM_GET_API_VERSION: "always 12").
const APIVersion = 12

// ErrNoKVM says /dev/kvm is missing or cannot be opened.
var ErrNoKVM = errors.New("KVM is not available")

// System is an open /dev/kvm: the system fd.
type System struct {
	fd int
}

// Open opens /dev/kvm and checks the API version and the capabilities gvmm
// needs. Errors name the cause in one line (missing device, permission,
// version, capability).
func Open() (*System, error) {
	return OpenPath(DevicePath)
}

// OpenPath is Open for a given device node path.
func OpenPath(path string) (*System, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		switch {
		case errors.Is(err, unix.ENOENT):
			return nil, fmt.Errorf("%w: %s does not exist (is the kvm module loaded, or is this a VM without nested virtualization?)", ErrNoKVM, path)
		case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
			return nil, fmt.Errorf("%w: no permission to open %s (add the user to the kvm group)", ErrNoKVM, path)
		default:
			return nil, fmt.Errorf("%w: open %s: %w", ErrNoKVM, path, err)
		}
	}
	s := &System{fd: fd}
	v, err := ioctlInt(fd, reqGetAPIVersion, 0)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("%w: KVM_GET_API_VERSION on %s: %w", ErrNoKVM, path, err)
	}
	if v != APIVersion {
		s.Close()
		return nil, fmt.Errorf("%w: %s reports API version %d, want %d", ErrNoKVM, path, v, APIVersion)
	}
	for _, c := range RequiredCaps {
		if n, _ := s.CheckExtension(c); n <= 0 {
			s.Close()
			return nil, fmt.Errorf("%w: %s lacks %s", ErrNoKVM, path, CapName(c))
		}
	}
	return s, nil
}

// Available reports whether /dev/kvm exists and opens, with the reason when
// it does not. Tests use it to skip with a message.
func Available() (bool, string) {
	if _, err := os.Stat(DevicePath); err != nil {
		return false, DevicePath + " does not exist"
	}
	s, err := Open()
	if err != nil {
		return false, err.Error()
	}
	s.Close()
	return true, ""
}

// FD returns the raw file descriptor, for callers that need an ioctl this
// package does not wrap.
func (s *System) FD() int { return s.fd }

// Close closes /dev/kvm. VMs created from it stay valid: each holds its own
// reference in the kernel.
func (s *System) Close() error {
	if s.fd < 0 {
		return nil
	}
	err := unix.Close(s.fd)
	s.fd = -1
	if err != nil {
		return fmt.Errorf("close %s: %w", DevicePath, err)
	}
	return nil
}

// CheckExtension returns KVM_CHECK_EXTENSION of cap on the system fd: 0 when
// unsupported, otherwise 1 or a capability-specific value.
func (s *System) CheckExtension(cap int) (int, error) {
	n, err := ioctlInt(s.fd, reqCheckExtension, uintptr(cap))
	if err != nil {
		return n, fmt.Errorf("KVM_CHECK_EXTENSION %s: %w", CapName(cap), err)
	}
	return n, nil
}

// VCPUMmapSize returns the size of the area to mmap from each vCPU fd.
func (s *System) VCPUMmapSize() (int, error) {
	n, err := ioctlInt(s.fd, reqGetVCPUMmapSize, 0)
	if err != nil {
		return n, fmt.Errorf("KVM_GET_VCPU_MMAP_SIZE: %w", err)
	}
	return n, nil
}

// MaxVCPUs returns the largest vCPU count KVM allows in one VM
// (KVM_CAP_MAX_VCPUS, falling back to KVM_CAP_NR_VCPUS, then 4, per api.rst).
func (s *System) MaxVCPUs() int {
	if n, _ := s.CheckExtension(CapMaxVCPUs); n > 0 {
		return n
	}
	if n, _ := s.CheckExtension(CapNrVCPUs); n > 0 {
		return n
	}
	return 4
}

// RecommendedVCPUs returns KVM_CAP_NR_VCPUS, the vCPU count KVM recommends
// (usually the host's CPU count).
func (s *System) RecommendedVCPUs() int {
	if n, _ := s.CheckExtension(CapNrVCPUs); n > 0 {
		return n
	}
	return 4
}

// cpuid2 is struct kvm_cpuid2 with room for maxCPUIDEntries entries.
type cpuid2 struct {
	Nent    uint32
	_       uint32
	Entries [maxCPUIDEntries]CPUIDEntry
}

// maxCPUIDEntries bounds the CPUID table; KVM's own limit is
// KVM_MAX_CPUID_ENTRIES = 256.
const maxCPUIDEntries = 256

// SupportedCPUID returns KVM_GET_SUPPORTED_CPUID: every CPUID leaf KVM can
// present to a guest, with the feature bits it supports.
func (s *System) SupportedCPUID() ([]CPUIDEntry, error) {
	c := &cpuid2{Nent: maxCPUIDEntries}
	if _, err := ioctlPtr(s.fd, reqGetSupportedCPUID, unsafe.Pointer(c)); err != nil {
		return nil, fmt.Errorf("KVM_GET_SUPPORTED_CPUID: %w", err)
	}
	return append([]CPUIDEntry(nil), c.Entries[:c.Nent]...), nil
}

// CreateVM creates a VM (KVM_CREATE_VM, machine type 0).
func (s *System) CreateVM() (*VM, error) {
	fd, err := ioctlInt(s.fd, reqCreateVM, 0)
	if err != nil {
		return nil, fmt.Errorf("KVM_CREATE_VM: %w", err)
	}
	mmapSize, err := s.VCPUMmapSize()
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &VM{fd: fd, vcpuMmapSize: mmapSize}, nil
}
