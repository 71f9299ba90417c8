package kvm

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// kvmio is the ioctl type byte of every KVM ioctl (KVMIO in
// include/uapi/linux/kvm.h).
const kvmio = 0xAE

// Direction bits of an ioctl request number (include/uapi/asm-generic/ioctl.h).
const (
	iocNone  = 0
	iocWrite = 1
	iocRead  = 2
)

func ioc(dir, nr, size uintptr) uintptr {
	return dir<<30 | size<<16 | kvmio<<8 | nr
}

func io(nr uintptr) uintptr         { return ioc(iocNone, nr, 0) }
func iow(nr, size uintptr) uintptr  { return ioc(iocWrite, nr, size) }
func ior(nr, size uintptr) uintptr  { return ioc(iocRead, nr, size) }
func iowr(nr, size uintptr) uintptr { return ioc(iocRead|iocWrite, nr, size) }
func sizeOf[T any]() uintptr        { var v T; return unsafe.Sizeof(v) }

// Request numbers, as defined in include/uapi/linux/kvm.h.
var (
	reqGetAPIVersion       = io(0x00)
	reqCreateVM            = io(0x01)
	reqCheckExtension      = io(0x03)
	reqGetVCPUMmapSize     = io(0x04)
	reqGetSupportedCPUID   = iowr(0x05, 8) // struct kvm_cpuid2 header
	reqCreateVCPU          = io(0x41)
	reqSetUserMemoryRegion = iow(0x46, sizeOf[UserspaceMemoryRegion]())
	reqSetTSSAddr          = io(0x47)
	reqSetIdentityMapAddr  = iow(0x48, 8)
	reqCreateIRQChip       = io(0x60)
	reqIRQLine             = iow(0x61, sizeOf[irqLevel]())
	reqGetIRQChip          = iowr(0x62, sizeOf[IRQChip]())
	reqSetIRQChip          = ior(0x63, sizeOf[IRQChip]())
	reqIRQLineStatus       = iowr(0x67, sizeOf[irqLevel]())
	reqIRQFD               = iow(0x76, sizeOf[irqfd]())
	reqCreatePIT2          = iow(0x77, sizeOf[pitConfig]())
	reqIOEventFD           = iow(0x79, sizeOf[ioeventfd]())
	reqGetClock            = ior(0x7c, sizeOf[ClockData]())
	reqRun                 = io(0x80)
	reqGetRegs             = ior(0x81, sizeOf[Regs]())
	reqSetRegs             = iow(0x82, sizeOf[Regs]())
	reqGetSregs            = ior(0x83, sizeOf[Sregs]())
	reqSetSregs            = iow(0x84, sizeOf[Sregs]())
	reqTranslate           = iowr(0x85, sizeOf[Translation]())
	reqGetMSRs             = iowr(0x88, 8) // struct kvm_msrs header
	reqSetMSRs             = iow(0x89, 8)
	reqGetFPU              = ior(0x8c, sizeOf[FPU]())
	reqSetFPU              = iow(0x8d, sizeOf[FPU]())
	reqGetLAPIC            = ior(0x8e, sizeOf[LAPICState]())
	reqSetLAPIC            = iow(0x8f, sizeOf[LAPICState]())
	reqSetCPUID2           = iow(0x90, 8) // struct kvm_cpuid2 header
	reqGetCPUID2           = iowr(0x91, 8)
	reqGetMPState          = ior(0x98, sizeOf[MPState]())
	reqSetMPState          = iow(0x99, sizeOf[MPState]())
	reqSetGuestDebug       = iow(0x9b, sizeOf[GuestDebug]())
	reqGetDebugRegs        = ior(0xa1, sizeOf[DebugRegs]())
	reqSetDebugRegs        = iow(0xa2, sizeOf[DebugRegs]())
	reqGetPIT2             = ior(0x9f, sizeOf[PITState2]())
	reqSetPIT2             = iow(0xa0, sizeOf[PITState2]())
	reqGetVCPUEvents       = ior(0x9f, sizeOf[VCPUEvents]())
	reqSetVCPUEvents       = iow(0xa0, sizeOf[VCPUEvents]())
	reqEnableCap           = iow(0xa3, sizeOf[enableCap]())
	reqGetTSCKHz           = io(0xa3)
	reqGetXSave            = ior(0xa4, sizeOf[XSave]())
	reqSetXSave            = iow(0xa5, sizeOf[XSave]())
	reqKVMClockCtrl        = io(0xad)
)

// ioctlPtr issues an ioctl whose argument points to memory the kernel
// reads or writes (a struct, an array, a word). arg stays an unsafe.Pointer
// until the system call itself: converted to uintptr any earlier, for
// example before a call that is not inlined, the pointer would no longer
// be updated when the goroutine's stack moves, and the kernel would use the
// old stack (the unsafe.Pointer rules, case 4: "Conversion of a Pointer to
// a uintptr when calling syscall.Syscall"). kvm/ioctl_test.go checks every
// caller.
//
// It uses Syscall rather than RawSyscall because some requests block, and
// the Go scheduler must be told. A request interrupted by a signal (EINTR:
// Go's preemption signal interrupts KVM_CREATE_VM now and then) did nothing
// and is retried. KVM_RUN does not come through here: its EINTR means
// something to the exit loop (VCPU.Run).
func ioctlPtr(fd int, req uintptr, arg unsafe.Pointer) (int, error) {
	for {
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
		switch errno {
		case 0:
			return int(r), nil
		case unix.EINTR:
			continue
		}
		return int(r), errno
	}
}

// ioctlInt issues an ioctl whose argument is a number, not an address (a
// capability, a vCPU id, a guest-physical address), or none (0). Pointers
// go through ioctlPtr.
func ioctlInt(fd int, req, arg uintptr) (int, error) {
	for {
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
		switch errno {
		case 0:
			return int(r), nil
		case unix.EINTR:
			continue
		}
		return int(r), errno
	}
}
