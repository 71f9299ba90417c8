package kvm

import (
	"encoding/binary"
	"unsafe"
)

// Exit reasons (KVM_EXIT_* in include/uapi/linux/kvm.h).
const (
	ExitUnknown       = 0
	ExitException     = 1
	ExitIO            = 2
	ExitHypercall     = 3
	ExitDebug         = 4
	ExitHLT           = 5
	ExitMMIO          = 6
	ExitIRQWindowOpen = 7
	ExitShutdown      = 8
	ExitFailEntry     = 9
	ExitIntr          = 10
	ExitSetTPR        = 11
	ExitTPRAccess     = 12
	ExitNMI           = 16
	ExitInternalError = 17
	ExitSystemEvent   = 24
	ExitX86RDMSR      = 29
	ExitX86WRMSR      = 30
	// NumExitReasons bounds the exit reasons this package names.
	NumExitReasons = 40
)

var exitNames = map[uint32]string{
	ExitUnknown: "UNKNOWN", ExitException: "EXCEPTION", ExitIO: "IO",
	ExitHypercall: "HYPERCALL", ExitDebug: "DEBUG", ExitHLT: "HLT",
	ExitMMIO: "MMIO", ExitIRQWindowOpen: "IRQ_WINDOW_OPEN",
	ExitShutdown: "SHUTDOWN", ExitFailEntry: "FAIL_ENTRY", ExitIntr: "INTR",
	ExitSetTPR: "SET_TPR", ExitTPRAccess: "TPR_ACCESS", ExitNMI: "NMI",
	ExitInternalError: "INTERNAL_ERROR", ExitSystemEvent: "SYSTEM_EVENT",
	ExitX86RDMSR: "X86_RDMSR", ExitX86WRMSR: "X86_WRMSR",
}

// ExitName returns the KVM name of an exit reason, such as "IO".
func ExitName(reason uint32) string {
	if n, ok := exitNames[reason]; ok {
		return n
	}
	return "EXIT_" + itoa(uint64(reason))
}

// Internal error suberrors (KVM_INTERNAL_ERROR_*).
const (
	InternalErrorEmulation      = 1
	InternalErrorSimulEx        = 2
	InternalErrorDeliveryEv     = 3
	InternalErrorUnexpectedExit = 4
)

// EmulationFlagInstructionBytes says an emulation-failure exit carries the
// failing instruction's bytes (KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES).
const EmulationFlagInstructionBytes = 1

// System event types (KVM_SYSTEM_EVENT_*).
const (
	SystemEventShutdown = 1
	SystemEventReset    = 2
	SystemEventCrash    = 3
)

// I/O directions of an IO exit (KVM_EXIT_IO_IN / KVM_EXIT_IO_OUT).
const (
	IOIn  = 0
	IOOut = 1
)

// RunData mirrors the fixed part of struct kvm_run (include/uapi/linux/kvm.h),
// the page shared with the kernel through the vCPU fd's mmap. Exit holds the
// union of per-exit data, decoded by the accessors below.
type RunData struct {
	RequestInterruptWindow     uint8       // offset 0
	ImmediateExit              uint8       // offset 1
	_                          [6]uint8    // offset 2
	ExitReason                 uint32      // offset 8
	ReadyForInterruptInjection uint8       // offset 12
	IFFlag                     uint8       // offset 13
	Flags                      uint16      // offset 14
	CR8                        uint64      // offset 16
	APICBase                   uint64      // offset 24
	Exit                       [256]uint8  // offset 32: the exit union
	ValidRegs                  uint64      // offset 288: kvm_valid_regs
	DirtyRegs                  uint64      // offset 296: kvm_dirty_regs
	SyncRegs                   [2048]uint8 // offset 304: struct kvm_sync_regs, padded
}

// IO decodes the io member of the exit union (KVM_EXIT_IO): direction, access
// size, port, repeat count, and the offset of the data within the run page.
func (r *RunData) IO() (direction, size uint8, port uint16, count uint32, dataOffset uint64) {
	e := &r.Exit
	return e[0], e[1], binary.LittleEndian.Uint16(e[2:]), binary.LittleEndian.Uint32(e[4:]),
		binary.LittleEndian.Uint64(e[8:])
}

// MMIO decodes the mmio member of the exit union (KVM_EXIT_MMIO). data is the
// 8-byte buffer in the run page itself: for reads the VMM fills its first
// length bytes before the next KVM_RUN.
func (r *RunData) MMIO() (addr uint64, data []byte, length uint32, isWrite bool) {
	e := &r.Exit
	return binary.LittleEndian.Uint64(e[0:]), e[8:16], binary.LittleEndian.Uint32(e[16:]), e[20] != 0
}

// Internal decodes the internal member (KVM_EXIT_INTERNAL_ERROR): the
// suberror and up to 16 words of data.
func (r *RunData) Internal() (suberror uint32, data []uint64) {
	e := &r.Exit
	suberror = binary.LittleEndian.Uint32(e[0:])
	n := binary.LittleEndian.Uint32(e[4:])
	if n > 16 {
		n = 16
	}
	data = make([]uint64, n)
	for i := range data {
		data[i] = binary.LittleEndian.Uint64(e[8+8*i:])
	}
	return suberror, data
}

// EmulationFailure decodes the emulation_failure member, present when the
// suberror is InternalErrorEmulation and KVM_CAP_EXIT_ON_EMULATION_FAILURE is
// enabled: it returns the instruction bytes KVM fetched, if any.
func (r *RunData) EmulationFailure() (insn []byte, ok bool) {
	e := &r.Exit
	if binary.LittleEndian.Uint32(e[0:]) != InternalErrorEmulation {
		return nil, false
	}
	ndata := binary.LittleEndian.Uint32(e[4:])
	flags := binary.LittleEndian.Uint64(e[8:])
	if ndata < 3 || flags&EmulationFlagInstructionBytes == 0 {
		return nil, false
	}
	size := int(e[16])
	if size > 15 {
		size = 15
	}
	out := make([]byte, size)
	copy(out, e[17:17+size])
	return out, true
}

// SystemEvent decodes the system_event member (KVM_EXIT_SYSTEM_EVENT).
func (r *RunData) SystemEvent() (typ uint32) {
	return binary.LittleEndian.Uint32(r.Exit[0:])
}

// FailEntry decodes the fail_entry member (KVM_EXIT_FAIL_ENTRY).
func (r *RunData) FailEntry() (reason uint64, cpu uint32) {
	return binary.LittleEndian.Uint64(r.Exit[0:]), binary.LittleEndian.Uint32(r.Exit[8:])
}

// runData views the start of a vCPU's mmap'ed run area as a RunData.
func runData(b []byte) *RunData {
	if len(b) < int(unsafe.Sizeof(RunData{})) {
		panic("kvm: vCPU mmap smaller than struct kvm_run")
	}
	return (*RunData)(unsafe.Pointer(&b[0]))
}

func itoa(v uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}
