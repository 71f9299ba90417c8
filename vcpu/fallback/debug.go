package fallback

import (
	"fmt"

	"github.com/gvmm/gvmm/kvm"
)

// DebugCPU is what InjectDebug needs of a vCPU. *kvm.VCPU has it.
type DebugCPU interface {
	DebugRegs() (kvm.DebugRegs, error)
	SetDebugRegs(kvm.DebugRegs) error
	VCPUEvents() (kvm.VCPUEvents, error)
	SetVCPUEvents(kvm.VCPUEvents) error
}

// InjectDebug hands a debug exception back to the guest that raised it.
// While a VMM uses the hardware breakpoints (KVM_SET_GUEST_DEBUG with
// KVM_GUESTDBG_USE_HW_BP, as SyscallTrap does), KVM intercepts every #DB
// and reports it as KVM_EXIT_DEBUG, the guest's own ones included: a single
// step it asked for with RFLAGS.TF (a debugger in the guest, ptrace), or
// int1. On hardware the guest's #DB handler would run; so it must here.
//
// The guest reads why from DR6, which KVM keeps for it apart from the
// hardware's (api.rst, KVM_GET_DEBUGREGS): it gets the exit's DR6 without
// B0-B3, which would name the VMM's breakpoints, not any of its own (these
// are not armed while the VMM's are). Then the exception is injected
// (KVM_SET_VCPU_EVENTS; a #DB has no error code, SDM vol. 3A section
// 6.15). RIP is already past the instruction: single step and int1 are
// traps. A #BP (exception 3, reported only with software breakpoints,
// which gvmm does not set) is handed back the same way, DR6 untouched.
func InjectDebug(cpu DebugCPU, d kvm.DebugExit) error {
	if d.Exception != vecDB && d.Exception != vecBP {
		return fmt.Errorf("debug exit with exception %d, not #DB or #BP", d.Exception)
	}
	ev, err := cpu.VCPUEvents()
	if err != nil {
		return err
	}
	if ev.Exception.Injected != 0 || ev.Exception.Pending != 0 {
		return fmt.Errorf("cannot hand the guest its #DB: exception %d already pending", ev.Exception.Nr)
	}
	if d.Exception == vecDB {
		regs, err := cpu.DebugRegs()
		if err != nil {
			return err
		}
		regs.DR6 = d.DR6&^(kvm.DR6B0|kvm.DR6B1|kvm.DR6B2|kvm.DR6B3) | kvm.DR6ActiveLow
		if err := cpu.SetDebugRegs(regs); err != nil {
			return err
		}
	}
	ev.Exception.Injected = 1
	ev.Exception.Nr = uint8(d.Exception)
	ev.Exception.HasErrorCode = 0
	ev.Exception.ErrorCode = 0
	ev.ExceptionHasPayload = 0
	ev.ExceptionPayload = 0
	return cpu.SetVCPUEvents(ev)
}
