package fallback

import (
	"encoding/binary"
	"math/bits"

	"golang.org/x/arch/x86/x86asm"
)

// Arithmetic flags in RFLAGS (SDM vol. 1 section 3.4.3.1).
const (
	flagCF = 1 << 0
	flagPF = 1 << 2
	flagAF = 1 << 4
	flagZF = 1 << 6
	flagSF = 1 << 7
	flagOF = 1 << 11
	// arithFlags are the status flags popcnt defines.
	arithFlags = flagCF | flagPF | flagAF | flagZF | flagSF | flagOF
)

// emulatePopcnt emulates popcnt r16/r32/r64, r/m (F3 [REX] 0F B8 /r; SDM
// vol. 2B, POPCNT): the destination gets the number of set bits of the
// source; ZF is set when the source is zero, OF, SF, AF, CF and PF are
// cleared. The operand size follows the 66 prefix and REX.W; a 32-bit
// destination is zero-extended to 64 bits.
func emulatePopcnt(s *state) error {
	in := &s.in.inst
	dst, ok := in.Args[0].(x86asm.Reg)
	if !ok {
		return errOperands
	}
	size := in.DataSize
	var src uint64
	switch a := in.Args[1].(type) {
	case x86asm.Reg:
		v, err := s.readReg(a)
		if err != nil {
			return err
		}
		src = v
	case x86asm.Mem:
		lin, err := s.memOperand(1)
		if err != nil {
			return err
		}
		var b [8]byte
		if err := s.read(lin, b[:size/8]); err != nil {
			return err
		}
		src = binary.LittleEndian.Uint64(b[:])
	default:
		return errOperands
	}
	src &= sizeMask(size)
	if err := s.writeReg(dst, uint64(bits.OnesCount64(src))); err != nil {
		return err
	}
	s.regs.RFLAGS &^= arithFlags
	if src == 0 {
		s.regs.RFLAGS |= flagZF
	}
	return nil
}
