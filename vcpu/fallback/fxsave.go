package fallback

import (
	"encoding/binary"

	"github.com/gvmm/gvmm/kvm"
	"golang.org/x/arch/x86/x86asm"
)

// The FXSAVE area (SDM vol. 1 section 10.5.1, Tables 10-2 and 10-3): 512
// bytes, 16-byte aligned. It is also the legacy region at the start of the
// XSAVE area (SDM vol. 1 section 13.4.1), so the first 512 bytes of struct
// kvm_xsave are the vCPU's FXSAVE image, in the 64-bit format.
const (
	fxAreaSize = 512
	fxFIP      = 8   // FPU instruction pointer: 64-bit, or 32-bit + FCS
	fxFDP      = 16  // FPU data pointer: 64-bit, or 32-bit + FDS
	fxMXCSR    = 24  // MXCSR
	fxMask     = 28  // MXCSR_MASK: the writable MXCSR bits
	fxXMM      = 160 // XMM0
	fxEnd32    = 288 // end of XMM0-7: the area saved outside 64-bit mode
	fxEnd64    = 416 // end of XMM0-15; bytes 416-511 are reserved or free for software
	// defaultMXCSRMask applies when MXCSR_MASK reads 0 (SDM vol. 1 section
	// 11.6.6).
	defaultMXCSRMask = 0xFFBF
	// xstateBV is the word index, in kvm.XSave.Region, of the low half of
	// XSTATE_BV in the XSAVE header at byte 512 (SDM vol. 1 section
	// 13.4.2); bits 0 and 1 mark the x87 and SSE state present.
	xstateBV        = 512 / 4
	xstateX87AndSSE = 3
)

// fxArea checks the preconditions of fxsave and fxrstor and returns the
// linear address of their memory operand: #NM if CR0.TS or CR0.EM is set,
// #GP(0) if the operand is not 16-byte aligned (SDM vol. 2A, FXSAVE and
// FXRSTOR, protected and 64-bit mode exceptions).
func (s *state) fxArea() (uint64, error) {
	if s.sregs.CR0&(cr0TS|cr0EM) != 0 {
		return 0, &exception{vector: vecNM}
	}
	lin, err := s.memOperand(0)
	if err != nil {
		return 0, err
	}
	if lin%16 != 0 {
		return 0, &exception{vector: vecGP, hasCode: true}
	}
	return lin, nil
}

// fxEnd returns how much of the FXSAVE area the instruction saves or
// restores: through XMM15 in 64-bit mode, through XMM7 elsewhere, and no
// XMM register when CR4.OSFXSR is clear outside 64-bit mode, which the SDM
// leaves implementation-dependent (vol. 2A, FXSAVE); KVM's own emulator
// (arch/x86/kvm/emulate.c, fxstate_size) draws the same lines.
func (s *state) fxEnd() int {
	switch {
	case s.mode == 64:
		return fxEnd64
	case s.sregs.CR4&cr4OSFXSR != 0:
		return fxEnd32
	}
	return fxXMM
}

// legacyRegion returns the first 512 bytes of an XSAVE image.
func legacyRegion(x *kvm.XSave) (b [fxAreaSize]byte) {
	for i := range fxAreaSize / 4 {
		binary.LittleEndian.PutUint32(b[4*i:], x.Region[i])
	}
	return b
}

// legacyImage returns the vCPU's XSAVE image (KVM_GET_XSAVE) and a copy of
// its first 512 bytes, the FXSAVE layout the SSE instructions work on.
func (s *state) legacyImage() (*kvm.XSave, [fxAreaSize]byte, error) {
	x, err := s.cpu.XSave()
	if err != nil {
		return nil, [fxAreaSize]byte{}, err
	}
	return x, legacyRegion(x), nil
}

// setLegacyRegion stores b as the first 512 bytes of an XSAVE image.
func setLegacyRegion(x *kvm.XSave, b *[fxAreaSize]byte) {
	for i := range fxAreaSize / 4 {
		x.Region[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
}

// emulateFxsave emulates fxsave m512 and fxsave64 m512 (0F AE /0 and REX.W
// 0F AE /0; SDM vol. 2A, FXSAVE) through KVM_GET_XSAVE. fxsave64 stores the
// 64-bit format, with 64-bit FPU instruction and data pointers; fxsave
// stores them as 32-bit offsets followed by the FCS and FDS selectors, which
// KVM's 64-bit image does not keep: they are stored as zero, as processors
// that deprecate FCS and FDS do (CPUID.(EAX=07H,ECX=0):EBX[13]). Bytes
// 464-511 are left alone, as the processor does; bytes 416-463 too.
func emulateFxsave(s *state) error {
	lin, err := s.fxArea()
	if err != nil {
		return err
	}
	_, img, err := s.legacyImage()
	if err != nil {
		return err
	}
	if s.in.inst.Op != x86asm.FXSAVE64 {
		// 32-bit format (Table 10-2): FIP[31:0], FCS, FDP[31:0], FDS.
		binary.LittleEndian.PutUint32(img[fxFIP+4:], 0)
		binary.LittleEndian.PutUint32(img[fxFDP+4:], 0)
	}
	return s.write(lin, img[:s.fxEnd()])
}

// emulateFxrstor emulates fxrstor m512 and fxrstor64 m512 (0F AE /1 and
// REX.W 0F AE /1; SDM vol. 2A, FXRSTOR) through KVM_GET_XSAVE and
// KVM_SET_XSAVE: the x87 and SSE state from the area replace the image's
// legacy region, except MXCSR_MASK, which the processor does not load, and
// XSTATE_BV bits 0 and 1 are set so that KVM loads them. Setting reserved
// MXCSR bits raises #GP(0). fxrstor reads the 32-bit format: 32-bit FPU
// instruction and data pointers, zero-extended.
func emulateFxrstor(s *state) error {
	lin, err := s.fxArea()
	if err != nil {
		return err
	}
	var img [fxAreaSize]byte
	end := s.fxEnd()
	if err := s.read(lin, img[:end]); err != nil {
		return err
	}
	x, cur, err := s.legacyImage()
	if err != nil {
		return err
	}
	if err := checkMXCSR(&cur, binary.LittleEndian.Uint32(img[fxMXCSR:])); err != nil {
		return err
	}
	if s.in.inst.Op != x86asm.FXRSTOR64 {
		binary.LittleEndian.PutUint32(img[fxFIP+4:], 0)
		binary.LittleEndian.PutUint32(img[fxFDP+4:], 0)
	}
	copy(cur[:fxMask], img[:fxMask])
	copy(cur[fxMask+4:end], img[fxMask+4:end])
	setLegacyRegion(x, &cur)
	x.Region[xstateBV] |= xstateX87AndSSE
	return s.cpu.SetXSave(x)
}
