package vcpu

import (
	"fmt"

	"github.com/gvmm/gvmm/kvm"
)

// Event is something the guest did that ends the VM.
type Event int

// Guest events.
const (
	// EventTripleFault is KVM_EXIT_SHUTDOWN: the guest triple-faulted.
	EventTripleFault Event = iota
	// EventPowerOff is a KVM system event of type shutdown.
	EventPowerOff
	// EventReset is a KVM system event of type reset.
	EventReset
	// EventCrash is a KVM system event of type crash or unknown.
	EventCrash
)

func (e Event) String() string {
	switch e {
	case EventTripleFault:
		return "triple fault"
	case EventPowerOff:
		return "power off"
	case EventReset:
		return "reset"
	}
	return "crash"
}

// GuestEvent is returned by Run when the guest ends the VM.
type GuestEvent struct {
	VCPU  int
	Event Event
}

func (e *GuestEvent) Error() string {
	return fmt.Sprintf("vCPU %d: guest %s", e.VCPU, e.Event)
}

// UnhandledExitError is returned by Run for an exit gvmm cannot handle. It
// carries a report of the vCPU state for the user.
type UnhandledExitError struct {
	VCPU   int
	Reason uint32
	What   string
	// State describes the vCPU: RIP, instruction bytes and disassembly,
	// registers.
	State string
	Err   error
}

func (e *UnhandledExitError) Error() string {
	s := fmt.Sprintf("vCPU %d: %s (KVM exit %s)", e.VCPU, e.What, kvm.ExitName(e.Reason))
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying cause.
func (e *UnhandledExitError) Unwrap() error { return e.Err }
