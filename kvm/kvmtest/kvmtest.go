// Package kvmtest builds tiny hand-assembled guests for tests and benchmarks
// that need a real vCPU: a few instructions in 64-bit mode, at CPL0 or CPL3,
// with identity-mapped memory and no firmware.
//
// CPL3 matters on nested hosts such as kvm_pvm, which emulate guest kernel
// code instruction by instruction but run guest user code natively: a loop of
// port writes at CPL3 (with IOPL 3) measures the exit path, not the emulator.
package kvmtest

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/gvmm/gvmm/kvm"
	"github.com/gvmm/gvmm/memory"
)

// Guest-physical layout of a test guest.
const (
	GDTAddr = 0x500
	IDTAddr = 0x580 // an empty IDT: any exception triple-faults
	TSSAddr = 0x4000
	// tssLimit covers the TSS, a full 8 KiB I/O bitmap and its 0xFF end byte.
	tssLimit = 0x68 + 8192
	PML4Addr = 0x1000
	PDPTAddr = 0x2000
	PDAddr   = 0x3000
	// CodeAddr is where the guest code is loaded and entered.
	CodeAddr = 0x10000
	// StackTop is the initial RSP.
	StackTop = 0x80000
	// DataAddr is a scratch page the guest code may use.
	DataAddr = 0x90000
	// MMIOAddr is a guest-physical address inside the identity map but not
	// backed by RAM: accesses to it exit as MMIO.
	MMIOAddr = 0x2000_0000
	// MemSize is the RAM size of a test guest.
	MemSize = memory.MinSize
)

// Selectors in the test GDT (Intel SDM vol. 3 section 3.4.2). They are
// Linux's (arch/x86/include/asm/segment.h), so that SYSCALL/SYSRET with
// Linux's MSR_STAR value work: kvm_pvm assumes that layout.
const (
	KernelCS = 0x10
	KernelDS = 0x18
	User32CS = 0x20 | 3
	UserDS   = 0x28 | 3
	UserCS   = 0x30 | 3
	TSSSel   = 0x40
)

// Options select how the test guest starts.
type Options struct {
	// User starts the code at CPL3 with IOPL 3, so it may do port I/O.
	User bool
	// IRQChip creates the in-kernel irqchip (needed for HLT to be handled in
	// the kernel and for interrupts).
	IRQChip bool
}

// Guest is a ready-to-run test VM with one vCPU.
type Guest struct {
	Sys  *kvm.System
	VM   *kvm.VM
	Mem  *memory.Guest
	VCPU *kvm.VCPU
}

// Close releases the vCPU, VM, memory and /dev/kvm in that order.
func (g *Guest) Close() {
	if g.VCPU != nil {
		g.VCPU.Close()
	}
	if g.VM != nil {
		g.VM.Close()
	}
	if g.Mem != nil {
		g.Mem.Close()
	}
	if g.Sys != nil {
		g.Sys.Close()
	}
}

// RanMarker starts the line SkipIfUnavailable logs when a KVM test goes
// on with a usable /dev/kvm. CI counts these lines in go test -v output:
// the number of KVM tests that really ran, not only the absence of skips.
const RanMarker = "KVM test running"

// SkipIfUnavailable skips the test, saying why ("KVM tests skipped: ..."),
// when /dev/kvm cannot be used, and otherwise logs RanMarker. CI checks
// both: a skip in the KVM phase fails the run, and so does too low a count.
func SkipIfUnavailable(tb testing.TB) {
	tb.Helper()
	if ok, why := kvm.Available(); !ok {
		tb.Skipf("KVM tests skipped: %s", why)
	}
	tb.Log(RanMarker)
}

// New builds a guest running code at CodeAddr. It skips the test when KVM
// is unavailable and fails it on any other error.
func New(tb testing.TB, code []byte, opts Options) *Guest {
	tb.Helper()
	SkipIfUnavailable(tb)
	g, err := Build(code, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(g.Close)
	return g
}

// Build is New without a testing.TB, for benchmarks run from other tools.
func Build(code []byte, opts Options) (_ *Guest, err error) {
	g := &Guest{}
	defer func() {
		if err != nil {
			g.Close()
		}
	}()
	if g.Sys, err = kvm.Open(); err != nil {
		return nil, err
	}
	if g.VM, err = g.Sys.CreateVM(); err != nil {
		return nil, err
	}
	if err = g.VM.SetTSSAddr(0xFFFB_D000); err != nil {
		return nil, err
	}
	if opts.IRQChip {
		if err = g.VM.CreateIRQChip(); err != nil {
			return nil, err
		}
	}
	if g.Mem, err = memory.New(MemSize); err != nil {
		return nil, err
	}
	for i, r := range g.Mem.Regions() {
		if err = g.VM.SetUserMemoryRegion(kvm.UserspaceMemoryRegion{
			Slot: uint32(i), GuestPhysAddr: r.GPA, MemorySize: r.Size(), UserspaceAddr: r.HostAddr(),
		}); err != nil {
			return nil, err
		}
	}
	if len(code) > DataAddr-CodeAddr {
		return nil, fmt.Errorf("test guest code is %d bytes, at most %d", len(code), DataAddr-CodeAddr)
	}
	if _, err = g.Mem.WriteAt(code, CodeAddr); err != nil {
		return nil, err
	}
	if err = writeTables(g.Mem); err != nil {
		return nil, err
	}
	if g.VCPU, err = g.VM.CreateVCPU(0); err != nil {
		return nil, err
	}
	cpuid, err := g.Sys.SupportedCPUID()
	if err != nil {
		return nil, err
	}
	if err = g.VCPU.SetCPUID2(cpuid); err != nil {
		return nil, err
	}
	if err = setState(g.VCPU, opts.User); err != nil {
		return nil, err
	}
	return g, nil
}

// writeTables writes the GDT, TSS and identity-mapped page tables: 1 GiB in
// 2 MiB pages, all user-accessible so CPL3 code can reach its data and MMIO.
func writeTables(m *memory.Guest) error {
	le := binary.LittleEndian
	var gdt [8 * 10]byte
	// Descriptor words (Intel SDM vol. 3 section 3.4.5): limit, base, type,
	// S, DPL, P, L, D/B, G.
	le.PutUint64(gdt[0x10:], 0x00AF9B000000FFFF) // 64-bit code, DPL0
	le.PutUint64(gdt[0x18:], 0x00CF93000000FFFF) // data, DPL0
	le.PutUint64(gdt[0x20:], 0x00CFFB000000FFFF) // 32-bit code, DPL3
	le.PutUint64(gdt[0x28:], 0x00CFF3000000FFFF) // data, DPL3
	le.PutUint64(gdt[0x30:], 0x00AFFB000000FFFF) // 64-bit code, DPL3
	// 64-bit TSS descriptor (16 bytes, SDM vol. 3 section 7.2.3), type 9.
	tss := uint64(TSSAddr)
	le.PutUint64(gdt[0x40:], tssLimit&0xFFFF|(tss&0xFFFFFF)<<16|0x89<<40|(tssLimit>>16)<<48|(tss>>24&0xFF)<<56)
	le.PutUint64(gdt[0x48:], tss>>32)
	if _, err := m.WriteAt(gdt[:], GDTAddr); err != nil {
		return err
	}
	// TSS: RSP0 (offset 4) so an interrupt taken at CPL3 has a kernel stack,
	// and an all-zero I/O permission bitmap right after the 0x68-byte TSS
	// (SDM vol. 1 section 19.5.2) followed by the required 0xFF byte. IOPL 3
	// alone should allow port I/O at CPL3, but nested hosts that run guest
	// user code natively (kvm_pvm) consult the bitmap.
	t := make([]byte, tssLimit+1)
	le.PutUint64(t[4:], StackTop-0x1000)
	le.PutUint16(t[102:], 0x68)
	t[tssLimit] = 0xFF
	if _, err := m.WriteAt(t[:], TSSAddr); err != nil {
		return err
	}
	const present, rw, user, ps = 1, 2, 4, 0x80
	var pml4, pdpt [8]byte
	le.PutUint64(pml4[:], PDPTAddr|present|rw|user)
	le.PutUint64(pdpt[:], PDAddr|present|rw|user)
	if _, err := m.WriteAt(pml4[:], PML4Addr); err != nil {
		return err
	}
	if _, err := m.WriteAt(pdpt[:], PDPTAddr); err != nil {
		return err
	}
	pd := make([]byte, 4096)
	for i := 0; i < 512; i++ {
		le.PutUint64(pd[8*i:], uint64(i)<<21|present|rw|user|ps)
	}
	_, err := m.WriteAt(pd, PDAddr)
	return err
}

func setState(v *kvm.VCPU, user bool) error {
	s, err := v.Sregs()
	if err != nil {
		return err
	}
	seg := func(sel uint16, typ, dpl, l, db uint8) kvm.Segment {
		return kvm.Segment{Limit: 0xFFFFFFFF, Selector: sel, Type: typ, Present: 1, DPL: dpl, S: 1, L: l, DB: db, G: 1}
	}
	if user {
		s.CS = seg(UserCS, 0xB, 3, 1, 0)
		s.SS = seg(UserDS, 0x3, 3, 0, 1)
	} else {
		s.CS = seg(KernelCS, 0xB, 0, 1, 0)
		s.SS = seg(KernelDS, 0x3, 0, 0, 1)
	}
	s.DS, s.ES, s.FS, s.GS = s.SS, s.SS, s.SS, s.SS
	s.TR = kvm.Segment{Base: TSSAddr, Limit: tssLimit, Selector: TSSSel, Type: 0xB, Present: 1}
	s.GDT = kvm.DTable{Base: GDTAddr, Limit: 0x4F}
	s.IDT = kvm.DTable{Base: IDTAddr, Limit: 0}
	// CR0: PE | MP | ET | NE | WP | PG; CR4: PAE | OSFXSR | OSXMMEXCPT;
	// EFER: LME | LMA (SDM vol. 3 section 9.8.5, initializing IA-32e mode).
	s.CR0 = 1 | 2 | 0x10 | 0x20 | 1<<16 | 1<<31
	s.CR4 = 1<<5 | 1<<9 | 1<<10
	s.CR3 = PML4Addr
	s.EFER = 1<<8 | 1<<10
	if err := v.SetSregs(s); err != nil {
		return err
	}
	rflags := uint64(2)
	if user {
		rflags |= 3 << 12 // IOPL 3: port I/O allowed at CPL3
	}
	return v.SetRegs(kvm.Regs{RIP: CodeAddr, RSP: StackTop, RFLAGS: rflags})
}
