package fallback

import (
	"fmt"

	"github.com/gvmm/gvmm/kvm"
)

// MSRs and flags of the SYSCALL instruction (Intel SDM vol. 2B, "SYSCALL";
// AMD APM vol. 3, "SYSCALL").
const (
	msrSTAR   = 0xC0000081
	msrLSTAR  = 0xC0000082
	msrSFMASK = 0xC0000084
	rflagsRF  = 1 << 16
	rflagsFix = 1 << 1 // reserved, always 1
)

// SyscallCPU is what the SYSCALL trap needs of a vCPU; *kvm.VCPU has it.
type SyscallCPU interface {
	Regs() (kvm.Regs, error)
	SetRegs(kvm.Regs) error
	Sregs() (kvm.Sregs, error)
	SetSregs(kvm.Sregs) error
	MSRs([]kvm.MSREntry) error
	SetMSRs([]kvm.MSREntry) error
	SetGuestDebug(kvm.GuestDebug) error
}

// SyscallTrap completes SYSCALL for hosts that do not. On kvm_pvm, a
// SYSCALL from guest user mode of a guest kernel that is not PVM-aware sets
// RIP to the guest's LSTAR (and RCX, R11 as the instruction does) but leaves
// the vCPU in user mode, so the kernel's entry code faults on its first
// fetch. The trap puts a hardware instruction breakpoint (DR0, through
// KVM_SET_GUEST_DEBUG) on LSTAR; when a vCPU arrives there in user mode, the
// VMM does the rest of SYSCALL: CS and SS from STAR, CPL 0, RFLAGS masked
// by SFMASK. KVM's own SET_SREGS switches the host's notion of the mode.
//
// The guest writes LSTAR once per CPU while it boots; an MSR filter turns
// that write into an exit (WriteMSR) so the breakpoint follows it.
//
// One SyscallTrap serves one vCPU; it is used from that vCPU's thread only.
type SyscallTrap struct {
	lstar    uint64
	armed    bool
	stepping bool
}

// SyscallFilter is the MSR filter range that makes guest writes of LSTAR
// exit to userspace (a clear bitmap bit denies the access).
func SyscallFilter() kvm.MSRFilterRange {
	return kvm.MSRFilterRange{Flags: kvm.MSRFilterWrite, Base: msrLSTAR, Count: 1, Bitmap: []byte{0}}
}

// WriteMSR completes a guest WRMSR that the filter sent to userspace. It
// returns false for MSRs it does not handle (the caller then fails the
// access).
func (t *SyscallTrap) WriteMSR(cpu SyscallCPU, index uint32, value uint64) (bool, error) {
	if index != msrLSTAR {
		return false, nil
	}
	// Writes the VMM makes are not filtered: this is the guest's WRMSR,
	// done on its behalf.
	if err := cpu.SetMSRs([]kvm.MSREntry{{Index: msrLSTAR, Data: value}}); err != nil {
		return true, err
	}
	return true, t.arm(cpu, value)
}

func (t *SyscallTrap) arm(cpu SyscallCPU, lstar uint64) error {
	// DR7: L0 (bit 0) enables DR0 as an instruction breakpoint (R/W0 = 00,
	// LEN0 = 00), SDM vol. 3B section 17.2.4.
	d := kvm.GuestDebug{Control: kvm.GuestDebugEnable | kvm.GuestDebugUseHWBP}
	d.DebugReg[0] = lstar
	d.DebugReg[7] = 1
	if err := cpu.SetGuestDebug(d); err != nil {
		return err
	}
	t.lstar, t.armed = lstar, true
	return nil
}

// Debug handles KVM_EXIT_DEBUG. It returns true if the exit was the trap's:
// the breakpoint, after which SYSCALL has been completed, or the single
// step over the first kernel instruction, after which the breakpoint is set
// again.
//
// The single step is needed because the breakpoint would fire again when
// the kernel, now in kernel mode, executes the instruction at LSTAR: kvm_pvm
// does not honour RFLAGS.RF there.
func (t *SyscallTrap) Debug(cpu SyscallCPU, pc uint64) (bool, error) {
	if t.stepping {
		t.stepping = false
		return true, t.arm(cpu, t.lstar)
	}
	if !t.armed || pc != t.lstar {
		return false, nil
	}
	r, err := cpu.Regs()
	if err != nil {
		return true, err
	}
	s, err := cpu.Sregs()
	if err != nil {
		return true, err
	}
	if s.CS.DPL == 0 {
		// Already in kernel mode: the host did SYSCALL properly (or the
		// kernel jumped here itself). Step over the breakpoint.
		r.RFLAGS |= rflagsRF
		return true, cpu.SetRegs(r)
	}
	m := []kvm.MSREntry{{Index: msrSTAR}, {Index: msrSFMASK}}
	if err := cpu.MSRs(m); err != nil {
		return true, err
	}
	star, sfmask := m[0].Data, m[1].Data
	// SYSCALL: CS.Selector = STAR[47:32] & 0xFFFC, SS.Selector = that + 8,
	// flat 64-bit code and data at DPL 0; RFLAGS = R11 & ~SFMASK (R11 holds
	// the user RFLAGS, saved by the instruction itself).
	sel := uint16(star>>32) &^ 3
	s.CS = kvm.Segment{Limit: 0xFFFFFFFF, Selector: sel, Type: 0xB, Present: 1, S: 1, L: 1, G: 1}
	s.SS = kvm.Segment{Limit: 0xFFFFFFFF, Selector: sel + 8, Type: 0x3, Present: 1, S: 1, DB: 1, G: 1}
	if err := cpu.SetSregs(s); err != nil {
		return true, err
	}
	check, err := cpu.Sregs()
	if err != nil {
		return true, err
	}
	if check.CS.DPL != 0 {
		return true, fmt.Errorf("SYSCALL trap: the host kept the vCPU in user mode after KVM_SET_SREGS")
	}
	r.RFLAGS = r.R11&^sfmask | rflagsFix
	if err := cpu.SetRegs(r); err != nil {
		return true, err
	}
	// Step over the instruction at LSTAR with the breakpoint off.
	t.stepping = true
	return true, cpu.SetGuestDebug(kvm.GuestDebug{Control: kvm.GuestDebugEnable | kvm.GuestDebugSingleStep})
}
