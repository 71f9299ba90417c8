package emuhost

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/gvmm/gvmm/kvm"
)

// Why the host keeps a VM open.
//
// The host kernel rewrites its own code whenever a static key flips
// (jump labels: text_poke_bp puts an int3 on the first byte, syncs the
// CPUs, writes the rest, then the first byte). KVM flips some with the
// number of VMs: kvm_create_vm increments preempt_notifier_key, whose
// branch sits in __schedule, and kvm_destroy_vm decrements it; each vCPU
// with an in-kernel local APIC holds apic_sw_disabled until its guest
// enables the APIC. A run that starts and stops VMs one after another
// (machine.test, the vmtest examples) patches __schedule at every 0->1
// and 1->0.
//
// QEMU 7.2's TCG (Debian 12's) sometimes keeps running its stale
// translation of the patched code: a host CPU traps on the int3 at
// __schedule+0x2ab, the kernel's int3 handler finds the byte gone (memory
// holds the new jmp), backs up over it as it should, and the CPU traps on
// the same stale int3 again, forever, with interrupts off. Seen from
// QEMU's monitor: every CPU cycling through exc_int3, poke_int3_handler
// and __schedule while memory at the trapping address reads e9 (jmp). The
// whole host hangs; it happened within four runs of machine.test.
//
// With one VM (and one vCPU with its APIC) open for the host's whole
// life, those keys never return to zero after the first VM, so the
// kernel never patches that code again while the command runs.

// HoldVM creates a KVM VM with an in-kernel interrupt controller and one
// vCPU, creates the file ready (when not empty) to say so, and keeps them
// open until the process is killed. It returns only on failure. The
// emulated host runs it (as emuhost --hold-vm) before the command; see the
// comment above on why.
func HoldVM(ready string) error {
	sys, err := kvm.Open()
	if err != nil {
		return fmt.Errorf("hold a VM: %w", err)
	}
	vm, err := sys.CreateVM()
	if err != nil {
		return fmt.Errorf("hold a VM: %w", err)
	}
	if err := vm.CreateIRQChip(); err != nil {
		return fmt.Errorf("hold a VM: %w", err)
	}
	// The descriptors stay open until the process ends: package kvm
	// closes them only when asked.
	if _, err := vm.CreateVCPU(0); err != nil {
		return fmt.Errorf("hold a VM: %w", err)
	}
	if ready != "" {
		if err := os.WriteFile(ready, nil, 0o644); err != nil {
			return fmt.Errorf("hold a VM: %w", err)
		}
	}
	for {
		// Only a signal ends pause(2), and the ones that come (SIGTERM
		// and SIGKILL at power off) end the process.
		unix.Pause()
	}
}
