// Package stats counts exits to userspace and measures, per exit, the time
// the VMM spends handling it and the time the vCPU spent in KVM_RUN before it.
//
// It shows from the VMM's side what Firecracker's exit counters, kvm_stat and
// perf kvm stat show from the kernel's, and more: every exit is attributed to
// a vCPU, an exit kind, a device and a register within the device (or the
// emulated instruction, or the KVM exit reason), with log-linear latency
// histograms (count, total, min, p50, p90, p99, max) for each.
//
// A Collector hands each vCPU its own vcpu.Observer. Everything an Observer
// writes belongs to that vCPU alone and is written with single-writer
// atomics, so the vCPU threads never share a cache line or a lock per exit,
// and Report can snapshot the lot from any goroutine while the VM runs. The
// counters fed from other goroutines (kicks, interrupts, eventfd signals) are
// plain atomic adds.
//
// Reports print as an aligned table (WriteTable) or as JSON (WriteJSON), on
// demand, on a signal (ServeSignal) or over a unix socket (ServeUnix).
package stats
