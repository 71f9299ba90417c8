package kvm

// Regs mirrors struct kvm_regs (arch/x86/include/uapi/asm/kvm.h), 144 bytes:
// the general-purpose registers, RIP and RFLAGS.
type Regs struct {
	RAX, RBX, RCX, RDX, RSI, RDI, RSP, RBP uint64
	R8, R9, R10, R11, R12, R13, R14, R15   uint64
	RIP, RFLAGS                            uint64
}

// Segment mirrors struct kvm_segment, 24 bytes: a segment register in the
// unpacked form KVM uses (base, limit and the attribute bits of the
// descriptor, Intel SDM vol. 3 section 3.4.5).
type Segment struct {
	Base     uint64
	Limit    uint32
	Selector uint16
	Type     uint8
	Present  uint8
	DPL      uint8
	DB       uint8
	S        uint8
	L        uint8
	G        uint8
	AVL      uint8
	Unusable uint8
	_        uint8
}

// DTable mirrors struct kvm_dtable, 16 bytes: a GDTR or IDTR.
type DTable struct {
	Base  uint64
	Limit uint16
	_     [3]uint16
}

// Sregs mirrors struct kvm_sregs, 312 bytes: segment, control and descriptor
// table registers.
type Sregs struct {
	CS, DS, ES, FS, GS, SS  Segment
	TR, LDT                 Segment
	GDT, IDT                DTable
	CR0, CR2, CR3, CR4, CR8 uint64
	EFER                    uint64
	APICBase                uint64
	InterruptBitmap         [4]uint64
}

// FPU mirrors struct kvm_fpu, 416 bytes: the legacy x87/SSE state.
type FPU struct {
	FPR        [8][16]uint8
	FCW        uint16
	FSW        uint16
	FTWX       uint8
	_          uint8
	LastOpcode uint16
	LastIP     uint64
	LastDP     uint64
	XMM        [16][16]uint8
	MXCSR      uint32
	_          uint32
}

// MSREntry mirrors struct kvm_msr_entry, 16 bytes.
type MSREntry struct {
	Index uint32
	_     uint32
	Data  uint64
}

// CPUIDEntry mirrors struct kvm_cpuid_entry2, 40 bytes: one CPUID leaf
// (Function) and subleaf (Index).
type CPUIDEntry struct {
	Function uint32
	Index    uint32
	Flags    uint32
	EAX      uint32
	EBX      uint32
	ECX      uint32
	EDX      uint32
	_        [3]uint32
}

// CPUIDFlagSignificantIndex marks a leaf whose subleaf (Index) matters
// (KVM_CPUID_FLAG_SIGNIFCANT_INDEX).
const CPUIDFlagSignificantIndex = 1

// UserspaceMemoryRegion mirrors struct kvm_userspace_memory_region, 32 bytes.
type UserspaceMemoryRegion struct {
	Slot          uint32
	Flags         uint32
	GuestPhysAddr uint64
	MemorySize    uint64
	UserspaceAddr uint64
}

// Translation mirrors struct kvm_translation, 24 bytes: the result of
// KVM_TRANSLATE of a guest-virtual address.
type Translation struct {
	LinearAddress   uint64
	PhysicalAddress uint64
	Valid           uint8
	Writeable       uint8
	UserMode        uint8
	_               [5]uint8
}

// VCPUEvents mirrors struct kvm_vcpu_events, 64 bytes: pending and injected
// exceptions, interrupts and NMIs (api.rst, KVM_GET_VCPU_EVENTS).
type VCPUEvents struct {
	Exception struct {
		Injected     uint8
		Nr           uint8
		HasErrorCode uint8
		Pending      uint8
		ErrorCode    uint32
	}
	Interrupt struct {
		Injected uint8
		Nr       uint8
		Soft     uint8
		Shadow   uint8
	}
	NMI struct {
		Injected uint8
		Pending  uint8
		Masked   uint8
		_        uint8
	}
	SIPIVector uint32
	Flags      uint32
	SMI        struct {
		SMM          uint8
		Pending      uint8
		SMMInsideNMI uint8
		LatchedInit  uint8
	}
	TripleFaultPending  uint8
	_                   [26]uint8
	ExceptionHasPayload uint8
	ExceptionPayload    uint64
}

// XSave mirrors struct kvm_xsave, 4096 bytes: the XSAVE image of a vCPU. Its
// first 512 bytes are the FXSAVE legacy region (Intel SDM vol. 1 section
// 10.5.1).
type XSave struct {
	Region [1024]uint32
}

// LAPICState mirrors struct kvm_lapic_state: the local APIC register page.
type LAPICState struct {
	Regs [1024]uint8
}

// MPState mirrors struct kvm_mp_state.
type MPState struct {
	State uint32
}

// Multiprocessing states (KVM_MP_STATE_*).
const (
	MPStateRunnable      = 0
	MPStateUninitialized = 1
	MPStateInitReceived  = 2
	MPStateHalted        = 3
	MPStateSIPIReceived  = 4
)

// GuestDebug mirrors struct kvm_guest_debug for x86, 72 bytes.
type GuestDebug struct {
	Control  uint32
	_        uint32
	DebugReg [8]uint64
}

// DebugRegs mirrors struct kvm_debugregs, 128 bytes: the guest's own
// debug registers DR0-DR3, DR6 and DR7 (api.rst, KVM_GET_DEBUGREGS). While
// KVM_SET_GUEST_DEBUG uses the hardware breakpoints, these are what the
// guest reads and writes, not what the CPU runs with.
type DebugRegs struct {
	DB    [4]uint64
	DR6   uint64
	DR7   uint64
	Flags uint64
	_     [9]uint64
}

// IRQChip mirrors struct kvm_irqchip, 520 bytes: the state of one in-kernel
// PIC or the IOAPIC.
type IRQChip struct {
	ChipID uint32
	_      uint32
	Chip   [512]uint8
}

// PITChannelState mirrors struct kvm_pit_channel_state, 24 bytes.
type PITChannelState struct {
	Count         uint32
	LatchedCount  uint16
	CountLatched  uint8
	StatusLatched uint8
	Status        uint8
	ReadState     uint8
	WriteState    uint8
	WriteLatch    uint8
	RWMode        uint8
	Mode          uint8
	BCD           uint8
	Gate          uint8
	CountLoadTime int64
}

// PITState2 mirrors struct kvm_pit_state2, 112 bytes.
type PITState2 struct {
	Channels [3]PITChannelState
	Flags    uint32
	_        [9]uint32
}

// ClockData mirrors struct kvm_clock_data, 48 bytes: the VM's kvmclock.
type ClockData struct {
	Clock    uint64
	Flags    uint32
	_        uint32
	Realtime uint64
	HostTSC  uint64
	_        [4]uint32
}

type irqLevel struct {
	IRQ   uint32
	Level uint32
}

type irqfd struct {
	FD         uint32
	GSI        uint32
	Flags      uint32
	ResampleFD uint32
	_          [16]uint8
}

type ioeventfd struct {
	Datamatch uint64
	Addr      uint64
	Len       uint32
	FD        int32
	Flags     uint32
	_         [36]uint8
}

type pitConfig struct {
	Flags uint32
	_     [15]uint32
}

type enableCap struct {
	Cap   uint32
	Flags uint32
	Args  [4]uint64
	_     [64]uint8
}
