package main

import "github.com/gvmm/gvmm/machine"

// Exit statuses. Even numbers are gvmm's own; odd numbers are verdicts the
// guest wrote to the test-exit port, (value << 1) | 1 as QEMU's
// isa-debug-exit computes them.
const (
	// statusPowerOff: the guest powered off.
	statusPowerOff = 0
	// statusUsage: bad flags or bad input (kernel, initrd, sizes), or KVM
	// unavailable; nothing ran.
	statusUsage = 2
	// statusReset: the guest reset (ACPI reset register, i8042 reset,
	// triple fault).
	statusReset = 4
	// statusFailed: the guest did something gvmm cannot handle, or the VMM
	// failed while it ran.
	statusFailed = 6
	// statusStopped: stopped from the host (Ctrl-A x, SIGINT, SIGTERM).
	statusStopped = 8
)

// exitStatus maps how a VM ended to the process exit status.
func exitStatus(r *machine.Result) int {
	switch r.Outcome {
	case machine.PowerOff:
		return statusPowerOff
	case machine.Reset:
		return statusReset
	case machine.TestExit:
		return int((r.TestExitValue<<1)|1) & 0xFF
	case machine.Stopped:
		return statusStopped
	}
	return statusFailed
}
