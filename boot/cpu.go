package boot

// Control-register and EFER bits (Intel SDM Vol. 3A, 2.5 "Control
// Registers"; 2.2.1 "Extended Feature Enable Register").
const (
	cr0PE    = 1 << 0  // protection enable
	cr0ET    = 1 << 4  // extension type, hardwired to 1 on modern CPUs
	cr0PG    = 1 << 31 // paging
	cr4PAE   = 1 << 5  // physical address extension, required for long mode
	eferLME  = 1 << 8  // long mode enable
	eferLMA  = 1 << 10 // long mode active
	rflagsR1 = 1 << 1  // reserved bit 1, always set; IF (bit 9) stays clear
)

// Segment is a segment register as KVM's struct kvm_segment sees it: the
// hidden descriptor cache, not just the selector. Limit is in bytes (with
// G=1 the 20-bit descriptor limit is scaled up to 0xFFFFFFFF).
type Segment struct {
	Base     uint64
	Limit    uint32
	Selector uint16
	Type     uint8 // descriptor type field (bits 0-3 of the access byte)
	Present  uint8
	DPL      uint8
	DB       uint8 // default operation size (1 = 32-bit)
	S        uint8 // 1 = code or data, 0 = system
	L        uint8 // 64-bit code segment
	G        uint8 // granularity: limit in 4 KiB units
}

// DescriptorTable is a GDTR or IDTR (struct kvm_dtable).
type DescriptorTable struct {
	Base  uint64
	Limit uint16
}

// CPUState is the initial state of the boot vCPU. The caller copies it into
// KVM_SET_REGS (RIP, RSP, RSI, RBX, RFLAGS; all other general registers
// zero) and KVM_SET_SREGS (CR0, CR3, CR4, EFER, CS, DS, GDT, IDT, TR): DS
// also goes into ES, FS, GS and SS. LDT can stay as KVM resets it.
type CPUState struct {
	RIP, RSP, RSI, RBX, RFLAGS uint64
	CR0, CR3, CR4, EFER        uint64
	CS, DS, TR                 Segment
	GDT, IDT                   DescriptorTable
}

// segmentFromDescriptor decodes a GDT descriptor into the register form KVM
// wants, so the descriptor in guest memory and the cached one agree.
func segmentFromDescriptor(sel uint16, d uint64) Segment {
	s := Segment{
		Base:     (d>>16)&0xffffff | (d>>56&0xff)<<24,
		Limit:    uint32(d&0xffff | (d>>48&0xf)<<16),
		Selector: sel,
		Type:     uint8(d >> 40 & 0xf),
		S:        uint8(d >> 44 & 1),
		DPL:      uint8(d >> 45 & 3),
		Present:  uint8(d >> 47 & 1),
		L:        uint8(d >> 53 & 1),
		DB:       uint8(d >> 54 & 1),
		G:        uint8(d >> 55 & 1),
	}
	if s.G == 1 {
		s.Limit = s.Limit<<12 | 0xfff
	}
	return s
}

// taskRegister is a busy TSS at base 0 (type 11: busy 32-/64-bit TSS),
// which is what VMX requires of TR and what the PVH ABI asks for ("a
// 32-bit TSS (active) with a base of 0 and a limit of 0x67"). Nothing is
// ever switched through it; Linux loads its own TR.
func taskRegister() Segment {
	return Segment{Limit: 0x67, Type: 11, Present: 1}
}

// longModeCPU is the register state of the 64-bit entries (boot.rst,
// "64-bit Boot Protocol"): long mode with paging on the identity map,
// CS = __BOOT_CS, the data segments = __BOOT_DS, interrupts off, and RSI =
// the zero page.
func longModeCPU(entry uint64) CPUState {
	gdt := bootGDT(descCode64)
	return CPUState{
		RIP:    entry,
		RSP:    BootStackAddr,
		RSI:    ZeroPageAddr,
		RFLAGS: rflagsR1,
		CR0:    cr0PE | cr0ET | cr0PG,
		CR3:    PML4Addr,
		CR4:    cr4PAE,
		EFER:   eferLME | eferLMA,
		CS:     segmentFromDescriptor(bootCS, gdt[bootCS/8]),
		DS:     segmentFromDescriptor(bootDS, gdt[bootDS/8]),
		TR:     taskRegister(),
		GDT:    DescriptorTable{Base: GDTAddr, Limit: bootGDTSize - 1},
		IDT:    DescriptorTable{Base: IDTAddr, Limit: bootIDTSize - 1},
	}
}

// pvhCPU is the register state of the PVH entry (Xen docs/misc/pvh.pandoc):
// 32-bit flat protected mode, paging off, CR4 and EFER clear, CS a flat
// 32-bit code segment, DS/ES/SS flat data, interrupts off, EBX = the
// address of struct hvm_start_info.
func pvhCPU(entry uint64) CPUState {
	gdt := bootGDT(descCode32)
	return CPUState{
		RIP:    entry,
		RSP:    BootStackAddr,
		RBX:    StartInfoAddr,
		RFLAGS: rflagsR1,
		CR0:    cr0PE | cr0ET,
		CS:     segmentFromDescriptor(bootCS, gdt[bootCS/8]),
		DS:     segmentFromDescriptor(bootDS, gdt[bootDS/8]),
		TR:     taskRegister(),
		GDT:    DescriptorTable{Base: GDTAddr, Limit: bootGDTSize - 1},
		IDT:    DescriptorTable{Base: IDTAddr, Limit: bootIDTSize - 1},
	}
}
