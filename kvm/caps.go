package kvm

// Capability numbers (KVM_CAP_* in include/uapi/linux/kvm.h) that gvmm checks
// or enables.
const (
	CapIRQChip                = 0
	CapHLT                    = 1
	CapUserMemory             = 3
	CapSetTSSAddr             = 4
	CapExtCPUID               = 7
	CapClocksource            = 8
	CapNrVCPUs                = 9
	CapNrMemslots             = 10
	CapPIT                    = 11
	CapIRQRouting             = 25
	CapIRQFD                  = 32
	CapPIT2                   = 33
	CapIOEventFD              = 36
	CapSetIdentityMapAddr     = 37
	CapAdjustClock            = 39
	CapInternalErrorData      = 40
	CapVCPUEvents             = 41
	CapXSave                  = 55
	CapXCRs                   = 56
	CapGetTSCKHz              = 61
	CapMaxVCPUs               = 66
	CapTSCDeadlineTimer       = 72
	CapKVMClockCtrl           = 76
	CapMaxVCPUID              = 128
	CapImmediateExit          = 136
	CapExitOnEmulationFailure = 204
	CapXSave2                 = 208
)

// capName names the capabilities above for error messages.
var capName = map[int]string{
	CapIRQChip: "KVM_CAP_IRQCHIP", CapUserMemory: "KVM_CAP_USER_MEMORY",
	CapSetTSSAddr: "KVM_CAP_SET_TSS_ADDR", CapExtCPUID: "KVM_CAP_EXT_CPUID",
	CapPIT2: "KVM_CAP_PIT2", CapIRQFD: "KVM_CAP_IRQFD",
	CapIOEventFD: "KVM_CAP_IOEVENTFD", CapVCPUEvents: "KVM_CAP_VCPU_EVENTS",
	CapXSave: "KVM_CAP_XSAVE", CapImmediateExit: "KVM_CAP_IMMEDIATE_EXIT",
	CapMaxVCPUs: "KVM_CAP_MAX_VCPUS", CapNrVCPUs: "KVM_CAP_NR_VCPUS",
	CapExitOnEmulationFailure: "KVM_CAP_EXIT_ON_EMULATION_FAILURE",
}

// CapName returns the KVM_CAP_* name of a capability number.
func CapName(c int) string {
	if n, ok := capName[c]; ok {
		return n
	}
	return "KVM_CAP_" + itoa(uint64(c))
}

// RequiredCaps are the capabilities gvmm cannot run without: user memory
// slots, the in-kernel irqchip and PIT, KVM_SET_CPUID2, vCPU events for
// exception injection, and immediate_exit for prompt kicks.
var RequiredCaps = []int{
	CapUserMemory, CapSetTSSAddr, CapIRQChip, CapPIT2, CapExtCPUID,
	CapVCPUEvents, CapImmediateExit,
}
