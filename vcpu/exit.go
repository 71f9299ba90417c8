package vcpu

// Kind classifies an exit to userspace for statistics and traces. It is
// coarser than the KVM exit reason where gvmm handles exits alike (all port
// reads are KindIOIn) and finer where it matters (an emulation failure that
// the instruction fallback handled is KindFallback, not KindInternalError).
type Kind uint8

// Exit kinds.
const (
	KindIOIn          Kind = iota // KVM_EXIT_IO, direction in
	KindIOOut                     // KVM_EXIT_IO, direction out
	KindMMIORead                  // KVM_EXIT_MMIO, read
	KindMMIOWrite                 // KVM_EXIT_MMIO, write
	KindHLT                       // KVM_EXIT_HLT (only without an in-kernel LAPIC)
	KindShutdown                  // KVM_EXIT_SHUTDOWN: triple fault
	KindSystemEvent               // KVM_EXIT_SYSTEM_EVENT
	KindInternalError             // KVM_EXIT_INTERNAL_ERROR not handled by the fallback
	KindFallback                  // an instruction the host could not emulate, emulated by gvmm
	KindIntr                      // KVM_RUN returned EINTR: a signal (Go preemption or a kick)
	KindOther                     // any other exit reason
	KindMSR                       // KVM_EXIT_X86_WRMSR/RDMSR: an MSR access sent to userspace
	NumKinds
)

var kindNames = [NumKinds]string{
	KindIOIn: "io-in", KindIOOut: "io-out", KindMMIORead: "mmio-read",
	KindMMIOWrite: "mmio-write", KindHLT: "hlt", KindShutdown: "shutdown",
	KindSystemEvent: "system-event", KindInternalError: "internal-error",
	KindFallback: "fallback", KindIntr: "eintr", KindOther: "other", KindMSR: "msr",
}

// String returns the kind's short name, such as "io-out".
func (k Kind) String() string {
	if k < NumKinds {
		return kindNames[k]
	}
	return "unknown"
}

// Exit describes one exit to userspace after gvmm handled it. The loop
// reuses one Exit per vCPU, so an Observer must copy what it keeps.
type Exit struct {
	// VCPU is the index of the vCPU that exited.
	VCPU int
	// Kind classifies the exit.
	Kind Kind
	// Reason is the raw KVM exit reason (KVM_EXIT_*).
	Reason uint32
	// Addr is the port (IO) or guest-physical address (MMIO).
	Addr uint64
	// Size is the access width in bytes (IO, MMIO).
	Size uint8
	// Count is the repeat count of a string I/O instruction (1 otherwise).
	Count uint32
	// Data holds up to the first 8 bytes moved, little-endian.
	Data uint64
	// Slot is the device's slot on its bus (devices.Bus), or -1 when no
	// device claims the address.
	Slot int
	// Offset is the register offset within the device.
	Offset uint64
	// Op identifies the emulated instruction of a KindFallback exit
	// (fallback.Op).
	Op uint8
	// Start is the time KVM_RUN returned, in nanoseconds of the monotonic
	// clock (nanotime), 0 when timing is off.
	Start int64
	// RunNs is how long the vCPU was in KVM_RUN before this exit.
	RunNs int64
	// HandleNs is how long gvmm spent handling the exit, from KVM_RUN's
	// return to the point the loop is ready to call it again.
	HandleNs int64
}

// Observer receives every exit when statistics or tracing are on. It runs on
// the vCPU's thread, inside the exit loop: it must be fast and must not
// block. With no Observer set the loop takes no timestamps at all.
type Observer interface {
	Observe(e *Exit)
}

// Observers fans one exit out to several observers (statistics and a trace).
type Observers []Observer

// Observe calls each observer in turn.
func (obs Observers) Observe(e *Exit) {
	for _, o := range obs {
		o.Observe(e)
	}
}
