package fallback

import (
	"encoding/binary"
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
	vectorPF  = 14
)

// SyscallCPU is what the SYSCALL trap needs of a vCPU: what Emulate needs,
// plus MSRs and guest debugging. *kvm.VCPU has it.
type SyscallCPU interface {
	CPU
	DebugCPU
	MSRs([]kvm.MSREntry) error
	SetMSRs([]kvm.MSREntry) error
	SetGuestDebug(kvm.GuestDebug) error
}

// SyscallTrap completes SYSCALL for hosts that do not. On kvm_pvm, a SYSCALL
// from guest user mode of a guest kernel that is not PVM-aware moves RIP to
// the guest's LSTAR (RCX and R11 are set as the instruction sets them) but
// leaves the vCPU in user mode. The kernel's entry code is in supervisor
// pages, so its first fetch takes a page fault, which the host delivers to
// the guest as a user-mode #PF at RIP = LSTAR: Linux kills the process
// ("segfault at ffffffff81400040 ip ffffffff81400040 ... error 15").
//
// The trap watches for that with two hardware instruction breakpoints
// (KVM_SET_GUEST_DEBUG): DR0 on the guest's #PF handler, where it finds
// such faults by their exception frame (user CS, RIP = LSTAR) and turns
// them back into the SYSCALL entry the host should have made; and DR1 on
// LSTAR itself, for hosts that run the entry in user mode without faulting
// (seen when the entry page is user-accessible). In both cases it does the
// rest of SYSCALL: CS and SS from STAR at CPL 0 (KVM_SET_SREGS switches the
// host's notion of the mode), RFLAGS = R11 & ~SFMASK.
//
// Every genuine page fault then costs two exits: the breakpoint and a
// single step over the handler's first instruction with the breakpoints
// off (the host does not honour RFLAGS.RF there). The guest writes LSTAR
// once per CPU while it boots, after its IDT is set up; an MSR filter turns
// that write into an exit (WriteMSR), which arms the breakpoints.
//
// One SyscallTrap serves one vCPU, from that vCPU's thread only.
type SyscallTrap struct {
	lstar    uint64
	pf       uint64
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
func (t *SyscallTrap) WriteMSR(cpu SyscallCPU, mem Memory, index uint32, value uint64) (bool, error) {
	if index != msrLSTAR {
		return false, nil
	}
	// Writes the VMM makes are not filtered: this is the guest's WRMSR,
	// done on its behalf.
	if err := cpu.SetMSRs([]kvm.MSREntry{{Index: msrLSTAR, Data: value}}); err != nil {
		return true, err
	}
	// Without a #PF gate yet (a guest that sets LSTAR before its IDT),
	// only the breakpoint on LSTAR is set.
	pf, _ := pageFaultHandler(cpu, mem)
	t.lstar, t.pf, t.armed = value, pf, true
	return true, t.arm(cpu)
}

// PageFaultHandler returns where the trap found the guest's #PF handler (0
// before the guest set LSTAR).
func (t *SyscallTrap) PageFaultHandler() uint64 { return t.pf }

// pageFaultHandler reads the #PF gate of the guest's IDT: a 16-byte 64-bit
// interrupt gate whose offset is split over bytes 0-1, 6-7 and 8-11 (SDM
// vol. 3A section 6.14.1).
func pageFaultHandler(cpu SyscallCPU, mem Memory) (uint64, error) {
	s, err := cpu.Sregs()
	if err != nil {
		return 0, err
	}
	if s.IDT.Limit < vectorPF*16+15 {
		return 0, fmt.Errorf("the guest IDT (limit %#x) has no #PF gate", s.IDT.Limit)
	}
	var g [16]byte
	if err := readVirt(cpu, mem, s.IDT.Base+vectorPF*16, g[:]); err != nil {
		return 0, fmt.Errorf("reading the #PF gate: %w", err)
	}
	le := binary.LittleEndian
	return uint64(le.Uint16(g[0:])) | uint64(le.Uint16(g[6:]))<<16 | uint64(le.Uint32(g[8:]))<<32, nil
}

// arm sets DR0 on the #PF handler and DR1 on LSTAR, both instruction
// breakpoints (DR7 L0 and L1, R/W and LEN 00; SDM vol. 3B section 17.2.4).
func (t *SyscallTrap) arm(cpu SyscallCPU) error {
	d := kvm.GuestDebug{Control: kvm.GuestDebugEnable | kvm.GuestDebugUseHWBP}
	d.DebugReg[0], d.DebugReg[1] = t.pf, t.lstar
	d.DebugReg[7] = 1 << 2
	if t.pf != 0 {
		d.DebugReg[7] |= 1 << 0
	}
	return cpu.SetGuestDebug(d)
}

// step runs one instruction with the breakpoints off; the next debug exit
// re-arms them.
func (t *SyscallTrap) step(cpu SyscallCPU) error {
	t.stepping = true
	return cpu.SetGuestDebug(kvm.GuestDebug{Control: kvm.GuestDebugEnable | kvm.GuestDebugSingleStep})
}

// Debug handles KVM_EXIT_DEBUG. It returns OpSyscall when it completed a
// SYSCALL, OpSyscallStep for the trap's other exits (a step over a
// breakpoint, a genuine page fault passing by), and OpGuestDebug for a #DB
// the guest raised itself (its own single step, int1): while the trap's
// breakpoints are set, KVM sends every #DB to userspace, and Debug hands
// it back to the guest (InjectDebug).
//
// DR6 tells them apart (SDM vol. 3B section 17.2.3): B0 is the breakpoint
// on the #PF handler, B1 the one on LSTAR, BS the trap's own single step.
// A DR6 without any of these bits is taken for the trap's when the address
// is its own, for hosts that may not report DR6.
func (t *SyscallTrap) Debug(cpu SyscallCPU, mem Memory, d kvm.DebugExit) (Op, error) {
	why := d.DR6 & (kvm.DR6B0 | kvm.DR6B1 | kvm.DR6B2 | kvm.DR6B3 | kvm.DR6BS)
	switch {
	case d.Exception != vecDB:
	case t.stepping && (why&kvm.DR6BS != 0 || why == 0):
		t.stepping = false
		return OpSyscallStep, t.arm(cpu)
	case !t.armed:
	case d.PC == t.pf && t.pf != 0 && (why&kvm.DR6B0 != 0 || why == 0):
		return t.atPageFault(cpu, mem)
	case d.PC == t.lstar && (why&kvm.DR6B1 != 0 || why == 0):
		return t.atLSTAR(cpu)
	}
	return OpGuestDebug, InjectDebug(cpu, d)
}

// atPageFault looks at the exception frame the #PF handler is about to see:
// error code, RIP, CS, RFLAGS, RSP, SS from RSP up (SDM vol. 3A section
// 6.14.2). A fault at RIP = LSTAR from user mode is the host's half-done
// SYSCALL: the frame is dropped and the entry completed. Any other fault is
// the guest's own.
func (t *SyscallTrap) atPageFault(cpu SyscallCPU, mem Memory) (Op, error) {
	r, err := cpu.Regs()
	if err != nil {
		return OpSyscallStep, err
	}
	var f [48]byte
	if err := readVirt(cpu, mem, r.RSP, f[:]); err != nil {
		return OpSyscallStep, fmt.Errorf("SYSCALL trap: reading the #PF frame: %w", err)
	}
	le := binary.LittleEndian
	rip, cs, rsp := le.Uint64(f[8:]), le.Uint64(f[16:]), le.Uint64(f[32:])
	if rip != t.lstar || cs&3 != 3 {
		return OpSyscallStep, t.step(cpu)
	}
	r.RSP = rsp
	return OpSyscall, t.enter(cpu, r)
}

// atLSTAR completes SYSCALL for a vCPU that reached LSTAR in user mode.
func (t *SyscallTrap) atLSTAR(cpu SyscallCPU) (Op, error) {
	r, err := cpu.Regs()
	if err != nil {
		return OpSyscallStep, err
	}
	s, err := cpu.Sregs()
	if err != nil {
		return OpSyscallStep, err
	}
	if s.CS.DPL == 0 {
		// Already in kernel mode: the host did SYSCALL properly.
		return OpSyscallStep, t.step(cpu)
	}
	if err := t.enter(cpu, r); err != nil {
		return OpSyscall, err
	}
	// The kernel now runs the instruction at LSTAR, where DR1 would fire
	// again.
	return OpSyscall, t.step(cpu)
}

// enter puts the vCPU where SYSCALL leaves it: at LSTAR, CPL 0, CS and SS
// from STAR[47:32], RFLAGS = R11 & ~SFMASK (R11 holds the user RFLAGS,
// saved by the instruction itself), RCX the return address.
func (t *SyscallTrap) enter(cpu SyscallCPU, r kvm.Regs) error {
	m := []kvm.MSREntry{{Index: msrSTAR}, {Index: msrSFMASK}}
	if err := cpu.MSRs(m); err != nil {
		return err
	}
	star, sfmask := m[0].Data, m[1].Data
	s, err := cpu.Sregs()
	if err != nil {
		return err
	}
	sel := uint16(star>>32) &^ 3
	s.CS = kvm.Segment{Limit: 0xFFFFFFFF, Selector: sel, Type: 0xB, Present: 1, S: 1, L: 1, G: 1}
	s.SS = kvm.Segment{Limit: 0xFFFFFFFF, Selector: sel + 8, Type: 0x3, Present: 1, S: 1, DB: 1, G: 1}
	if err := cpu.SetSregs(s); err != nil {
		return err
	}
	if check, err := cpu.Sregs(); err != nil {
		return err
	} else if check.CS.DPL != 0 {
		return fmt.Errorf("SYSCALL trap: the host kept the vCPU in user mode after KVM_SET_SREGS")
	}
	r.RIP = t.lstar
	r.RFLAGS = r.R11&^sfmask | rflagsFix
	return cpu.SetRegs(r)
}

// readVirt reads guest-virtual memory of a 64-bit guest through the vCPU's
// page tables, as the instruction fallback's operand reads do; an unmapped
// page is an error here, not a fault to inject.
func readVirt(cpu SyscallCPU, mem Memory, va uint64, p []byte) error {
	return (&state{cpu: cpu, mem: mem, mode: 64}).read(va, p)
}
