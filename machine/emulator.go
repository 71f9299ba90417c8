package machine

import (
	"github.com/gvmm/gvmm/kvm"
	"github.com/gvmm/gvmm/memory"
	"github.com/gvmm/gvmm/vcpu/fallback"
)

// emulator adapts the instruction fallback to the vCPU loop.
type emulator struct {
	mem *memory.Guest
	// traps holds each vCPU's SYSCALL trap, used only on hosts that need
	// it (see fallback.SyscallTrap) and only from that vCPU's thread.
	traps []fallback.SyscallTrap
}

func newEmulator(mem *memory.Guest, cpus int) *emulator {
	return &emulator{mem: mem, traps: make([]fallback.SyscallTrap, cpus)}
}

func (e *emulator) WriteMSR(cpu *kvm.VCPU, index uint32, value uint64) (bool, error) {
	return e.traps[cpu.ID()].WriteMSR(cpu, index, value)
}

func (e *emulator) Debug(cpu *kvm.VCPU, pc uint64) (uint8, bool, error) {
	ok, err := e.traps[cpu.ID()].Debug(cpu, pc)
	return uint8(fallback.OpSyscall), ok, err
}

func (e *emulator) Emulate(cpu *kvm.VCPU, insn []byte) (uint8, error) {
	op, err := fallback.Emulate(cpu, e.mem, insn)
	return uint8(op), err
}

func (e *emulator) Unstick(cpu *kvm.VCPU) (uint8, bool, error) {
	ok, err := fallback.SkipClockPairing(cpu, e.mem)
	return uint8(fallback.OpClockPairing), ok, err
}

func (e *emulator) Describe(cpu *kvm.VCPU, insn []byte) string {
	return fallback.Describe(cpu, e.mem, insn)
}

// opName names a fallback op for results and statistics.
func opName(op uint8) string { return fallback.Op(op).String() }
