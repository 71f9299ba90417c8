package fallback

import (
	"encoding/binary"
)

// mxcsrOperand checks the preconditions of ldmxcsr and stmxcsr (SDM vol.
// 2B, LDMXCSR and STMXCSR): #UD without CR4.OSFXSR, #NM with CR0.TS, and
// returns the linear address of the 32-bit memory operand.
func (s *state) mxcsrOperand() (uint64, error) {
	if s.sregs.CR4&cr4OSFXSR == 0 || s.sregs.CR0&cr0EM != 0 {
		return 0, &exception{vector: vecUD}
	}
	if s.sregs.CR0&cr0TS != 0 {
		return 0, &exception{vector: vecNM}
	}
	return s.memOperand(0)
}

// emulateLdmxcsr emulates ldmxcsr m32 (0F AE /2): MXCSR, at byte 24 of the
// FXSAVE image in KVM_GET_XSAVE's legacy region, takes the value; reserved
// bits (outside MXCSR_MASK) raise #GP(0). Linux runs it in
// kernel_fpu_begin, which kvm_pvm's emulator cannot.
func emulateLdmxcsr(s *state) error {
	lin, err := s.mxcsrOperand()
	if err != nil {
		return err
	}
	var v [4]byte
	if err := s.read(lin, v[:]); err != nil {
		return err
	}
	x, img, err := s.legacyImage()
	if err != nil {
		return err
	}
	if err := checkMXCSR(&img, binary.LittleEndian.Uint32(v[:])); err != nil {
		return err
	}
	copy(img[fxMXCSR:], v[:])
	setLegacyRegion(x, &img)
	x.Region[xstateBV] |= xstateX87AndSSE &^ 1 // the SSE state (bit 1) is now in use
	return s.cpu.SetXSave(x)
}

// checkMXCSR raises #GP(0) for a new MXCSR value with bits outside the
// vCPU's MXCSR_MASK (from its FXSAVE image; 0 there means the default mask,
// SDM vol. 1 section 11.6.6), as fxrstor and ldmxcsr do.
func checkMXCSR(img *[fxAreaSize]byte, v uint32) error {
	mask := binary.LittleEndian.Uint32(img[fxMask:])
	if mask == 0 {
		mask = defaultMXCSRMask
	}
	if v&^mask != 0 {
		return &exception{vector: vecGP, hasCode: true}
	}
	return nil
}

// emulateStmxcsr emulates stmxcsr m32 (0F AE /3): MXCSR to memory.
func emulateStmxcsr(s *state) error {
	lin, err := s.mxcsrOperand()
	if err != nil {
		return err
	}
	_, img, err := s.legacyImage()
	if err != nil {
		return err
	}
	return s.write(lin, img[fxMXCSR:fxMXCSR+4])
}
