package kvm

import (
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
)

// TestStructSizes checks every mirrored struct against the size of its C
// original on x86-64; a wrong size would make the ioctl number wrong too.
func TestStructSizes(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  uintptr
		want uintptr
	}{
		{"kvm_regs", unsafe.Sizeof(Regs{}), 144},
		{"kvm_segment", unsafe.Sizeof(Segment{}), 24},
		{"kvm_dtable", unsafe.Sizeof(DTable{}), 16},
		{"kvm_sregs", unsafe.Sizeof(Sregs{}), 312},
		{"kvm_fpu", unsafe.Sizeof(FPU{}), 416},
		{"kvm_msr_entry", unsafe.Sizeof(MSREntry{}), 16},
		{"kvm_cpuid_entry2", unsafe.Sizeof(CPUIDEntry{}), 40},
		{"kvm_userspace_memory_region", unsafe.Sizeof(UserspaceMemoryRegion{}), 32},
		{"kvm_translation", unsafe.Sizeof(Translation{}), 24},
		{"kvm_vcpu_events", unsafe.Sizeof(VCPUEvents{}), 64},
		{"kvm_xsave", unsafe.Sizeof(XSave{}), 4096},
		{"kvm_lapic_state", unsafe.Sizeof(LAPICState{}), 1024},
		{"kvm_guest_debug", unsafe.Sizeof(GuestDebug{}), 72},
		{"kvm_debugregs", unsafe.Sizeof(DebugRegs{}), 128},
		{"kvm_msr_filter", unsafe.Sizeof(msrFilter{}), 392},
		{"kvm_irqchip", unsafe.Sizeof(IRQChip{}), 520},
		{"kvm_pit_channel_state", unsafe.Sizeof(PITChannelState{}), 24},
		{"kvm_pit_state2", unsafe.Sizeof(PITState2{}), 112},
		{"kvm_clock_data", unsafe.Sizeof(ClockData{}), 48},
		{"kvm_irq_level", unsafe.Sizeof(irqLevel{}), 8},
		{"kvm_irqfd", unsafe.Sizeof(irqfd{}), 32},
		{"kvm_ioeventfd", unsafe.Sizeof(ioeventfd{}), 64},
		{"kvm_pit_config", unsafe.Sizeof(pitConfig{}), 64},
		{"kvm_enable_cap", unsafe.Sizeof(enableCap{}), 104},
		{"kvm_run", unsafe.Sizeof(RunData{}), 2352},
	} {
		assert.Equal(t, tc.want, tc.got, tc.name)
	}
}

// TestRequestNumbers checks a few request numbers against the values the C
// headers produce.
func TestRequestNumbers(t *testing.T) {
	assert.Equal(t, uintptr(0xAE80), reqRun)
	assert.Equal(t, uintptr(0x4020AE46), reqSetUserMemoryRegion)
	assert.Equal(t, uintptr(0x8090AE81), reqGetRegs)
	assert.Equal(t, uintptr(0x4138AE84), reqSetSregs)
	assert.Equal(t, uintptr(0xC008AE05), reqGetSupportedCPUID)
	assert.Equal(t, uintptr(0x4040AEA0), reqSetVCPUEvents)
	assert.Equal(t, uintptr(0x9000AEA4), reqGetXSave)
	assert.Equal(t, uintptr(0xC018AE85), reqTranslate)
	assert.Equal(t, uintptr(0x4068AEA3), reqEnableCap)
	assert.Equal(t, uintptr(0x8080AEA1), reqGetDebugRegs)
	assert.Equal(t, uintptr(0x4080AEA2), reqSetDebugRegs)
	assert.Equal(t, uintptr(0x4188AEC6), reqSetMSRFilter)
}
