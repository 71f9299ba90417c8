package fallback

// rflagsAC is the alignment check / access control flag, which also
// overrides SMAP at CPL0 (SDM vol. 1 section 3.4.3.3, vol. 3A section
// 4.6.1).
const rflagsAC = 1 << 18

// emulateSysFlags emulates clac (0F 01 CA) and stac (0F 01 CB) (SDM vol. 2A,
// CLAC, and vol. 2B, STAC): clear or set RFLAGS.AC. Both raise #UD at CPL > 0
// and in virtual-8086 mode, where cpl reports 3. x86asm does not decode them;
// they are matched by their bytes.
func emulateSysFlags(s *state) error {
	if s.cpl() > 0 {
		return &exception{vector: vecUD}
	}
	if s.in.op == OpStac {
		s.regs.RFLAGS |= rflagsAC
	} else {
		s.regs.RFLAGS &^= rflagsAC
	}
	return nil
}
