package fallback

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/gvmm/gvmm/kvm"
	"github.com/gvmm/gvmm/kvm/kvmtest"
)

// Addresses of the supervisor-only part of the SYSCALL test guests: one
// 2 MiB page without the U/S bit, as a kernel's text is.
const (
	superPage   = 0x200000
	superEntry  = superPage         // the SYSCALL entry (LSTAR)
	superPF     = superPage + 0x100 // the #PF handler
	unmappedVA  = 0x600000          // a 2 MiB page left not present
	syscallBody = "\x0F\x20\xC0" +  // mov rax, cr0: faults unless at CPL0
		"\x48\xFF\xC3" // inc rbx
)

// asm assembles the test guests' few instruction forms.
type asm struct{ c []byte }

func (a *asm) b(bs ...byte) { a.c = append(a.c, bs...) }
func (a *asm) wrmsr(msr uint32, v uint64) {
	le := binary.LittleEndian
	a.b(0xB9)
	a.c = le.AppendUint32(a.c, msr) // mov ecx, msr
	a.b(0xB8)
	a.c = le.AppendUint32(a.c, uint32(v)) // mov eax, lo
	a.b(0xBA)
	a.c = le.AppendUint32(a.c, uint32(v>>32)) // mov edx, hi
	a.b(0x0F, 0x30)                           // wrmsr
}

// syscallGuest enables SYSCALL at CPL0 (writing LSTAR = entry with WRMSR,
// then clearing DR7 and DR0 as Linux's cpu_init does), drops to CPL3 with
// SYSRET and runs user: it returns the code and the offset of user in it.
func syscallGuest(entry uint64, user []byte) []byte {
	var a asm
	a.wrmsr(0xC0000080, 1<<0|1<<8|1<<10) // EFER: SCE | LME | LMA
	a.wrmsr(msrSTAR, uint64(kvmtest.User32CS&^3)<<48|uint64(kvmtest.KernelCS)<<32)
	a.wrmsr(msrSFMASK, 1<<9|1<<10) // clear IF and DF on entry
	a.wrmsr(msrLSTAR, entry)
	a.b(0x31, 0xC0, 0x0F, 0x23, 0xF8) // xor eax, eax; mov dr7, rax
	a.b(0x0F, 0x23, 0xC0)             // mov dr0, rax
	a.b(0x31, 0xDB)                   // xor ebx, ebx
	a.b(0x48, 0xB9)                   // mov rcx, user
	userAt := len(a.c)
	a.c = binary.LittleEndian.AppendUint64(a.c, 0)
	a.b(0x49, 0xBB) // mov r11, IOPL 3 | IF
	a.c = binary.LittleEndian.AppendUint64(a.c, 0x3202)
	a.b(0x48, 0x0F, 0x07) // sysretq
	binary.LittleEndian.PutUint64(a.c[userAt:], kvmtest.CodeAddr+uint64(len(a.c)))
	return append(a.c, user...)
}

// runTrap runs a guest with the SYSCALL trap until it writes to port 0xF4
// and returns the value and the number of SYSCALLs the trap completed.
func runTrap(t *testing.T, g *kvmtest.Guest) (byte, int) {
	if n, _ := g.VM.CheckExtension(kvm.CapX86MSRFilter); n <= 0 {
		t.Skip("KVM tests skipped: no KVM_CAP_X86_MSR_FILTER on this host")
	}
	require.NoError(t, g.VM.EnableCap(kvm.CapX86UserSpaceMSR, kvm.MSRExitReasonFilter))
	require.NoError(t, g.VM.SetMSRFilter([]kvm.MSRFilterRange{SyscallFilter()}))
	var trap SyscallTrap
	completed := 0
	run := g.VCPU.RunData()
	for i := 0; i < 1000; i++ {
		if err := g.VCPU.Run(); err != nil {
			require.ErrorIs(t, err, unix.EINTR)
			continue
		}
		switch run.ExitReason {
		case kvm.ExitX86WRMSR:
			idx, val, _ := run.MSR()
			ok, err := trap.WriteMSR(g.VCPU, g.Mem, idx, val)
			require.NoError(t, err)
			require.True(t, ok, "only LSTAR is filtered, got %#x", idx)
			run.SetMSRResult(false, 0)
		case kvm.ExitDebug:
			d := run.Debug()
			op, err := trap.Debug(g.VCPU, g.Mem, d)
			require.NoError(t, err)
			require.NotEqual(t, OpGuestDebug, op, "debug exit %+v is not the trap's", d)
			if op == OpSyscall {
				completed++
			}
		case kvm.ExitIO:
			_, _, port, _, off := run.IO()
			require.Equal(t, uint16(0xF4), port)
			return g.VCPU.RunPage()[off], completed
		default:
			r, _ := g.VCPU.Regs()
			t.Fatalf("unexpected exit %s at RIP %#x", kvm.ExitName(run.ExitReason), r.RIP)
		}
	}
	t.Fatal("the guest never reported")
	return 0, 0
}

// TestSyscallTrapUserEntry has the SYSCALL entry in a user-accessible page:
// kvm_pvm then runs it in user mode, and the breakpoint on LSTAR catches
// it. Two SYSCALLs, then the entry reports how many it saw at CPL0. Only
// on kvm_pvm does the trap complete SYSCALLs; elsewhere the CPU does, and
// the test checks that the armed trap (its breakpoints fire at LSTAR all
// the same) completes none and only steps on. TestSyscallTrap covers its
// logic on a fake CPU.
func TestSyscallTrapUserEntry(t *testing.T) {
	user := []byte{0x0F, 0x05, 0x0F, 0x05, 0xEB, 0xFE} // syscall; syscall; jmp .
	code := syscallGuest(0, user)
	entry := kvmtest.CodeAddr + uint64(len(code))
	code = syscallGuest(entry, user)
	code = append(code, syscallBody...)
	code = append(code,
		0x48, 0x83, 0xFB, 0x02, // cmp rbx, 2
		0x74, 0x03, // je report
		0x48, 0x0F, 0x07, // sysretq
		0x89, 0xD8, 0xE6, 0xF4, // report: mov eax, ebx; out 0xf4, al
	)
	g := kvmtest.New(t, code, kvmtest.Options{})
	v, completed := runTrap(t, g)
	assert.Equal(t, byte(2), v, "both SYSCALLs reach the entry at CPL0")
	assert.LessOrEqual(t, completed, 2)
	if !nestedPVM() {
		assert.Zero(t, completed, "this host completes SYSCALL itself")
	}
	t.Logf("SYSCALLs completed by the trap: %d (0 means the host did them)", completed)
}

// TestSyscallTrapSupervisorEntry has the SYSCALL entry in a supervisor-only
// page, as a kernel has it: kvm_pvm then delivers a user-mode #PF at LSTAR,
// which the trap catches at the #PF handler. The user code makes two
// SYSCALLs, then touches an unmapped page: that genuine #PF must reach the
// handler, which reports how many SYSCALLs the entry saw. As above, the
// trap completes SYSCALLs only on kvm_pvm; elsewhere the test checks that
// the genuine #PF still reaches the guest past the breakpoint on its
// handler and that the trap completed nothing.
func TestSyscallTrapSupervisorEntry(t *testing.T) {
	user := []byte{
		0x0F, 0x05, 0x0F, 0x05, // syscall; syscall
		0x8A, 0x04, 0x25, 0x00, 0x00, 0x60, 0x00, // mov al, [unmappedVA]
		0xEB, 0xFE, // jmp .
	}
	g := kvmtest.New(t, syscallGuest(superEntry, user), kvmtest.Options{})
	le := binary.LittleEndian
	entry := append([]byte(syscallBody), 0x48, 0x0F, 0x07) // ...; sysretq
	_, err := g.Mem.WriteAt(entry, superEntry)
	require.NoError(t, err)
	_, err = g.Mem.WriteAt([]byte{0x89, 0xD8, 0xE6, 0xF4}, superPF) // mov eax, ebx; out 0xf4, al
	require.NoError(t, err)
	// Page directory: the supervisor page without U/S, the unmapped page
	// not present (Intel SDM vol. 3A section 4.5).
	var pde [8]byte
	le.PutUint64(pde[:], superPage|1|2|0x80)
	_, err = g.Mem.WriteAt(pde[:], kvmtest.PDAddr+8*(superPage>>21))
	require.NoError(t, err)
	_, err = g.Mem.WriteAt(make([]byte, 8), kvmtest.PDAddr+8*(unmappedVA>>21))
	require.NoError(t, err)
	// IDT with a #PF gate: a present 64-bit interrupt gate, DPL 0.
	var gate [16]byte
	le.PutUint16(gate[0:], uint16(superPF&0xFFFF))
	le.PutUint16(gate[2:], kvmtest.KernelCS)
	gate[5] = 0x8E
	le.PutUint16(gate[6:], uint16(superPF>>16&0xFFFF))
	_, err = g.Mem.WriteAt(gate[:], kvmtest.IDTAddr+16*vectorPF)
	require.NoError(t, err)
	s, err := g.VCPU.Sregs()
	require.NoError(t, err)
	s.IDT = kvm.DTable{Base: kvmtest.IDTAddr, Limit: 16*(vectorPF+1) - 1}
	require.NoError(t, g.VCPU.SetSregs(s))

	v, completed := runTrap(t, g)
	assert.Equal(t, byte(2), v, "both SYSCALLs reach the entry at CPL0, then the real #PF reaches its handler")
	assert.LessOrEqual(t, completed, 2)
	if !nestedPVM() {
		assert.Zero(t, completed, "this host completes SYSCALL itself")
	}
	t.Logf("SYSCALLs completed by the trap: %d (0 means the host did them)", completed)
}

// TestKVMGuestDebugReinjected arms the SYSCALL trap's breakpoint, which
// makes KVM send every #DB to userspace, and has the guest single-step
// itself (RFLAGS.TF set with popfq traps after the next instruction). The
// trap hands the #DB back (InjectDebug); the guest's #DB handler reports
// DR6 bits 8-15 (BS is bit 14) and clears TF in the frame before iretq;
// then the main code reports 0x42.
//
// int1, the other #DB a guest raises itself, is left to the fake-CPU test
// (TestGuestDebugReinjected): in the emulated SVM host of make test (QEMU
// TCG) a guest's int1 triple-faults even with no breakpoint set and a
// valid #DB gate, a defect of that host, not of gvmm.
func TestKVMGuestDebugReinjected(t *testing.T) {
	const handler = 0x200
	main := []byte{
		0x9C,                                           // pushfq
		0x48, 0x81, 0x0C, 0x24, 0x00, 0x01, 0x00, 0x00, // or qword [rsp], 0x100 (TF)
		0x9D,       // popfq
		0x90,       // nop: the single-step trap follows it
		0xB0, 0x42, // mov al, 0x42
		0xE6, 0xF4, // out 0xf4, al
		0xF4, // hlt
	}
	img := make([]byte, handler)
	copy(img, main)
	img = append(img,
		0x0F, 0x21, 0xF0, // mov rax, dr6
		0x48, 0xC1, 0xE8, 0x08, // shr rax, 8
		0xE6, 0xF4, // out 0xf4, al
		0x48, 0x81, 0x64, 0x24, 0x10, 0xFF, 0xFE, 0xFF, 0xFF, // and qword [rsp+16], ~0x100
		0x48, 0xCF, // iretq
	)
	g := kvmtest.New(t, img, kvmtest.Options{})
	setIDT(t, g, vecDB, handler)
	var trap SyscallTrap
	ok, err := trap.WriteMSR(g.VCPU, g.Mem, msrLSTAR, superEntry)
	require.NoError(t, err)
	require.True(t, ok)

	run := g.VCPU.RunData()
	var out []byte
	var ops []Op
	for i := 0; i < 100; i++ {
		if err := g.VCPU.Run(); err != nil {
			require.ErrorIs(t, err, unix.EINTR)
			continue
		}
		switch run.ExitReason {
		case kvm.ExitDebug:
			op, err := trap.Debug(g.VCPU, g.Mem, run.Debug())
			require.NoError(t, err)
			ops = append(ops, op)
			continue
		case kvm.ExitIO:
			_, _, port, _, off := run.IO()
			require.Equal(t, uint16(0xF4), port)
			out = append(out, g.VCPU.RunPage()[off])
			continue
		case kvm.ExitHLT:
		default:
			t.Fatalf("exit %s\n%s", kvm.ExitName(run.ExitReason), Describe(g.VCPU, g.Mem, nil))
		}
		break
	}
	// DR6 bits 8-11 read as 1, BS (bit 14) marks the single step.
	assert.Equal(t, []byte{0x4F, 0x42}, out, "the guest's handler ran, with its DR6, and the guest went on")
	assert.Equal(t, []Op{OpGuestDebug}, ops)
}
