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

// syscallLoopGuest enables SYSCALL at CPL0 (writing LSTAR with WRMSR), drops
// to CPL3 with SYSRET and makes two SYSCALLs there. The handler reads CR0
// (which faults unless it runs at CPL0), counts in RBX, returns with SYSRET
// after the first and reports the count on port 0xF4 after the second.
func syscallLoopGuest() []byte {
	le := binary.LittleEndian
	var c []byte
	wrmsr := func(msr uint32, v uint64) {
		c = append(c, 0xB9)
		c = le.AppendUint32(c, msr) // mov ecx, msr
		c = append(c, 0xB8)
		c = le.AppendUint32(c, uint32(v)) // mov eax, lo
		c = append(c, 0xBA)
		c = le.AppendUint32(c, uint32(v>>32)) // mov edx, hi
		c = append(c, 0x0F, 0x30)             // wrmsr
	}
	wrmsr(0xC0000080, 1<<0|1<<8|1<<10) // EFER: SCE | LME | LMA
	wrmsr(msrSTAR, uint64(kvmtest.User32CS&^3)<<48|uint64(kvmtest.KernelCS)<<32)
	wrmsr(msrSFMASK, 1<<9|1<<10) // clear IF and DF on entry
	lstarAt := len(c)
	wrmsr(msrLSTAR, 0)
	c = append(c, 0x31, 0xDB) // xor ebx, ebx
	c = append(c, 0x48, 0xB9)
	userAt := len(c)
	c = le.AppendUint64(c, 0) // mov rcx, user
	c = append(c, 0x49, 0xBB)
	c = le.AppendUint64(c, 0x3202)  // mov r11, IOPL 3 | IF
	c = append(c, 0x48, 0x0F, 0x07) // sysretq
	user := kvmtest.CodeAddr + uint64(len(c))
	c = append(c, 0x0F, 0x05, 0x0F, 0x05, 0xEB, 0xFE) // syscall; syscall; jmp .
	handler := kvmtest.CodeAddr + uint64(len(c))
	c = append(c,
		0x0F, 0x20, 0xC0, // mov rax, cr0
		0x48, 0xFF, 0xC3, // inc rbx
		0x48, 0x83, 0xFB, 0x02, // cmp rbx, 2
		0x74, 0x03, // je report
		0x48, 0x0F, 0x07, // sysretq
		0x89, 0xD8, 0xE6, 0xF4, // report: mov eax, ebx; out 0xf4, al
	)
	le.PutUint64(c[userAt:], user)
	le.PutUint32(c[lstarAt+6:], uint32(handler))
	return c
}

// TestSyscallTrap runs the guest with the trap installed and checks that
// both SYSCALLs reached the handler at CPL0. On hosts whose KVM completes
// SYSCALL itself the breakpoint is hit in kernel mode and stepped over.
func TestSyscallTrap(t *testing.T) {
	g := kvmtest.New(t, syscallLoopGuest(), kvmtest.Options{})
	if n, _ := g.VM.CheckExtension(kvm.CapX86MSRFilter); n <= 0 {
		t.Skip("KVM tests skipped: no KVM_CAP_X86_MSR_FILTER on this host")
	}
	require.NoError(t, g.VM.EnableCap(kvm.CapX86UserSpaceMSR, kvm.MSRExitReasonFilter))
	require.NoError(t, g.VM.SetMSRFilter([]kvm.MSRFilterRange{SyscallFilter()}))

	var trap SyscallTrap
	var msrExits, trapped int
	run := g.VCPU.RunData()
	for i := 0; i < 100; i++ {
		if err := g.VCPU.Run(); err != nil {
			require.ErrorIs(t, err, unix.EINTR)
			continue
		}
		switch run.ExitReason {
		case kvm.ExitX86WRMSR:
			idx, val, _ := run.MSR()
			ok, err := trap.WriteMSR(g.VCPU, idx, val)
			require.NoError(t, err)
			require.True(t, ok, "only LSTAR is filtered, got %#x", idx)
			run.SetMSRResult(false, 0)
			msrExits++
		case kvm.ExitDebug:
			_, pc, _, _ := run.Debug()
			ok, err := trap.Debug(g.VCPU, pc)
			require.NoError(t, err)
			require.True(t, ok, "breakpoint at %#x is not the trap's", pc)
			trapped++
		case kvm.ExitIO:
			_, _, port, _, off := run.IO()
			require.Equal(t, uint16(0xF4), port)
			assert.Equal(t, byte(2), g.VCPU.RunPage()[off], "both SYSCALLs reach the handler at CPL0")
			assert.Equal(t, 1, msrExits, "the LSTAR write exits once")
			// Each completed SYSCALL costs the breakpoint exit and the
			// single step after it.
			assert.LessOrEqual(t, trapped, 4)
			t.Logf("LSTAR writes trapped: %d, trap exits: %d", msrExits, trapped)
			return
		default:
			r, _ := g.VCPU.Regs()
			t.Fatalf("unexpected exit %s at RIP %#x", kvm.ExitName(run.ExitReason), r.RIP)
		}
	}
	t.Fatal("the guest never reported")
}
