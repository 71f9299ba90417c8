// Package profile is a sampling profiler of guest code: it counts, per vCPU,
// the guest instruction pointers (RIP) seen at regular kicks, and names
// them with the kernel's symbol table (a System.map, or the guest's
// /proc/kallsyms, both in nm(1) format).
//
// It answers "where is the guest spending its time" when the guest prints
// nothing and exits rarely, which on a host that emulates guest kernel code
// (kvm_pvm) can last many minutes. A sample costs one kick (an exit to
// userspace) and one KVM_GET_REGS; at the default 50 Hz that is well under
// 1% of a vCPU.
//
// A profile file is text, one "vcpu rip count" line per distinct sample
// after a "gvmm-profile 1" header, so it can be read with awk as well as
// with Read.
package profile
