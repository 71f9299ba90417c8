package fallback

import (
	"fmt"

	"golang.org/x/arch/x86/x86asm"
)

// pageSize is the granule of KVM_TRANSLATE: a linear address is translated
// page by page, since contiguous linear pages need not be contiguous in
// guest-physical memory.
const pageSize = 4096

// gpr returns the 64-bit register with encoding number n: 0-7 are RAX, RCX,
// RDX, RBX, RSP, RBP, RSI, RDI, 8-15 are R8-R15 (SDM vol. 2A section 2.1.5,
// Table 2-2, and section 2.2.1.2 for REX).
func (s *state) gpr(n int) *uint64 {
	r := &s.regs
	return [16]*uint64{
		&r.RAX, &r.RCX, &r.RDX, &r.RBX, &r.RSP, &r.RBP, &r.RSI, &r.RDI,
		&r.R8, &r.R9, &r.R10, &r.R11, &r.R12, &r.R13, &r.R14, &r.R15,
	}[n&15]
}

// reg locates a general-purpose register operand: the full register, the
// bit position of the operand in it (8 for AH, CH, DH, BH) and its size in
// bits. ok is false for anything but a general-purpose register.
func (s *state) reg(r x86asm.Reg) (p *uint64, shift uint, bits int, ok bool) {
	switch {
	case r >= x86asm.AL && r <= x86asm.R15B:
		// x86asm orders the byte registers AL CL DL BL, AH CH DH BH, SPL
		// BPL SIL DIL, R8B-R15B: AH-BH are bits 8-15 of registers 0-3 (SDM
		// vol. 1 section 3.4.1.1).
		i := int(r - x86asm.AL)
		switch {
		case i < 4:
			return s.gpr(i), 0, 8, true
		case i < 8:
			return s.gpr(i - 4), 8, 8, true
		}
		return s.gpr(i - 4), 0, 8, true
	case r >= x86asm.AX && r <= x86asm.R15W:
		return s.gpr(int(r - x86asm.AX)), 0, 16, true
	case r >= x86asm.EAX && r <= x86asm.R15L:
		return s.gpr(int(r - x86asm.EAX)), 0, 32, true
	case r >= x86asm.RAX && r <= x86asm.R15:
		return s.gpr(int(r - x86asm.RAX)), 0, 64, true
	}
	return nil, 0, 0, false
}

// readReg returns the value of a general-purpose register operand.
func (s *state) readReg(r x86asm.Reg) (uint64, error) {
	p, shift, bits, ok := s.reg(r)
	if !ok {
		return 0, fmt.Errorf("operand %v is not a general-purpose register", r)
	}
	return *p >> shift & sizeMask(bits), nil
}

// writeReg writes a general-purpose register operand: 8- and 16-bit writes
// leave the rest of the register alone, 32-bit writes zero-extend to 64 bits
// (SDM vol. 1 section 3.4.1.1).
func (s *state) writeReg(r x86asm.Reg, v uint64) error {
	p, shift, bits, ok := s.reg(r)
	if !ok {
		return fmt.Errorf("operand %v is not a general-purpose register", r)
	}
	switch bits {
	case 8, 16:
		m := sizeMask(bits) << shift
		*p = *p&^m | v<<shift&m
	case 32:
		*p = v & 0xFFFF_FFFF
	default:
		*p = v
	}
	return nil
}

// effAddr computes a memory operand's effective address: base + index*scale
// + displacement, with RIP-relative addressing relative to the next
// instruction, truncated to the address size (SDM vol. 1 section 3.7.5 and
// vol. 2A section 2.2.1.6).
func (s *state) effAddr(m x86asm.Mem) (uint64, error) {
	ea := uint64(m.Disp)
	switch m.Base {
	case 0:
	case x86asm.RIP, x86asm.EIP, x86asm.IP:
		ea += s.regs.RIP + uint64(s.in.inst.Len)
	default:
		v, err := s.readReg(m.Base)
		if err != nil {
			return 0, err
		}
		ea += v
	}
	if m.Index != 0 {
		v, err := s.readReg(m.Index)
		if err != nil {
			return 0, err
		}
		ea += v * uint64(m.Scale)
	}
	return ea & sizeMask(s.in.inst.AddrSize), nil
}

// stackBased reports whether a memory operand uses SS by default: a base of
// (E)SP or (E)BP (SDM vol. 1 section 3.7.4, Table 3-5).
func stackBased(m x86asm.Mem) bool {
	switch m.Base {
	case x86asm.SP, x86asm.BP, x86asm.ESP, x86asm.EBP, x86asm.RSP, x86asm.RBP:
		return true
	}
	return false
}

// segBase returns the base of the segment a memory operand uses. In 64-bit
// mode only FS and GS have a base (SDM vol. 3A section 3.4.4).
func (s *state) segBase(m x86asm.Mem) uint64 {
	sr := &s.sregs
	seg := m.Segment
	if s.mode == 64 {
		switch seg {
		case x86asm.FS:
			return sr.FS.Base
		case x86asm.GS:
			return sr.GS.Base
		}
		return 0
	}
	if seg == 0 {
		seg = x86asm.DS
		if stackBased(m) {
			seg = x86asm.SS
		}
	}
	switch seg {
	case x86asm.ES:
		return sr.ES.Base
	case x86asm.CS:
		return sr.CS.Base
	case x86asm.SS:
		return sr.SS.Base
	case x86asm.FS:
		return sr.FS.Base
	case x86asm.GS:
		return sr.GS.Base
	}
	return sr.DS.Base
}

// linearMask masks linear addresses: they wrap at 4 GiB outside 64-bit mode.
func (s *state) linearMask() uint64 {
	if s.mode == 64 {
		return ^uint64(0)
	}
	return 0xFFFF_FFFF
}

// canonical reports whether a 64-bit linear address is canonical: bits 63 to
// 47 (56 with 5-level paging) all equal (SDM vol. 1 section 3.3.7.1).
func canonical(addr uint64, la57 bool) bool {
	bits := uint(48)
	if la57 {
		bits = 57
	}
	top := int64(addr) >> (bits - 1)
	return top == 0 || top == -1
}

// memOperand returns the linear address of the instruction's memory
// operand Args[i]. A non-canonical address raises #GP(0), or #SS(0) for a
// stack-based one (SDM vol. 3A section 6.15, interrupts 12 and 13).
func (s *state) memOperand(i int) (uint64, error) {
	m, ok := s.in.inst.Args[i].(x86asm.Mem)
	if !ok {
		return 0, fmt.Errorf("operand %d is not in memory", i)
	}
	ea, err := s.effAddr(m)
	if err != nil {
		return 0, err
	}
	lin := (s.segBase(m) + ea) & s.linearMask()
	if s.mode == 64 && !canonical(lin, s.sregs.CR4&cr4LA57 != 0) {
		if (m.Segment == 0 && stackBased(m)) || m.Segment == x86asm.SS {
			return 0, &exception{vector: vecSS, hasCode: true}
		}
		return 0, &exception{vector: vecGP, hasCode: true}
	}
	return lin, nil
}

// span is a run of guest-physical bytes within one page.
type span struct {
	gpa uint64
	n   int
}

// translate maps n bytes at a linear address to guest-physical spans with
// KVM_TRANSLATE, one per page. An unmapped page raises #PF, as does a write
// to a page KVM reports read-only.
func (s *state) translate(lin uint64, n int, write bool) ([]span, error) {
	var spans []span
	for off := 0; off < n; {
		addr := (lin + uint64(off)) & s.linearMask()
		chunk := min(n-off, pageSize-int(addr%pageSize))
		t, err := s.cpu.Translate(addr)
		if err != nil {
			return nil, err
		}
		if t.Valid == 0 || write && t.Writeable == 0 {
			return nil, s.pageFault(addr, t.Valid != 0, write)
		}
		spans = append(spans, span{t.PhysicalAddress, chunk})
		off += chunk
	}
	return spans, nil
}

// read copies len(p) bytes at a linear address from guest memory.
func (s *state) read(lin uint64, p []byte) error {
	spans, err := s.translate(lin, len(p), false)
	if err != nil {
		return err
	}
	for _, sp := range spans {
		if _, err := s.mem.ReadAt(p[:sp.n], int64(sp.gpa)); err != nil {
			return fmt.Errorf("read of guest-physical %#x (linear %#x) outside RAM: %w", sp.gpa, lin, err)
		}
		p = p[sp.n:]
	}
	return nil
}

// write copies p to guest memory at a linear address. All pages are
// translated first, so a page fault leaves memory unchanged.
func (s *state) write(lin uint64, p []byte) error {
	spans, err := s.translate(lin, len(p), true)
	if err != nil {
		return err
	}
	for _, sp := range spans {
		if _, err := s.mem.WriteAt(p[:sp.n], int64(sp.gpa)); err != nil {
			return fmt.Errorf("write of guest-physical %#x (linear %#x) outside RAM: %w", sp.gpa, lin, err)
		}
		p = p[sp.n:]
	}
	return nil
}

// ripLinear returns the linear address of CS:RIP; the CS base is ignored in
// 64-bit mode (SDM vol. 3A section 3.4.4).
func (s *state) ripLinear() uint64 {
	if s.mode == 64 {
		return s.regs.RIP
	}
	return (s.sregs.CS.Base + s.regs.RIP) & 0xFFFF_FFFF
}

// fetch reads up to 15 instruction bytes at CS:RIP, page by page, stopping
// early at an untranslatable page or one outside RAM after the first. It
// fails when not even the first byte can be read.
func (s *state) fetch() ([]byte, error) {
	lin := s.ripLinear()
	buf := make([]byte, 0, maxInsnLen)
	for len(buf) < maxInsnLen {
		addr := (lin + uint64(len(buf))) & s.linearMask()
		n := min(maxInsnLen-len(buf), pageSize-int(addr%pageSize))
		t, err := s.cpu.Translate(addr)
		if err == nil && t.Valid == 0 {
			err = fmt.Errorf("linear address %#x is not mapped", addr)
		}
		if err == nil {
			_, err = s.mem.ReadAt(buf[len(buf):len(buf)+n], int64(t.PhysicalAddress))
		}
		if err != nil {
			if len(buf) == 0 {
				return nil, fmt.Errorf("fetch instruction at RIP %#x (linear %#x): %w", s.regs.RIP, lin, err)
			}
			break
		}
		buf = buf[:len(buf)+n]
	}
	return buf, nil
}
