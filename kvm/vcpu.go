package kvm

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// VCPU is a virtual CPU: its fd and its mmap'ed kvm_run area.
type VCPU struct {
	fd   int
	id   int
	mmap []byte
	run  *RunData
}

// ID returns the vCPU index it was created with (its APIC ID).
func (v *VCPU) ID() int { return v.id }

// FD returns the raw vCPU file descriptor.
func (v *VCPU) FD() int { return v.fd }

// RunData returns the shared kvm_run structure. It stays valid until Close.
func (v *VCPU) RunData() *RunData { return v.run }

// RunPage returns the whole mmap'ed run area; IO exit data lives in it at the
// offset the exit reports.
func (v *VCPU) RunPage() []byte { return v.mmap }

// Close unmaps the run area and closes the vCPU fd. The vCPU must not be
// running.
func (v *VCPU) Close() error {
	if v.fd < 0 {
		return nil
	}
	var errs []error
	if v.mmap != nil {
		if err := unix.Munmap(v.mmap); err != nil {
			errs = append(errs, fmt.Errorf("unmap vCPU %d run area: %w", v.id, err))
		}
		v.mmap, v.run = nil, nil
	}
	if err := unix.Close(v.fd); err != nil {
		errs = append(errs, fmt.Errorf("close vCPU %d: %w", v.id, err))
	}
	v.fd = -1
	return errors.Join(errs...)
}

// Run enters the guest (KVM_RUN) until the next exit to userspace. It returns
// unix.EINTR when a signal interrupted it (Go's preemption signal does this
// routinely, and so does a kick); callers retry. It allocates nothing, so
// its errors are the bare errno: the exit loop wraps them.
func (v *VCPU) Run() error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(v.fd), reqRun, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// Regs returns the general-purpose registers.
func (v *VCPU) Regs() (Regs, error) {
	var r Regs
	if _, err := ioctlPtr(v.fd, reqGetRegs, unsafe.Pointer(&r)); err != nil {
		return r, fmt.Errorf("KVM_GET_REGS vCPU %d: %w", v.id, err)
	}
	return r, nil
}

// SetRegs sets the general-purpose registers.
func (v *VCPU) SetRegs(r Regs) error {
	if _, err := ioctlPtr(v.fd, reqSetRegs, unsafe.Pointer(&r)); err != nil {
		return fmt.Errorf("KVM_SET_REGS vCPU %d: %w", v.id, err)
	}
	return nil
}

// Sregs returns the special registers.
func (v *VCPU) Sregs() (Sregs, error) {
	var s Sregs
	if _, err := ioctlPtr(v.fd, reqGetSregs, unsafe.Pointer(&s)); err != nil {
		return s, fmt.Errorf("KVM_GET_SREGS vCPU %d: %w", v.id, err)
	}
	return s, nil
}

// SetSregs sets the special registers.
func (v *VCPU) SetSregs(s Sregs) error {
	if _, err := ioctlPtr(v.fd, reqSetSregs, unsafe.Pointer(&s)); err != nil {
		return fmt.Errorf("KVM_SET_SREGS vCPU %d: %w", v.id, err)
	}
	return nil
}

// FPU returns the legacy FPU/SSE state.
func (v *VCPU) FPU() (FPU, error) {
	var f FPU
	if _, err := ioctlPtr(v.fd, reqGetFPU, unsafe.Pointer(&f)); err != nil {
		return f, fmt.Errorf("KVM_GET_FPU vCPU %d: %w", v.id, err)
	}
	return f, nil
}

// SetFPU sets the legacy FPU/SSE state.
func (v *VCPU) SetFPU(f FPU) error {
	if _, err := ioctlPtr(v.fd, reqSetFPU, unsafe.Pointer(&f)); err != nil {
		return fmt.Errorf("KVM_SET_FPU vCPU %d: %w", v.id, err)
	}
	return nil
}

// XSave returns the vCPU's XSAVE image (KVM_GET_XSAVE).
func (v *VCPU) XSave() (*XSave, error) {
	x := new(XSave)
	if _, err := ioctlPtr(v.fd, reqGetXSave, unsafe.Pointer(x)); err != nil {
		return nil, fmt.Errorf("KVM_GET_XSAVE vCPU %d: %w", v.id, err)
	}
	return x, nil
}

// SetXSave sets the vCPU's XSAVE image (KVM_SET_XSAVE).
func (v *VCPU) SetXSave(x *XSave) error {
	if _, err := ioctlPtr(v.fd, reqSetXSave, unsafe.Pointer(x)); err != nil {
		return fmt.Errorf("KVM_SET_XSAVE vCPU %d: %w", v.id, err)
	}
	return nil
}

// msrs is struct kvm_msrs with room for maxMSRs entries.
type msrs struct {
	N       uint32
	_       uint32
	Entries [maxMSRs]MSREntry
}

const maxMSRs = 64

// SetMSRs writes model-specific registers. KVM returns how many it set; fewer
// than asked is reported as an error naming the first one refused.
func (v *VCPU) SetMSRs(entries []MSREntry) error {
	if len(entries) > maxMSRs {
		return fmt.Errorf("KVM_SET_MSRS: %d entries, at most %d", len(entries), maxMSRs)
	}
	m := &msrs{N: uint32(len(entries))}
	copy(m.Entries[:], entries)
	n, err := ioctlPtr(v.fd, reqSetMSRs, unsafe.Pointer(m))
	if err != nil {
		return fmt.Errorf("KVM_SET_MSRS vCPU %d: %w", v.id, err)
	}
	if n != len(entries) {
		return fmt.Errorf("KVM_SET_MSRS vCPU %d: MSR %#x refused", v.id, entries[n].Index)
	}
	return nil
}

// MSRs reads the model-specific registers named by the Index of each entry
// and fills in their Data.
func (v *VCPU) MSRs(entries []MSREntry) error {
	if len(entries) > maxMSRs {
		return fmt.Errorf("KVM_GET_MSRS: %d entries, at most %d", len(entries), maxMSRs)
	}
	m := &msrs{N: uint32(len(entries))}
	copy(m.Entries[:], entries)
	n, err := ioctlPtr(v.fd, reqGetMSRs, unsafe.Pointer(m))
	if err != nil {
		return fmt.Errorf("KVM_GET_MSRS vCPU %d: %w", v.id, err)
	}
	copy(entries, m.Entries[:n])
	if n != len(entries) {
		return fmt.Errorf("KVM_GET_MSRS vCPU %d: MSR %#x unreadable", v.id, entries[n].Index)
	}
	return nil
}

// SetCPUID2 sets the CPUID table the guest sees (KVM_SET_CPUID2).
func (v *VCPU) SetCPUID2(entries []CPUIDEntry) error {
	if len(entries) > maxCPUIDEntries {
		return fmt.Errorf("KVM_SET_CPUID2: %d entries, at most %d", len(entries), maxCPUIDEntries)
	}
	c := &cpuid2{Nent: uint32(len(entries))}
	copy(c.Entries[:], entries)
	if _, err := ioctlPtr(v.fd, reqSetCPUID2, unsafe.Pointer(c)); err != nil {
		return fmt.Errorf("KVM_SET_CPUID2 vCPU %d: %w", v.id, err)
	}
	return nil
}

// CPUID2 reads back the CPUID table KVM actually uses (KVM_GET_CPUID2). Some
// hosts force features back in; comparing with what was set reveals them.
//
// Linux 6.1 does not report the table's length: on success it leaves nent
// as passed, and on E2BIG (a buffer too small) it does not copy nent back
// either (kvm_vcpu_ioctl_get_cpuid2, arch/x86/kvm/cpuid.c; later kernels
// set it on success). The length is therefore the smallest nent the call
// accepts, found by bisection (at most 9 calls, once per VM) unless the
// kernel wrote it back.
func (v *VCPU) CPUID2() ([]CPUIDEntry, error) {
	c := &cpuid2{}
	get := func(n uint32) error {
		c.Nent = n
		_, err := ioctlPtr(v.fd, reqGetCPUID2, unsafe.Pointer(c))
		return err
	}
	if err := get(maxCPUIDEntries); err != nil {
		return nil, fmt.Errorf("KVM_GET_CPUID2 vCPU %d: %w", v.id, err)
	}
	if c.Nent == maxCPUIDEntries {
		lo, hi := uint32(0), uint32(maxCPUIDEntries) // get(hi) succeeds
		for lo < hi {
			mid := (lo + hi) / 2
			switch err := get(mid); {
			case err == nil:
				hi = mid
			case errors.Is(err, unix.E2BIG):
				lo = mid + 1
			default:
				return nil, fmt.Errorf("KVM_GET_CPUID2 vCPU %d: %w", v.id, err)
			}
		}
		if err := get(hi); err != nil {
			return nil, fmt.Errorf("KVM_GET_CPUID2 vCPU %d: %w", v.id, err)
		}
		c.Nent = hi
	}
	if c.Nent > maxCPUIDEntries {
		return nil, fmt.Errorf("KVM_GET_CPUID2 vCPU %d: %d entries, at most %d", v.id, c.Nent, maxCPUIDEntries)
	}
	return append([]CPUIDEntry(nil), c.Entries[:c.Nent]...), nil
}

// VCPUEvents returns pending and injected events.
func (v *VCPU) VCPUEvents() (VCPUEvents, error) {
	var e VCPUEvents
	if _, err := ioctlPtr(v.fd, reqGetVCPUEvents, unsafe.Pointer(&e)); err != nil {
		return e, fmt.Errorf("KVM_GET_VCPU_EVENTS vCPU %d: %w", v.id, err)
	}
	return e, nil
}

// SetVCPUEvents sets pending and injected events, for example to inject an
// exception.
func (v *VCPU) SetVCPUEvents(e VCPUEvents) error {
	if _, err := ioctlPtr(v.fd, reqSetVCPUEvents, unsafe.Pointer(&e)); err != nil {
		return fmt.Errorf("KVM_SET_VCPU_EVENTS vCPU %d: %w", v.id, err)
	}
	return nil
}

// Translate maps a guest-virtual address through the vCPU's current page
// tables (KVM_TRANSLATE).
func (v *VCPU) Translate(gva uint64) (Translation, error) {
	t := Translation{LinearAddress: gva}
	if _, err := ioctlPtr(v.fd, reqTranslate, unsafe.Pointer(&t)); err != nil {
		return t, fmt.Errorf("KVM_TRANSLATE vCPU %d %#x: %w", v.id, gva, err)
	}
	return t, nil
}

// MPState returns the vCPU's multiprocessing state.
func (v *VCPU) MPState() (uint32, error) {
	var s MPState
	if _, err := ioctlPtr(v.fd, reqGetMPState, unsafe.Pointer(&s)); err != nil {
		return 0, fmt.Errorf("KVM_GET_MP_STATE vCPU %d: %w", v.id, err)
	}
	return s.State, nil
}

// SetMPState sets the vCPU's multiprocessing state.
func (v *VCPU) SetMPState(state uint32) error {
	s := MPState{State: state}
	if _, err := ioctlPtr(v.fd, reqSetMPState, unsafe.Pointer(&s)); err != nil {
		return fmt.Errorf("KVM_SET_MP_STATE vCPU %d: %w", v.id, err)
	}
	return nil
}

// LAPIC returns the local APIC register page.
func (v *VCPU) LAPIC() (*LAPICState, error) {
	l := new(LAPICState)
	if _, err := ioctlPtr(v.fd, reqGetLAPIC, unsafe.Pointer(l)); err != nil {
		return nil, fmt.Errorf("KVM_GET_LAPIC vCPU %d: %w", v.id, err)
	}
	return l, nil
}

// SetLAPIC sets the local APIC register page.
func (v *VCPU) SetLAPIC(l *LAPICState) error {
	if _, err := ioctlPtr(v.fd, reqSetLAPIC, unsafe.Pointer(l)); err != nil {
		return fmt.Errorf("KVM_SET_LAPIC vCPU %d: %w", v.id, err)
	}
	return nil
}

// SetGuestDebug configures guest debugging (KVM_SET_GUEST_DEBUG).
func (v *VCPU) SetGuestDebug(d GuestDebug) error {
	if _, err := ioctlPtr(v.fd, reqSetGuestDebug, unsafe.Pointer(&d)); err != nil {
		return fmt.Errorf("KVM_SET_GUEST_DEBUG vCPU %d: %w", v.id, err)
	}
	return nil
}

// DebugRegs returns the guest's debug registers (KVM_GET_DEBUGREGS).
func (v *VCPU) DebugRegs() (DebugRegs, error) {
	var d DebugRegs
	if _, err := ioctlPtr(v.fd, reqGetDebugRegs, unsafe.Pointer(&d)); err != nil {
		return d, fmt.Errorf("KVM_GET_DEBUGREGS vCPU %d: %w", v.id, err)
	}
	return d, nil
}

// SetDebugRegs sets the guest's debug registers (KVM_SET_DEBUGREGS); Flags
// must be 0.
func (v *VCPU) SetDebugRegs(d DebugRegs) error {
	if _, err := ioctlPtr(v.fd, reqSetDebugRegs, unsafe.Pointer(&d)); err != nil {
		return fmt.Errorf("KVM_SET_DEBUGREGS vCPU %d: %w", v.id, err)
	}
	return nil
}

// TSCKHz returns the guest TSC frequency in kHz (KVM_GET_TSC_KHZ).
func (v *VCPU) TSCKHz() (int, error) {
	n, err := ioctlInt(v.fd, reqGetTSCKHz, 0)
	if err != nil {
		return 0, fmt.Errorf("KVM_GET_TSC_KHZ vCPU %d: %w", v.id, err)
	}
	return n, nil
}

// KVMClockCtrl tells the guest, through its kvmclock page, that it was paused
// (KVM_KVMCLOCK_CTRL), so its soft-lockup watchdog does not fire.
func (v *VCPU) KVMClockCtrl() error {
	if _, err := ioctlInt(v.fd, reqKVMClockCtrl, 0); err != nil {
		return fmt.Errorf("KVM_KVMCLOCK_CTRL vCPU %d: %w", v.id, err)
	}
	return nil
}
