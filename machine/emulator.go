package machine

import (
	"github.com/gvmm/gvmm/kvm"
	"github.com/gvmm/gvmm/memory"
	"github.com/gvmm/gvmm/vcpu/fallback"
)

// emulator adapts the instruction fallback to the vCPU loop.
type emulator struct {
	mem  *memory.Guest
	logf func(format string, args ...any)
	// traps holds each vCPU's SYSCALL trap, used only on hosts that need
	// it (see fallback.SyscallTrap) and only from that vCPU's thread.
	traps []fallback.SyscallTrap
	// seen records, per vCPU, that its first fallback has been logged.
	seen []bool
}

func newEmulator(mem *memory.Guest, cpus int, logf func(string, ...any)) *emulator {
	return &emulator{mem: mem, logf: logf, traps: make([]fallback.SyscallTrap, cpus), seen: make([]bool, cpus)}
}

func (e *emulator) WriteMSR(cpu *kvm.VCPU, index uint32, value uint64) (bool, error) {
	t := &e.traps[cpu.ID()]
	ok, err := t.WriteMSR(cpu, e.mem, index, value)
	if ok && err == nil {
		e.logf("gvmm: vCPU %d: guest set LSTAR to %#x; SYSCALL trap armed there and at the #PF handler %#x", cpu.ID(), value, t.PageFaultHandler())
	}
	return ok, err
}

func (e *emulator) Debug(cpu *kvm.VCPU, d kvm.DebugExit) (uint8, bool, error) {
	op, err := e.traps[cpu.ID()].Debug(cpu, e.mem, d)
	return uint8(op), true, err
}

func (e *emulator) Emulate(cpu *kvm.VCPU, insn []byte) (uint8, error) {
	var before kvm.Regs
	first := e.logf != nil && !e.seen[cpu.ID()]
	if first {
		before, _ = cpu.Regs()
	}
	op, err := fallback.Emulate(cpu, e.mem, insn)
	if first && err == nil {
		e.seen[cpu.ID()] = true
		after, _ := cpu.Regs()
		s, _ := cpu.Sregs()
		e.logf("gvmm: vCPU %d: first instruction fallback: %s at RIP %#x -> %#x (CS %#x L=%d DB=%d DPL=%d, EFER %#x)",
			cpu.ID(), op, before.RIP, after.RIP, s.CS.Selector, s.CS.L, s.CS.DB, s.CS.DPL, s.EFER)
	}
	return uint8(op), err
}

func (e *emulator) Unstick(cpu *kvm.VCPU) (uint8, bool, error) {
	ok, err := fallback.SkipClockPairing(cpu, e.mem)
	if err != nil {
		// A vCPU that cannot be inspected is not on the hang we know:
		// an AP waiting for its startup IPI sits at the reset vector,
		// outside RAM. Leave it alone.
		return 0, false, nil
	}
	return uint8(fallback.OpClockPairing), ok, nil
}

func (e *emulator) Describe(cpu *kvm.VCPU, insn []byte) string {
	return fallback.Describe(cpu, e.mem, insn)
}

// describer renders the vCPU state in reports of unhandled exits, on every
// host (fallback.Describe: mode, RIP, instruction bytes and disassembly,
// registers).
type describer struct{ mem *memory.Guest }

func (d describer) Describe(cpu *kvm.VCPU, insn []byte) string {
	return fallback.Describe(cpu, d.mem, insn)
}

// opName names a fallback op for results and statistics.
func opName(op uint8) string { return fallback.Op(op).String() }
