// Package fallback emulates, in userspace, the few guest instructions that
// the host's KVM instruction emulator cannot run.
//
// On nested hosts such as kvm_pvm, a software nested-virtualization backend,
// guest kernel code is run by KVM's instruction emulator. A vCPU that reaches
// an instruction the emulator does not know exits with
// KVM_EXIT_INTERNAL_ERROR, suberror KVM_INTERNAL_ERROR_EMULATION, RIP at the
// instruction. The vCPU loop then calls Emulate, which decodes the
// instruction (golang.org/x/arch's x86asm, plus raw-byte matching for what
// x86asm does not know), carries out its architectural effect on the vCPU's
// registers, FPU state and guest memory, and advances RIP; the loop resumes
// the guest. Where the hardware runs these instructions, the fallback is
// never reached.
//
// Handled: int3, popcnt, clac, stac, fwait, fxsave/fxsave64,
// fxrstor/fxrstor64, cmpxchg16b, and the KVM_HC_CLOCK_PAIRING hypercall
// (see SkipClockPairing). The xsave family is not: emulating it needs XCR0
// (KVM_GET_XCRS), and gvmm boots guests with "noxsave" on hosts whose
// emulator rejects it.
//
// Guest faults. Where the CPU would raise an exception instead of completing
// the instruction (misaligned fxsave area, reserved MXCSR bits, clac at
// CPL3, an unmapped memory operand, ...), Emulate injects that exception
// with KVM_SET_VCPU_EVENTS, leaves RIP at the instruction and returns no
// error: the guest's own handler deals with it, as on hardware. A page fault
// on a memory operand is injected as #PF with CR2 set (through
// KVM_SET_SREGS), because guest kernels legitimately touch user memory that
// is not mapped yet (fxsave to a signal frame) and rely on their fault
// handler. An error, which ends the VM, is returned only for what the
// fallback cannot carry out: an instruction it does not emulate
// (ErrUnsupported), a memory operand whose guest-physical address lies
// outside RAM (MMIO), an instruction fetch that fails, a failing ioctl.
//
// Limits, none of which matters on the Linux code paths that reach the
// fallback: segment limits and access rights are not checked; RFLAGS.TF
// single-step traps and interrupt shadows are not modelled; SMAP and
// protection keys are not checked on data accesses (KVM_TRANSLATE walks the
// page tables as a supervisor); and KVM_TRANSLATE reports every valid page
// writeable on current kernels, so a write to a read-only page is not
// caught.
package fallback

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/gvmm/gvmm/kvm"
	"golang.org/x/arch/x86/x86asm"
)

// CPU is the vCPU state Emulate reads and changes. *kvm.VCPU satisfies it.
type CPU interface {
	Regs() (kvm.Regs, error)
	SetRegs(kvm.Regs) error
	Sregs() (kvm.Sregs, error)
	// SetSregs is only used to set CR2 when injecting a page fault.
	SetSregs(kvm.Sregs) error
	Translate(gva uint64) (kvm.Translation, error)
	XSave() (*kvm.XSave, error)
	SetXSave(*kvm.XSave) error
	VCPUEvents() (kvm.VCPUEvents, error)
	SetVCPUEvents(kvm.VCPUEvents) error
}

// Memory is bounds-checked access to guest-physical memory, with the offset
// read as a guest-physical address. *memory.Guest satisfies it.
type Memory interface {
	ReadAt(p []byte, gpa int64) (int, error)
	WriteAt(p []byte, gpa int64) (int, error)
}

// Slicer is implemented by a Memory that exposes the host mapping of guest
// memory, as *memory.Guest does. cmpxchg16b needs it: its atomicity against
// other vCPUs comes from a host LOCK CMPXCHG16B on that mapping.
type Slicer interface {
	// Slice returns the host bytes backing [gpa, gpa+n).
	Slice(gpa, n uint64) ([]byte, error)
}

// Op names an instruction (family) the fallback emulates. It indexes
// fixed-size counter arrays: [NumOps]uint64.
type Op uint8

// The emulated instructions.
const (
	OpNone         Op = iota // no instruction was emulated (an error)
	OpInt3                   // int3 (CC)
	OpPopcnt                 // popcnt r, r/m (F3 0F B8)
	OpClac                   // clac (0F 01 CA)
	OpStac                   // stac (0F 01 CB)
	OpFwait                  // fwait/wait (9B)
	OpFxsave                 // fxsave, fxsave64 (0F AE /0)
	OpFxrstor                // fxrstor, fxrstor64 (0F AE /1)
	OpCmpxchg16b             // cmpxchg16b m128 (REX.W 0F C7 /1)
	OpClockPairing           // vmcall/vmmcall with RAX = KVM_HC_CLOCK_PAIRING
	OpSyscall                // SYSCALL completed by SyscallTrap
	OpSyscallStep            // a SyscallTrap exit that completed nothing: a step, a genuine #PF
	OpLdmxcsr                // ldmxcsr m32 (0F AE /2)
	OpStmxcsr                // stmxcsr m32 (0F AE /3)
	OpGuestDebug             // a #DB the guest raised itself, handed back to it (InjectDebug)
	NumOps
)

var opNames = [NumOps]string{
	OpNone: "none", OpInt3: "int3", OpPopcnt: "popcnt", OpClac: "clac",
	OpStac: "stac", OpFwait: "fwait", OpFxsave: "fxsave", OpFxrstor: "fxrstor",
	OpCmpxchg16b: "cmpxchg16b", OpClockPairing: "clock-pairing", OpSyscall: "syscall", OpSyscallStep: "syscall-trap-step",
	OpLdmxcsr: "ldmxcsr", OpStmxcsr: "stmxcsr", OpGuestDebug: "guest-debug",
}

// String returns the instruction's mnemonic, such as "popcnt".
func (o Op) String() string {
	if o < NumOps {
		return opNames[o]
	}
	return fmt.Sprintf("Op(%d)", uint8(o))
}

// ErrUnsupported is wrapped by Emulate's error for an instruction it does not
// emulate; the message carries the bytes and their disassembly.
var ErrUnsupported = errors.New("instruction not emulated by the fallback")

// errOperands reports operands that x86asm decoded in a form the
// instruction does not have; it would be a decoder bug.
var errOperands = errors.New("unexpected operand form")

// maxInsnLen is the architectural limit on an instruction's length (SDM
// vol. 2A section 2.3.11: "The maximum length of an Intel 64 and IA-32
// instruction remains 15 bytes").
const maxInsnLen = 15

// rawOp is an instruction matched by its bytes because x86asm does not
// decode it.
type rawOp struct {
	bytes []byte
	op    Op
	name  string
}

// rawOps lists the instructions matched by bytes. clac/stac: SDM vol. 2A,
// CLAC, and vol. 2B, STAC; vmcall: SDM vol. 3C, VMX instruction reference,
// VMCALL; vmmcall: AMD APM vol. 3, VMMCALL.
var rawOps = []rawOp{
	{[]byte{0x0F, 0x01, 0xCA}, OpClac, "clac"},
	{[]byte{0x0F, 0x01, 0xCB}, OpStac, "stac"},
	{[]byte{0x0F, 0x01, 0xC1}, OpClockPairing, "vmcall"},
	{[]byte{0x0F, 0x01, 0xD9}, OpClockPairing, "vmmcall"},
}

// decoded is a decoded instruction.
type decoded struct {
	raw  []byte      // the bytes, at least Len of them
	inst x86asm.Inst // x86asm's decoding; for a raw match only Len is set
	op   Op          // OpNone when raw matching did not apply
	name string      // the mnemonic for a raw match
	err  error       // the decoding error, if any
}

// decode decodes the instruction at the start of b in the given mode (16, 32
// or 64), trying the raw-byte table first.
func decode(b []byte, mode int) decoded {
	for _, r := range rawOps {
		if bytes.HasPrefix(b, r.bytes) {
			return decoded{raw: b, inst: x86asm.Inst{Len: len(r.bytes), Mode: mode}, op: r.op, name: r.name}
		}
	}
	inst, err := x86asm.Decode(b, mode)
	if err == nil && inst.Op == 0 {
		// x86asm returns a lone prefix as a 1-byte instruction when the
		// bytes after it are truncated or invalid.
		err = errPrefixOnly
	}
	return decoded{raw: b, inst: inst, err: err}
}

// errPrefixOnly reports bytes that x86asm decoded as a lone prefix.
var errPrefixOnly = errors.New("truncated or invalid instruction after a prefix")

// String returns the instruction in GNU (AT&T) syntax, as objdump prints
// the "Code:" line of a Linux oops.
func (d decoded) String() string {
	switch {
	case d.name != "":
		return d.name
	case d.err != nil:
		return "(bad: " + d.err.Error() + ")"
	}
	return x86asm.GNUSyntax(d.inst, 0, nil)
}

// bytesString returns the instruction's bytes in hex, or all fetched bytes
// when it did not decode.
func (d decoded) bytesString() string {
	n := d.inst.Len
	if d.err != nil || n <= 0 || n > len(d.raw) {
		n = len(d.raw)
	}
	return fmt.Sprintf("% x", d.raw[:n])
}

// badLock reports a LOCK prefix that makes the instruction invalid (#UD,
// SDM vol. 2A section 2.1.1 and LOCK).
func (d decoded) badLock() bool {
	for _, q := range d.inst.Prefix {
		if q == 0 {
			break
		}
		if q&0xFF == x86asm.PrefixLOCK&0xFF && q&x86asm.PrefixInvalid != 0 {
			return true
		}
	}
	return false
}

// state is one emulation: the vCPU's registers as read at the exit, which
// handlers change and Emulate writes back.
type state struct {
	cpu   CPU
	mem   Memory
	regs  kvm.Regs
	sregs kvm.Sregs
	mode  int // 16, 32 or 64: the code segment's default size
	in    decoded
}

// handler carries out one instruction on s.regs and guest memory. It returns
// an *exception to raise a guest fault instead of completing the instruction.
type handler func(s *state) error

// classify maps a decoded instruction to its Op and handler; a nil handler
// means unsupported. A LOCK prefix on a handled instruction that does not
// allow it makes the handler raise #UD instead.
func (s *state) classify() (Op, handler) {
	d := s.in
	if d.op != OpNone {
		switch {
		case d.op == OpClac || d.op == OpStac:
			return d.op, emulateSysFlags
		case d.op == OpClockPairing && isClockPairing(s):
			return d.op, emulateClockPairing
		}
		return OpNone, nil
	}
	if d.err != nil {
		return OpNone, nil
	}
	var op Op
	var h handler
	switch d.inst.Op {
	case x86asm.INT:
		// CC, possibly after ignored prefixes; not CD 03 (or CD CC).
		n := d.inst.Len
		if d.inst.Args[0] == x86asm.Imm(3) && n >= 1 && n <= len(d.raw) && d.raw[n-1] == 0xCC {
			op, h = OpInt3, emulateInt3
		}
	case x86asm.POPCNT:
		op, h = OpPopcnt, emulatePopcnt
	case x86asm.FWAIT:
		op, h = OpFwait, emulateFwait
	case x86asm.FXSAVE, x86asm.FXSAVE64:
		op, h = OpFxsave, emulateFxsave
	case x86asm.FXRSTOR, x86asm.FXRSTOR64:
		op, h = OpFxrstor, emulateFxrstor
	case x86asm.CMPXCHG16B:
		op, h = OpCmpxchg16b, emulateCmpxchg16b
	case x86asm.LDMXCSR:
		op, h = OpLdmxcsr, emulateLdmxcsr
	case x86asm.STMXCSR:
		op, h = OpStmxcsr, emulateStmxcsr
	}
	if h != nil && d.badLock() {
		h = lockUD
	}
	return op, h
}

// lockUD raises #UD for a LOCK prefix on an instruction that does not allow
// it (SDM vol. 2A section 2.1.1).
func lockUD(*state) error { return &exception{vector: vecUD} }

// Emulate carries out the instruction at the vCPU's RIP, which KVM failed to
// emulate, and advances RIP past it (or injects the exception the
// instruction raises instead). insn holds the instruction bytes when the exit
// carried them (kvm.RunData.EmulationFailure); when nil, or when they do not
// decode (they may be cut short), Emulate reads the bytes from guest memory
// at CS:RIP, translating each page with KVM_TRANSLATE. It returns which
// instruction it emulated. Instructions it does not handle give an error
// wrapping ErrUnsupported, with their bytes and disassembly, and leave the
// vCPU unchanged.
func Emulate(cpu CPU, mem Memory, insn []byte) (Op, error) {
	s, err := newState(cpu, mem, insn)
	if err != nil {
		return OpNone, err
	}
	op, h := s.classify()
	if h == nil {
		return OpNone, fmt.Errorf("%w: %s (%s) at RIP %#x, %d-bit mode",
			ErrUnsupported, s.in, s.in.bytesString(), s.regs.RIP, s.mode)
	}
	if err := h(s); err != nil {
		var ex *exception
		if !errors.As(err, &ex) {
			return op, fmt.Errorf("%s at RIP %#x: %w", s.in, s.regs.RIP, err)
		}
		if ex.trap {
			s.regs.RIP = s.next()
			if err := cpu.SetRegs(s.regs); err != nil {
				return op, err
			}
		}
		done, err := s.deliver(ex)
		if err == nil && !done {
			err = s.inject(ex)
		}
		if err != nil {
			return op, fmt.Errorf("%s at RIP %#x: %w", s.in, s.regs.RIP, err)
		}
		return op, nil
	}
	s.regs.RIP = s.next()
	return op, cpu.SetRegs(s.regs)
}

// newState reads the vCPU's registers and decodes the instruction at RIP,
// fetching it from guest memory when insn is missing or truncated.
func newState(cpu CPU, mem Memory, insn []byte) (*state, error) {
	s := &state{cpu: cpu, mem: mem}
	var err error
	if s.regs, err = cpu.Regs(); err != nil {
		return nil, err
	}
	if s.sregs, err = cpu.Sregs(); err != nil {
		return nil, err
	}
	s.mode = codeSize(&s.sregs)
	if len(insn) > 0 {
		if len(insn) > maxInsnLen {
			insn = insn[:maxInsnLen]
		}
		s.in = decode(insn, s.mode)
		if s.in.err == nil {
			return s, nil
		}
	}
	// No bytes, or bytes that do not decode (possibly cut short): read
	// them from guest memory. If that fails too, report the given bytes.
	b, err := s.fetch()
	if err != nil {
		if len(insn) > 0 {
			return s, nil
		}
		return nil, err
	}
	s.in = decode(b, s.mode)
	return s, nil
}

// next returns the RIP of the following instruction: RIP plus the
// instruction's length, wrapped to the code size (SDM vol. 1 section 3.5: EIP
// and IP wrap in 32- and 16-bit code).
func (s *state) next() uint64 {
	return (s.regs.RIP + uint64(s.in.inst.Len)) & sizeMask(s.mode)
}

// Processor-state bits (SDM vol. 3A sections 2.3 to 2.5 and 2.2.1).
const (
	cr0PE     = 1 << 0
	cr0MP     = 1 << 1
	cr0EM     = 1 << 2
	cr0TS     = 1 << 3
	cr4OSFXSR = 1 << 9
	cr4LA57   = 1 << 12
	eferLMA   = 1 << 10
	rflagsVM  = 1 << 17
)

// codeSize returns the default operand and address size of the code
// segment: 64 in 64-bit mode (EFER.LMA and CS.L), else 32 or 16 from CS.D
// (SDM vol. 3A section 5.2.1); 16 in real mode.
func codeSize(sr *kvm.Sregs) int {
	switch {
	case sr.CR0&cr0PE == 0:
		return 16
	case sr.EFER&eferLMA != 0 && sr.CS.L != 0:
		return 64
	case sr.CS.DB != 0:
		return 32
	}
	return 16
}

// cpl returns the current privilege level: 0 in real mode, 3 in
// virtual-8086 mode, else SS.DPL, which always equals CPL (SDM vol. 3A
// section 5.5).
func (s *state) cpl() uint8 {
	switch {
	case s.sregs.CR0&cr0PE == 0:
		return 0
	case s.regs.RFLAGS&rflagsVM != 0:
		return 3
	}
	return s.sregs.SS.DPL
}

// sizeMask returns the mask of a 16-, 32- or 64-bit quantity.
func sizeMask(bits int) uint64 {
	switch bits {
	case 16:
		return 0xFFFF
	case 32:
		return 0xFFFF_FFFF
	}
	return ^uint64(0)
}
