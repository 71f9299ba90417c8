package fallback

import (
	"fmt"
)

// Exception vectors (SDM vol. 3A section 6.3.1, Table 6-1).
const (
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
