// Package vcpu runs virtual CPUs: one goroutine per vCPU, locked to its OS
// thread, calling KVM_RUN and dispatching each exit to userspace (port I/O,
// MMIO, emulation failures, shutdowns) to the devices and handlers that own
// it.
//
// The loop is built for the cost of an exit on nested hosts (6-10 us on
// kvm_pvm): it allocates nothing per exit, takes no locks of its own, and
// reads the clock only when an Observer (statistics, tracing) is attached.
//
// Any vCPU can be kicked out of KVM_RUN from another goroutine, even one
// halted inside the guest: Kick sets kvm_run.immediate_exit, so a vCPU about
// to enter returns at once, and sends the thread a signal, so a vCPU already
// inside KVM_RUN returns EINTR (api.rst, "immediate_exit").
package vcpu
