package fallback

import (
	"fmt"
	"strings"
)

// Describe returns the exit-independent part of a report on an instruction
// the VMM could not handle, in about eight lines: the processor mode and
// CPL, RIP and its CS:RIP linear address, up to 15 instruction bytes (insn,
// or fetched from guest memory when insn is empty) with their disassembly
// in GNU syntax, the general-purpose registers, RFLAGS and the control
// registers. It never fails: what it cannot read, it says so in the report.
func Describe(cpu CPU, mem Memory, insn []byte) string {
	var b strings.Builder
	s := &state{cpu: cpu, mem: mem}
	var err error
	if s.regs, err = cpu.Regs(); err != nil {
		return fmt.Sprintf("registers unavailable: %v\n", err)
	}
	var sregsErr error
	if s.sregs, sregsErr = cpu.Sregs(); sregsErr != nil {
		fmt.Fprintf(&b, "special registers unavailable: %v\n", sregsErr)
	}
	s.mode = codeSize(&s.sregs)
	sr := &s.sregs
	fmt.Fprintf(&b, "mode %d-bit CPL%d (CR0.PE=%d EFER.LMA=%d CS.L=%d CS.D=%d RFLAGS.VM=%d)\n",
		s.mode, s.cpl(), sr.CR0&cr0PE, sr.EFER&eferLMA>>10, sr.CS.L, sr.CS.DB, s.regs.RFLAGS&rflagsVM>>17)
	fmt.Fprintf(&b, "RIP %#x CS %#04x base %#x linear %#x\n", s.regs.RIP, sr.CS.Selector, sr.CS.Base, s.ripLinear())
	if len(insn) > maxInsnLen {
		insn = insn[:maxInsnLen]
	}
	if len(insn) == 0 && sregsErr == nil {
		if insn, err = s.fetch(); err != nil {
			fmt.Fprintf(&b, "insn unavailable: %v\n", err)
		}
	}
	if len(insn) > 0 {
		// The decoded instruction's bytes in brackets, then the rest.
		d := decode(insn, s.mode)
		n := d.inst.Len
		if d.err != nil || n <= 0 || n > len(insn) {
			fmt.Fprintf(&b, "insn % x: %s\n", insn, d)
		} else {
			rest := ""
			if n < len(insn) {
				rest = fmt.Sprintf(" % x", insn[n:])
			}
			fmt.Fprintf(&b, "insn [% x]%s: %s\n", insn[:n], rest, d)
		}
	}
	r := &s.regs
	fmt.Fprintf(&b, "RAX %#016x RBX %#016x RCX %#016x RDX %#016x\n", r.RAX, r.RBX, r.RCX, r.RDX)
	fmt.Fprintf(&b, "RSI %#016x RDI %#016x RSP %#016x RBP %#016x\n", r.RSI, r.RDI, r.RSP, r.RBP)
	fmt.Fprintf(&b, "R8  %#016x R9  %#016x R10 %#016x R11 %#016x\n", r.R8, r.R9, r.R10, r.R11)
	fmt.Fprintf(&b, "R12 %#016x R13 %#016x R14 %#016x R15 %#016x\n", r.R12, r.R13, r.R14, r.R15)
	fmt.Fprintf(&b, "RFLAGS %#x CR0 %#x CR2 %#x CR3 %#x CR4 %#x EFER %#x\n",
		r.RFLAGS, sr.CR0, sr.CR2, sr.CR3, sr.CR4, sr.EFER)
	return b.String()
}
