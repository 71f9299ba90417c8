package machine

import (
	"encoding/binary"
	"fmt"

	"github.com/gvmm/gvmm/kvm"
)

// Model-specific registers set on every vCPU (Intel SDM vol. 4, "Model-
// Specific Registers"; AMD APM vol. 2 appendix A).
const (
	msrSysenterCS   = 0x174
	msrSysenterESP  = 0x175
	msrSysenterEIP  = 0x176
	msrMiscEnable   = 0x1a0
	msrMTRRDefType  = 0x2ff
	msrSTAR         = 0xc0000081
	msrLSTAR        = 0xc0000082
	msrCSTAR        = 0xc0000083
	msrSyscallMask  = 0xc0000084
	msrKernelGSBase = 0xc0000102

	// miscEnableFastStrings enables fast rep movs/stos (IA32_MISC_ENABLE
	// bit 0), as firmware leaves it.
	miscEnableFastStrings = 1
	// mtrrDefEnableWB makes all memory write-back by default (MTRRdefType:
	// E bit 11, type 6). Without firmware nobody else would, and a guest
	// that believes its RAM is uncached runs even slower.
	mtrrDefEnableWB = 1<<11 | 6
)

// Local APIC register offsets and LVT delivery modes (SDM vol. 3A section
// 10.5.1).
const (
	apicLVTLINT0     = 0x350
	apicLVTLINT1     = 0x360
	apicDeliveryMask = 0x700
	apicModeExtINT   = 0x700
	apicModeNMI      = 0x400
)

// setupVCPU gives a vCPU the state firmware would: MSRs, an x87/SSE
// control state, and local APIC LINT0/LINT1 wired as virtual-wire ExtINT and
// NMI (the state the MP spec's virtual wire mode expects).
func setupVCPU(v *kvm.VCPU, cpuidTable []kvm.CPUIDEntry) error {
	if err := v.SetCPUID2(cpuidTable); err != nil {
		return err
	}
	if err := v.SetMSRs([]kvm.MSREntry{
		{Index: msrMiscEnable, Data: miscEnableFastStrings},
		{Index: msrMTRRDefType, Data: mtrrDefEnableWB},
	}); err != nil {
		return err
	}
	// FCW 0x37F (all x87 exceptions masked) and MXCSR 0x1F80 (all SSE
	// exceptions masked): the values after FNINIT/reset (SDM vol. 1 sections
	// 8.1.5 and 10.2.3).
	if err := v.SetFPU(kvm.FPU{FCW: 0x37F, MXCSR: 0x1F80}); err != nil {
		return err
	}
	lapic, err := v.LAPIC()
	if err != nil {
		return err
	}
	setLVT := func(off int, mode uint32) {
		x := binary.LittleEndian.Uint32(lapic.Regs[off:])
		binary.LittleEndian.PutUint32(lapic.Regs[off:], x&^apicDeliveryMask|mode)
	}
	setLVT(apicLVTLINT0, apicModeExtINT)
	setLVT(apicLVTLINT1, apicModeNMI)
	if err := v.SetLAPIC(lapic); err != nil {
		return fmt.Errorf("vCPU %d: %w", v.ID(), err)
	}
	return nil
}
