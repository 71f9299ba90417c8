package kvm

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"unsafe"
)

// Capabilities for userspace MSR handling (include/uapi/linux/kvm.h).
const (
	CapX86UserSpaceMSR = 188
	CapX86MSRFilter    = 189
)

// MSR exit reasons enabled with CapX86UserSpaceMSR (KVM_MSR_EXIT_REASON_*).
const (
	MSRExitReasonInval   = 1 << 0
	MSRExitReasonUnknown = 1 << 1
	MSRExitReasonFilter  = 1 << 2
)

// MSR filter flags (KVM_MSR_FILTER_*): a range applies to reads, writes or
// both; a set bit in its bitmap allows the access, a clear bit denies it
// (and, with MSRExitReasonFilter, turns it into an exit to userspace).
const (
	MSRFilterRead  = 1 << 0
	MSRFilterWrite = 1 << 1
)

// MSRFilterRange is one range of a KVM_X86_SET_MSR_FILTER call.
type MSRFilterRange struct {
	Flags uint32
	Base  uint32
	// Count is the number of MSRs from Base the range covers; Bitmap has
	// one bit for each, 1 = allow.
	Count  uint32
	Bitmap []byte
}

// msrFilterRange mirrors struct kvm_msr_filter_range, 24 bytes.
type msrFilterRange struct {
	Flags  uint32
	NMSRs  uint32
	Base   uint32
	_      uint32
	Bitmap uintptr
}

// msrFilter mirrors struct kvm_msr_filter: flags and 16 ranges.
type msrFilter struct {
	Flags  uint32
	_      uint32
	Ranges [16]msrFilterRange
}

var reqSetMSRFilter = iow(0xc6, sizeOf[msrFilter]())

// SetMSRFilter installs an MSR filter (KVM_X86_SET_MSR_FILTER); MSRs outside
// every range are allowed (KVM_MSR_FILTER_DEFAULT_ALLOW).
//
// struct kvm_msr_filter_range holds its bitmap as a bare address, which the
// kernel copies during the call. The bitmaps are copied to memory this
// call allocates on the heap (where Go never moves an object), and kept
// alive until the ioctl has returned: a caller's bitmap might live on a
// stack, which moves, and nothing else would keep the copy from being
// collected while the kernel reads it.
func (vm *VM) SetMSRFilter(ranges []MSRFilterRange) error {
	if len(ranges) > len(msrFilter{}.Ranges) {
		return fmt.Errorf("KVM_X86_SET_MSR_FILTER: %d ranges, at most %d", len(ranges), len(msrFilter{}.Ranges))
	}
	f := new(msrFilter)
	bitmaps := make([][]byte, len(ranges))
	for i, r := range ranges {
		n := (uint64(r.Count) + 7) / 8
		if r.Count == 0 || uint64(len(r.Bitmap)) < n {
			return fmt.Errorf("KVM_X86_SET_MSR_FILTER: %d MSRs need %d bitmap bytes, have %d", r.Count, n, len(r.Bitmap))
		}
		bitmaps[i] = append(make([]byte, 0, n), r.Bitmap[:n]...)
		f.Ranges[i] = msrFilterRange{Flags: r.Flags, NMSRs: r.Count, Base: r.Base,
			Bitmap: uintptr(unsafe.Pointer(&bitmaps[i][0]))}
	}
	_, err := ioctlPtr(vm.fd, reqSetMSRFilter, unsafe.Pointer(f))
	runtime.KeepAlive(bitmaps)
	if err != nil {
		return fmt.Errorf("KVM_X86_SET_MSR_FILTER: %w", err)
	}
	return nil
}

// MSR decodes the msr member of the exit union (KVM_EXIT_X86_RDMSR and
// KVM_EXIT_X86_WRMSR): the MSR index, the value written, and why KVM
// exited.
func (r *RunData) MSR() (index uint32, data uint64, reason uint32) {
	e := &r.Exit
	return binary.LittleEndian.Uint32(e[12:]), binary.LittleEndian.Uint64(e[16:]), binary.LittleEndian.Uint32(e[8:])
}

// SetMSRResult completes an MSR exit: error != 0 makes the guest take a
// #GP; for a read, data is the value returned.
func (r *RunData) SetMSRResult(failed bool, data uint64) {
	e := &r.Exit
	e[0] = 0
	if failed {
		e[0] = 1
	}
	binary.LittleEndian.PutUint64(e[16:], data)
}
