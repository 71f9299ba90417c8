package machine

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/gvmm/gvmm/kvm"
	"github.com/gvmm/gvmm/vcpu/cpuid"
)

// Host describes the KVM host gvmm runs on, as far as it changes how a guest
// must be set up.
type Host struct {
	// Backend names the KVM implementation: "kvm_pvm" or "kvm".
	Backend string
	// EmulatesKernel is true on hosts whose KVM runs guest kernel code
	// through its instruction emulator (kvm_pvm, a software nested
	// backend): instructions that emulator lacks must be hidden from the
	// guest or emulated by gvmm.
	EmulatesKernel bool
	// Forced lists features gvmm hid in CPUID that the host put back
	// (read back with KVM_GET_CPUID2); the guest kernel is told not to use
	// them on its command line instead.
	Forced []cpuid.Feature
}

// sysModules is where Linux lists its loaded modules (and built-in ones
// with parameters); kvm_pvm is there when that backend provides /dev/kvm.
const sysModules = "/sys/module"

// detectHost describes the host from its module list under modules
// (sysModules, or a fake one in tests).
func detectHost(modules string) Host {
	if _, err := os.Stat(filepath.Join(modules, "kvm_pvm")); err == nil {
		return Host{Backend: "kvm_pvm", EmulatesKernel: true}
	}
	return Host{Backend: "kvm"}
}

// adaptations are gvmm's workarounds for a host whose KVM emulates guest
// kernel code (kvm_pvm, docs/nested-kvm.md). Each costs something where it
// is not needed (the watchdog kicks idle vCPUs, the SYSCALL trap costs
// exits, the fallback would paper over emulation failures that elsewhere
// mean a bug in the guest or in KVM), so other hosts get none of them.
type adaptations struct {
	// hide lists the CPUID features hidden from the guest.
	hide []cpuid.Feature
	// fallback handles emulation failures (KVM_EXIT_INTERNAL_ERROR) with
	// the instruction fallback; without it they end the VM with a report.
	fallback bool
	// watchdog probes vCPUs that have not exited for a while, for hangs
	// the fallback knows (the clock-pairing hypercall).
	watchdog bool
	// syscallTrap completes the guest's SYSCALLs (fallback.SyscallTrap).
	syscallTrap bool
	// tuning adds the kernel parameters that spare an emulated kernel
	// work (cmdlineParams).
	tuning bool
}

// adaptations returns what gvmm changes for this host. noFallback (gvmm
// run --no-fallback) turns off the fallback and what depends on it: the
// watchdog and the SYSCALL trap.
func (h Host) adaptations(noFallback bool) adaptations {
	if !h.EmulatesKernel {
		return adaptations{}
	}
	return adaptations{hide: emulatorHides, fallback: !noFallback, watchdog: !noFallback,
		syscallTrap: !noFallback, tuning: true}
}

// String lists the adaptations for gvmm's -v notes.
func (a adaptations) String() string {
	var on []string
	if len(a.hide) > 0 {
		on = append(on, fmt.Sprintf("%d CPUID features hidden", len(a.hide)))
	}
	for _, x := range []struct {
		on   bool
		name string
	}{{a.fallback, "instruction fallback"}, {a.watchdog, "hang watchdog"}, {a.syscallTrap, "SYSCALL trap"}, {a.tuning, "kernel parameters"}} {
		if x.on {
			on = append(on, x.name)
		}
	}
	if len(on) == 0 {
		return "none"
	}
	return strings.Join(on, ", ")
}

// emulatorHides are the features whose instructions kvm_pvm's emulator
// cannot run at CPL0, measured on such a host (docs/nested-kvm.md):
// cmpxchg16b (SLUB), popcnt (bitmap weights), clac/stac (SMAP, at every
// interrupt entry), xsave/xrstor (FPU init), and the PCID/INVPCID,
// FSGSBASE, RDPID and PKU instructions that a kernel uses when it sees
// them. Hiding them is cheaper than emulating them: an emulated instruction
// costs an exit. The SIMD extensions go too: a distribution kernel runs its
// crypto and checksum self-tests with them (SSSE3, SSE4.x, AES-NI, PCLMUL,
// SHA-NI) in kernel mode at boot, and the emulator runs none of them. The
// guest's user space, which runs natively, loses them as well.
var emulatorHides = []cpuid.Feature{
	cpuid.CX16, cpuid.POPCNT, cpuid.SMAP, cpuid.XSAVE, cpuid.PKU,
	cpuid.FSGSBASE, cpuid.RDPID, cpuid.INVPCID, cpuid.PCID,
	cpuid.PCLMULQDQ, cpuid.SSSE3, cpuid.FMA, cpuid.SSE41, cpuid.SSE42,
	cpuid.AES, cpuid.F16C, cpuid.SHA, cpuid.GFNI, cpuid.VAES, cpuid.VPCLMULQDQ,
}

// forcedFeatures returns the hidden features that are still set in the
// table KVM reads back.
func forcedFeatures(readBack []kvm.CPUIDEntry, hidden []cpuid.Feature) []cpuid.Feature {
	var out []cpuid.Feature
	for _, f := range hidden {
		if cpuid.Has(readBack, f) {
			out = append(out, f)
		}
	}
	return out
}

// cmdlineParams returns the kernel parameters that keep the guest off what
// the host cannot do: `clearcpuid=` with the names of the hidden features
// the host forced back (Linux 5.19 and later take names; `noxsave` is gone
// from 6.1, whose kernel reports it as an unknown parameter and hands it to
// init). With tuning (emulating hosts), RCU stall warnings and the lockup
// watchdogs are also turned off, since every kernel instruction there is
// about 1000 times slower and the warnings (and the backtraces they print
// through the slow console) would only slow the guest further.
func (a adaptations) cmdlineParams(forced []cpuid.Feature) []string {
	var out, clear []string
	for _, f := range forced {
		clear = append(clear, f.Name)
	}
	if len(clear) > 0 {
		out = append(out, "clearcpuid="+strings.Join(clear, ","))
	}
	if a.tuning {
		// The soft-lockup watchdog fires for the same reason and prints
		// backtraces through the slow console (26 s "stuck" in a Debian
		// kernel's ftrace record check here).
		//
		// The rest skip boot-time work that costs minutes of emulated
		// kernel code on a distribution kernel (measured on Debian's
		// 6.1 cloud kernel with run --profile) and that a test guest
		// does not need:
		//   - ftrace_check_for_weak_functions: a kallsyms lookup per
		//     ftrace call site, which init waits for; over 30 minutes.
		//     It only guards ftrace on weak functions.
		//   - trace_eval_init: queues the rewrite of every trace event's
		//     format with the names of the enums it prints
		//     (trace_event_update_all, events x maps string work), which
		//     competes with init and which late_initcall_sync then waits
		//     for; about 2 minutes. Trace event formats keep the enums'
		//     numbers; tracefs is still set up.
		//   - cryptomgr.notests=1: the crypto self-tests. RSA's private
		//     key tests alone outlast the 60 s a caller waits for an
		//     algorithm, so loading the kernel's X.509 certificates failed
		//     with -110 after a minute, and the tests went on computing
		//     for many more.
		// Kernels without kallsyms or without these initcalls ignore
		// the names.
		out = append(out, "rcupdate.rcu_cpu_stall_suppress=1", "nowatchdog",
			"initcall_blacklist=ftrace_check_for_weak_functions,trace_eval_init",
			"cryptomgr.notests=1")
	}
	return out
}
