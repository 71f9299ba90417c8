// Package cpuid fits the CPUID table KVM supports (KVM_GET_SUPPORTED_CPUID)
// to one vCPU of one VM: its APIC ID and the machine's topology, the KVM
// paravirtual signature so the guest uses kvm-clock, and the removal of
// features the host cannot run for the guest.
//
// Leaf and bit positions are from the Intel SDM vol. 2A, "CPUID", and the
// AMD APM vol. 3, appendix E; the KVM leaves from
// Documentation/virt/kvm/x86/cpuid.rst.
package cpuid

import (
	"github.com/gvmm/gvmm/kvm"
)

// Feature names one CPUID feature bit.
type Feature struct {
	Name     string
	Function uint32
	Index    uint32
	Reg      Reg
	Bit      uint
}

// Reg selects a CPUID output register.
type Reg int

// CPUID output registers.
const (
	EAX Reg = iota
	EBX
	ECX
	EDX
)

// Features gvmm may hide from a guest.
var (
	CX16     = Feature{"cx16", 1, 0, ECX, 13}
	PCID     = Feature{"pcid", 1, 0, ECX, 17}
	POPCNT   = Feature{"popcnt", 1, 0, ECX, 23}
	XSAVE    = Feature{"xsave", 1, 0, ECX, 26}
	OSXSAVE  = Feature{"osxsave", 1, 0, ECX, 27}
	AVX      = Feature{"avx", 1, 0, ECX, 28}
	FSGSBASE = Feature{"fsgsbase", 7, 0, EBX, 0}
	AVX2     = Feature{"avx2", 7, 0, EBX, 5}
	INVPCID  = Feature{"invpcid", 7, 0, EBX, 10}
	AVX512F  = Feature{"avx512f", 7, 0, EBX, 16}
	SMAP     = Feature{"smap", 7, 0, EBX, 20}
	PKU      = Feature{"pku", 7, 0, ECX, 3}
	RDPID    = Feature{"rdpid", 7, 0, ECX, 22}
	// SIMD extensions a kernel uses for crypto and checksums inside
	// kernel_fpu_begin sections. Names are Linux's (/proc/cpuinfo), so that
	// clearcpuid= takes them.
	PCLMULQDQ  = Feature{"pclmulqdq", 1, 0, ECX, 1}
	SSSE3      = Feature{"ssse3", 1, 0, ECX, 9}
	FMA        = Feature{"fma", 1, 0, ECX, 12}
	SSE41      = Feature{"sse4_1", 1, 0, ECX, 19}
	SSE42      = Feature{"sse4_2", 1, 0, ECX, 20}
	AES        = Feature{"aes", 1, 0, ECX, 25}
	F16C       = Feature{"f16c", 1, 0, ECX, 29}
	SHA        = Feature{"sha_ni", 7, 0, EBX, 29}
	GFNI       = Feature{"gfni", 7, 0, ECX, 8}
	VAES       = Feature{"vaes", 7, 0, ECX, 9}
	VPCLMULQDQ = Feature{"vpclmulqdq", 7, 0, ECX, 10}
	// Hypervisor is the "running under a hypervisor" bit (leaf 1 ECX 31),
	// always set.
	Hypervisor = Feature{"hypervisor", 1, 0, ECX, 31}
	// TSCDeadline is leaf 1 ECX 24; KVM emulates the TSC-deadline timer in
	// its local APIC, but KVM_GET_SUPPORTED_CPUID only reports it through
	// KVM_CAP_TSC_DEADLINE_TIMER.
	TSCDeadline = Feature{"tsc-deadline", 1, 0, ECX, 24}
	// HTT says leaf 1 EBX[23:16] holds a logical processor count.
	HTT = Feature{"htt", 1, 0, EDX, 28}
)

// XSAVEDependents are the features that cannot exist without XSAVE: hiding
// XSAVE hides them too, and leaf 0xD goes.
var XSAVEDependents = []Feature{OSXSAVE, AVX, AVX2, AVX512F}

// Options describe the vCPU a table is fitted for.
type Options struct {
	// APICID is the vCPU's local APIC ID (its index).
	APICID uint32
	// CPUs is the number of vCPUs in the VM: one package, one core each.
	CPUs int
	// Hide lists features to remove.
	Hide []Feature
	// TSCDeadline sets the TSC-deadline timer bit (the in-kernel LAPIC
	// emulates it).
	TSCDeadline bool
}

// Has reports whether a table has feature f set.
func Has(entries []kvm.CPUIDEntry, f Feature) bool {
	for i := range entries {
		e := &entries[i]
		if e.Function == f.Function && e.Index == f.Index {
			return *reg(e, f.Reg)&(1<<f.Bit) != 0
		}
	}
	return false
}

func reg(e *kvm.CPUIDEntry, r Reg) *uint32 {
	switch r {
	case EAX:
		return &e.EAX
	case EBX:
		return &e.EBX
	case ECX:
		return &e.ECX
	}
	return &e.EDX
}

func set(e *kvm.CPUIDEntry, f Feature, on bool) {
	p := reg(e, f.Reg)
	if on {
		*p |= 1 << f.Bit
	} else {
		*p &^= 1 << f.Bit
	}
}

// topologyShift is the number of APIC ID bits the core level uses: the
// smallest s with 1<<s >= cpus (SDM vol. 3A section 10.12.8.1).
func topologyShift(cpus int) uint32 {
	s := uint32(0)
	for 1<<s < cpus {
		s++
	}
	return s
}

// Fit returns a copy of supported adapted to one vCPU.
func Fit(supported []kvm.CPUIDEntry, o Options) []kvm.CPUIDEntry {
	hide := append([]Feature(nil), o.Hide...)
	hideXSAVE := false
	for _, f := range o.Hide {
		if f == XSAVE {
			hideXSAVE = true
		}
	}
	if hideXSAVE {
		hide = append(hide, XSAVEDependents...)
	}
	cpus := o.CPUs
	if cpus < 1 {
		cpus = 1
	}
	shift := topologyShift(cpus)
	out := make([]kvm.CPUIDEntry, 0, len(supported))
	for _, e := range supported {
		if hideXSAVE && e.Function == 0xD {
			continue
		}
		switch e.Function {
		case 1:
			// EBX: [31:24] initial APIC ID, [23:16] logical processors
			// per package, [15:8] CLFLUSH line size in 8-byte units.
			n := uint32(cpus)
			if n > 255 {
				n = 255
			}
			e.EBX = o.APICID<<24 | n<<16 | 8<<8 | e.EBX&0xFF
			set(&e, HTT, cpus > 1)
			set(&e, Hypervisor, true)
			if o.TSCDeadline {
				set(&e, TSCDeadline, true)
			}
		case 4:
			// Intel deterministic cache parameters: EAX[31:26] is the
			// number of core IDs per package minus one.
			if e.EAX&0x1F != 0 {
				e.EAX = e.EAX&0x03FFFFFF | (1<<shift-1)<<26
				// EAX[25:14]: logical processors sharing the cache, minus
				// one: one per core, except shared levels (L3).
				if (e.EAX>>5)&7 >= 3 {
					e.EAX = e.EAX&^(0xFFF<<14) | (uint32(cpus)-1)<<14
				} else {
					e.EAX &^= 0xFFF << 14
				}
			}
		case 0xB, 0x1F:
			// Extended topology: subleaf 0 is the SMT level (one thread
			// per core), subleaf 1 the core level; EDX is the x2APIC ID.
			e.EDX = o.APICID
			switch e.Index {
			case 0:
				e.EAX, e.EBX, e.ECX = 0, 1, 1<<8
			case 1:
				e.EAX, e.EBX, e.ECX = shift, uint32(cpus), 2<<8|1
			default:
				e.EAX, e.EBX, e.ECX = 0, 0, e.Index
			}
		case 0x80000008:
			// AMD: ECX[7:0] cores per package minus one, ECX[15:12] APIC
			// ID bits for the core ID.
			e.ECX = e.ECX&^0xF0FF | shift<<12 | uint32(cpus-1)&0xFF
		case 0x8000001E:
			// AMD extended APIC ID; EBX[7:0] core ID, [15:8] threads per
			// core minus one; ECX node ID 0, one node.
			e.EAX = o.APICID
			e.EBX = o.APICID & 0xFF
			e.ECX = 0
		case 0x40000000:
			// KVM signature "KVMKVMKVM\0\0\0": Linux then uses kvm-clock
			// and the other paravirtual features of leaf 0x40000001.
			if e.EAX < 0x40000001 {
				e.EAX = 0x40000001
			}
		}
		for _, f := range hide {
			if e.Function == f.Function && e.Index == f.Index {
				set(&e, f, false)
			}
		}
		out = append(out, e)
	}
	return out
}
