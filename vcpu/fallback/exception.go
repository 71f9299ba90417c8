package fallback

import (
	"encoding/binary"
	"fmt"
)

// Exception vectors (SDM vol. 3A section 6.3.1, Table 6-1).
const (
	vecDB = 1  // debug: single step, int1, breakpoints
	vecBP = 3  // breakpoint (int3), a trap
	vecUD = 6  // invalid opcode
	vecNM = 7  // device not available
	vecSS = 12 // stack-segment fault
	vecGP = 13 // general protection
	vecPF = 14 // page fault
)

// Page-fault error code bits (SDM vol. 3A section 4.7).
const (
	pfPresent = 1 << 0 // the page was present: a protection violation
	pfWrite   = 1 << 1 // the access was a write
	pfUser    = 1 << 2 // the access was made at CPL3
)

// exception is a guest exception an instruction raises. Handlers return it
// as their error; Emulate then injects it instead of failing.
type exception struct {
	vector  uint8
	code    uint32 // error code, when hasCode
	hasCode bool
	cr2     uint64 // faulting linear address, for #PF
	// trap: the instruction completed and RIP moves past it before the
	// exception is delivered (int3). Otherwise it is a fault: the vCPU
	// state is left as it was, RIP at the instruction.
	trap bool
}

func (e *exception) Error() string {
	if e.vector == vecPF {
		return fmt.Sprintf("guest #PF at %#x, error code %#x", e.cr2, e.code)
	}
	if e.hasCode {
		return fmt.Sprintf("guest exception %d, error code %#x", e.vector, e.code)
	}
	return fmt.Sprintf("guest exception %d", e.vector)
}

// pageFault builds the #PF for an access to a linear address.
func (s *state) pageFault(addr uint64, present, write bool) *exception {
	var code uint32
	if present {
		code |= pfPresent
	}
	if write {
		code |= pfWrite
	}
	if s.cpl() == 3 {
		code |= pfUser
	}
	return &exception{vector: vecPF, code: code, hasCode: true, cr2: addr}
}

// deliver delivers an exception raised at CPL0 in 64-bit mode the way the
// CPU would (SDM vol. 3A section 6.14, "Exception and Interrupt Handling in
// 64-bit Mode"): it reads the gate from the guest's IDT, switches to the
// gate's IST stack if it names one, aligns RSP to 16 bytes, pushes SS, RSP,
// RFLAGS, CS, RIP and the error code, clears TF, NT, RF (and IF for an
// interrupt gate), and jumps to the handler. It returns false, changing
// nothing, where it cannot (another mode or CPL, a gate it does not
// understand): the caller then lets KVM inject the exception.
//
// Why not always let KVM do it: kvm_pvm truncates the return address of an
// exception injected into emulated kernel code to 16 bits (Debian's kernel
// died in its int3 self-test with "RIP: 0010:0xe26d").
func (s *state) deliver(e *exception) (bool, error) {
	if s.mode != 64 || s.cpl() != 0 {
		return false, nil
	}
	le := binary.LittleEndian
	idt := s.sregs.IDT
	if uint64(e.vector)*16+15 > uint64(idt.Limit) {
		return false, nil
	}
	var g [16]byte
	if err := s.read(idt.Base+uint64(e.vector)*16, g[:]); err != nil {
		return false, nil
	}
	// Gate: offset 15:0 (bytes 0-1), selector (2-3), IST (4, bits 2:0),
	// type and P (5), offset 31:16 (6-7), offset 63:32 (8-11).
	typ, present := g[5]&0xF, g[5]&0x80 != 0
	if !present || (typ != 0xE && typ != 0xF) {
		return false, nil
	}
	handler := uint64(le.Uint16(g[0:])) | uint64(le.Uint16(g[6:]))<<16 | uint64(le.Uint32(g[8:]))<<32
	sel := le.Uint16(g[2:])
	rsp := s.regs.RSP
	if ist := g[4] & 7; ist != 0 {
		// IST pointers are at 0x24 + 8*(n-1) in the 64-bit TSS (SDM vol.
		// 3A section 7.7).
		var p [8]byte
		if err := s.read(s.sregs.TR.Base+0x24+8*uint64(ist-1), p[:]); err != nil {
			return false, nil
		}
		rsp = le.Uint64(p[:])
	}
	rsp &^= 0xF
	frame := make([]byte, 0, 48)
	if e.hasCode {
		frame = le.AppendUint64(frame, uint64(e.code))
	}
	frame = le.AppendUint64(frame, s.regs.RIP)
	frame = le.AppendUint64(frame, uint64(s.sregs.CS.Selector))
	frame = le.AppendUint64(frame, s.regs.RFLAGS)
	frame = le.AppendUint64(frame, s.regs.RSP)
	frame = le.AppendUint64(frame, uint64(s.sregs.SS.Selector))
	rsp -= uint64(len(frame))
	if err := s.write(rsp, frame); err != nil {
		// No room on the stack: a double fault in hardware. Let KVM
		// deliver the original exception and decide.
		return false, nil
	}
	sr := s.sregs
	if e.vector == vecPF {
		sr.CR2 = e.cr2
	}
	if sel != sr.CS.Selector || e.vector == vecPF {
		sr.CS.Selector = sel
		if err := s.cpu.SetSregs(sr); err != nil {
			return true, err
		}
	}
	const tf, ifl, nt, rf = 1 << 8, 1 << 9, 1 << 14, 1 << 16
	r := s.regs
	r.RFLAGS &^= tf | nt | rf
	if typ == 0xE {
		r.RFLAGS &^= ifl
	}
	r.RIP, r.RSP = handler, rsp
	return true, s.cpu.SetRegs(r)
}

// inject delivers an exception to the guest at its next entry: for #PF it
// first sets CR2 (KVM_SET_SREGS), then it marks the exception injected with
// KVM_SET_VCPU_EVENTS (api.rst, KVM_SET_VCPU_EVENTS; exception.injected = 1
// makes KVM deliver it through the guest's IDT on the next KVM_RUN). It
// refuses to overwrite an exception KVM already holds for the vCPU.
func (s *state) inject(e *exception) error {
	ev, err := s.cpu.VCPUEvents()
	if err != nil {
		return err
	}
	if ev.Exception.Injected != 0 || ev.Exception.Pending != 0 {
		return fmt.Errorf("cannot inject exception %d: exception %d already pending", e.vector, ev.Exception.Nr)
	}
	if e.vector == vecPF {
		sr := s.sregs
		sr.CR2 = e.cr2
		if err := s.cpu.SetSregs(sr); err != nil {
			return err
		}
	}
	ev.Exception.Injected = 1
	ev.Exception.Nr = e.vector
	ev.Exception.HasErrorCode = 0
	ev.Exception.ErrorCode = 0
	if e.hasCode {
		ev.Exception.HasErrorCode = 1
		ev.Exception.ErrorCode = e.code
	}
	ev.ExceptionHasPayload = 0
	ev.ExceptionPayload = 0
	return s.cpu.SetVCPUEvents(ev)
}
