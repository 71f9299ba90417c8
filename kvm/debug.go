package kvm

import "encoding/binary"

// Guest debug control flags (KVM_GUESTDBG_*).
const (
	GuestDebugEnable     = 1 << 0
	GuestDebugSingleStep = 1 << 1
	GuestDebugUseSWBP    = 1 << 16
	GuestDebugUseHWBP    = 1 << 17
)

// DR6 bits (SDM vol. 3B section 17.2.3): B0-B3 say which breakpoint
// condition was met, BS a single step. DR6ActiveLow are the bits that read
// as 1 when no condition is reported (api.rst and KVM call this
// DR6_ACTIVE_LOW): the reserved ones and RTM's.
const (
	DR6B0        = 1 << 0
	DR6B1        = 1 << 1
	DR6B2        = 1 << 2
	DR6B3        = 1 << 3
	DR6BS        = 1 << 14
	DR6ActiveLow = 0xFFFF0FF0
)

// DebugExit is the debug member of the exit union (KVM_EXIT_DEBUG, struct
// kvm_debug_exit_arch on x86).
type DebugExit struct {
	// Exception is the vector: 1 (#DB) or 3 (#BP).
	Exception uint32
	// PC is the guest linear address (CS base + RIP) of the exit.
	PC uint64
	// DR6 and DR7 are the hardware's debug status and control at the
	// exit; DR6 says why (a breakpoint, a single step).
	DR6, DR7 uint64
}

// Debug decodes the debug member (KVM_EXIT_DEBUG).
func (r *RunData) Debug() DebugExit {
	e := &r.Exit
	return DebugExit{Exception: binary.LittleEndian.Uint32(e[0:]), PC: binary.LittleEndian.Uint64(e[8:]),
		DR6: binary.LittleEndian.Uint64(e[16:]), DR7: binary.LittleEndian.Uint64(e[24:])}
}
