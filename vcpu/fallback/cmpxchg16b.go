package fallback

import (
	"errors"
	"fmt"
	"unsafe"
)

// errNoSlice reports a Memory without a host mapping, on which cmpxchg16b
// cannot be atomic.
var errNoSlice = errors.New("guest memory does not expose its host mapping (Slicer): cmpxchg16b cannot be atomic")

// emulateCmpxchg16b emulates [lock] cmpxchg16b m128 (REX.W 0F C7 /1; SDM
// vol. 2A, "CMPXCHG8B/CMPXCHG16B"): compare RDX:RAX with the 16 bytes at the
// operand; if equal, store RCX:RBX there and set ZF, else load them into
// RDX:RAX and clear ZF. Other flags are unchanged. A misaligned operand
// raises #GP(0).
//
// The compare-and-swap runs on the host mapping of the guest page with a
// host LOCK CMPXCHG16B (cas128), so it is atomic against other vCPUs, which
// run natively or in KVM's emulator on the same memory. The operand is
// 16-byte aligned, so it lies in one page, and guest RAM is mapped
// page-aligned, so the host address is aligned too.
func emulateCmpxchg16b(s *state) error {
	lin, err := s.memOperand(0)
	if err != nil {
		return err
	}
	if lin%16 != 0 {
		return &exception{vector: vecGP, hasCode: true}
	}
	spans, err := s.translate(lin, 16, true)
	if err != nil {
		return err
	}
	sl, ok := s.mem.(Slicer)
	if !ok {
		return errNoSlice
	}
	if !haveCAS128 {
		return errors.New("cmpxchg16b emulation needs an amd64 host")
	}
	gpa := spans[0].gpa
	b, err := sl.Slice(gpa, 16)
	if err != nil {
		return fmt.Errorf("cmpxchg16b operand at guest-physical %#x (linear %#x) outside RAM: %w", gpa, lin, err)
	}
	if len(b) < 16 {
		return fmt.Errorf("cmpxchg16b operand at guest-physical %#x: host mapping too short", gpa)
	}
	p := unsafe.Pointer(&b[0])
	if uintptr(p)%16 != 0 {
		return fmt.Errorf("cmpxchg16b operand at guest-physical %#x: host address %#x is not 16-byte aligned", gpa, uintptr(p))
	}
	lo, hi, swapped := cas128(p, s.regs.RAX, s.regs.RDX, s.regs.RBX, s.regs.RCX)
	if swapped {
		s.regs.RFLAGS |= flagZF
	} else {
		s.regs.RFLAGS &^= flagZF
		s.regs.RAX, s.regs.RDX = lo, hi
	}
	return nil
}
