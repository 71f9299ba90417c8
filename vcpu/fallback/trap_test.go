package fallback

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gvmm/gvmm/kvm"
)

// Layout of the fake guest for the SYSCALL trap: an IDT whose #PF gate
// points at trapPF, the kernel's SYSCALL entry at trapLSTAR, and a kernel
// stack holding the #PF frame at trapFrame.
const (
	trapIDT   = 0x4000
	trapPF    = 0x5000
	trapLSTAR = 0x6000
	trapFrame = 0x7F00
	trapUser  = 0x40_1000 // a user RIP
	trapURSP  = 0x7FF0    // the user stack pointer in the frame
	trapSTAR  = uint64(0x23)<<48 | uint64(0x10)<<32
	trapMASK  = 0x47700 // Linux's SFMASK: TF, DF, IF, IOPL, AC, NT cleared
	trapR11   = 0x246   // the user RFLAGS SYSCALL saved
	dr6Idle   = kvm.DR6ActiveLow
)

// trapFake returns a fake 64-bit vCPU with an IDT holding a #PF gate, STAR
// and SFMASK set, and a SyscallTrap armed by the guest's write of LSTAR.
func trapFake(t *testing.T) (*fakeCPU, *fakeMem, *SyscallTrap) {
	c, m := newFake(mode64, nil)
	c.sregs.IDT = kvm.DTable{Base: trapIDT, Limit: 16*(vectorPF+1) - 1}
	g := m.b[trapIDT+16*vectorPF:]
	binary.LittleEndian.PutUint16(g[0:], trapPF&0xFFFF)
	binary.LittleEndian.PutUint16(g[2:], 0x10)
	g[5] = 0x8E
	binary.LittleEndian.PutUint16(g[6:], trapPF>>16)
	require.NoError(t, c.SetMSRs([]kvm.MSREntry{{Index: msrSTAR, Data: trapSTAR}, {Index: msrSFMASK, Data: trapMASK}}))
	trap := &SyscallTrap{}
	ok, err := trap.WriteMSR(c, m, msrLSTAR, trapLSTAR)
	require.NoError(t, err)
	require.True(t, ok)
	return c, m, trap
}

// armed checks that the trap's two instruction breakpoints are set.
func armed(t *testing.T, c *fakeCPU) {
	t.Helper()
	d := c.guestDebug
	assert.Equal(t, uint32(kvm.GuestDebugEnable|kvm.GuestDebugUseHWBP), d.Control)
	assert.Equal(t, uint64(trapPF), d.DebugReg[0])
	assert.Equal(t, uint64(trapLSTAR), d.DebugReg[1])
	assert.Equal(t, uint64(1<<0|1<<2), d.DebugReg[7], "DR7 L0 and L1")
}

// stepping checks that the trap single-steps with its breakpoints off.
func stepping(t *testing.T, c *fakeCPU) {
	t.Helper()
	assert.Equal(t, uint32(kvm.GuestDebugEnable|kvm.GuestDebugSingleStep), c.guestDebug.Control)
}

// pfFrame writes the frame a #PF pushes (error code, RIP, CS, RFLAGS, RSP,
// SS) at trapFrame and points RSP at it, as at the handler's first
// instruction.
func pfFrame(c *fakeCPU, m *fakeMem, rip, cs uint64) {
	le := binary.LittleEndian
	f := m.b[trapFrame:]
	le.PutUint64(f[0:], pfUser|pfPresent)
	le.PutUint64(f[8:], rip)
	le.PutUint64(f[16:], cs)
	le.PutUint64(f[24:], 0x202)
	le.PutUint64(f[32:], trapURSP)
	le.PutUint64(f[40:], 0x2B)
	c.regs.RSP = trapFrame
	c.regs.RIP = trapPF
}

// TestSyscallTrap walks the trap through each kind of debug exit on a fake
// vCPU: the logic that completes SYSCALL on kvm_pvm, which no other host
// exercises.
func TestSyscallTrap(t *testing.T) {
	t.Run("armed by the LSTAR write", func(t *testing.T) {
		c, _, trap := trapFake(t)
		armed(t, c)
		assert.Equal(t, uint64(trapLSTAR), c.msrs[msrLSTAR], "the guest's WRMSR done on its behalf")
		assert.Equal(t, uint64(trapPF), trap.PageFaultHandler())
	})

	t.Run("#PF at LSTAR from user mode completes SYSCALL", func(t *testing.T) {
		c, m, trap := trapFake(t)
		pfFrame(c, m, trapLSTAR, 0x33)
		c.regs.R11, c.regs.RCX = trapR11, trapUser+2
		op, err := trap.Debug(c, m, kvm.DebugExit{Exception: vecDB, PC: trapPF, DR6: dr6Idle | kvm.DR6B0})
		require.NoError(t, err)
		assert.Equal(t, OpSyscall, op)
		assert.Equal(t, uint64(trapLSTAR), c.regs.RIP)
		assert.Equal(t, uint64(trapURSP), c.regs.RSP, "the frame is dropped: the user RSP, as SYSCALL leaves it")
		assert.Equal(t, uint64(trapR11&^trapMASK|2), c.regs.RFLAGS)
		assert.Equal(t, uint64(trapUser+2), c.regs.RCX)
		assert.Equal(t, uint16(0x10), c.sregs.CS.Selector)
		assert.Equal(t, uint8(1), c.sregs.CS.L)
		assert.Equal(t, uint16(0x18), c.sregs.SS.Selector)
		assert.Zero(t, c.sregs.CS.DPL)
		armed(t, c)
	})

	t.Run("a genuine #PF passes, then the step re-arms", func(t *testing.T) {
		c, m, trap := trapFake(t)
		pfFrame(c, m, trapUser, 0x33)
		before := c.regs
		op, err := trap.Debug(c, m, kvm.DebugExit{Exception: vecDB, PC: trapPF, DR6: dr6Idle | kvm.DR6B0})
		require.NoError(t, err)
		assert.Equal(t, OpSyscallStep, op)
		assert.Equal(t, before, c.regs, "the guest's handler runs untouched")
		stepping(t, c)
		op, err = trap.Debug(c, m, kvm.DebugExit{Exception: vecDB, PC: trapPF + 4, DR6: dr6Idle | kvm.DR6BS})
		require.NoError(t, err)
		assert.Equal(t, OpSyscallStep, op)
		armed(t, c)
	})

	t.Run("LSTAR reached in user mode", func(t *testing.T) {
		c, m, trap := trapFake(t)
		c.sregs.CS.DPL, c.sregs.CS.Selector = 3, 0x33
		c.regs.RIP, c.regs.RSP, c.regs.R11 = trapLSTAR, trapURSP, trapR11
		op, err := trap.Debug(c, m, kvm.DebugExit{Exception: vecDB, PC: trapLSTAR, DR6: dr6Idle | kvm.DR6B1})
		require.NoError(t, err)
		assert.Equal(t, OpSyscall, op)
		assert.Zero(t, c.sregs.CS.DPL)
		assert.Equal(t, uint64(trapURSP), c.regs.RSP)
		stepping(t, c)
	})

	t.Run("LSTAR reached in kernel mode: the host did SYSCALL", func(t *testing.T) {
		c, m, trap := trapFake(t)
		c.regs.RIP = trapLSTAR
		before := c.regs
		op, err := trap.Debug(c, m, kvm.DebugExit{Exception: vecDB, PC: trapLSTAR, DR6: dr6Idle | kvm.DR6B1})
		require.NoError(t, err)
		assert.Equal(t, OpSyscallStep, op)
		assert.Equal(t, before, c.regs)
		stepping(t, c)
	})

	t.Run("a host that reports no DR6 bits", func(t *testing.T) {
		c, m, trap := trapFake(t)
		pfFrame(c, m, trapLSTAR, 0x33)
		op, err := trap.Debug(c, m, kvm.DebugExit{Exception: vecDB, PC: trapPF})
		require.NoError(t, err)
		assert.Equal(t, OpSyscall, op)
	})

	t.Run("a failing ioctl is an error", func(t *testing.T) {
		c, m, trap := trapFake(t)
		pfFrame(c, m, trapLSTAR, 0x33)
		c.fail = "SetSregs"
		_, err := trap.Debug(c, m, kvm.DebugExit{Exception: vecDB, PC: trapPF, DR6: dr6Idle | kvm.DR6B0})
		assert.ErrorIs(t, err, errFake)
	})
}

// TestGuestDebugReinjected checks that a #DB the guest raised itself while
// the trap's breakpoints are set goes back to the guest, with its DR6,
// instead of ending the VM.
func TestGuestDebugReinjected(t *testing.T) {
	for _, tc := range []struct {
		name string
		exit kvm.DebugExit
		// stepping: the trap was stepping over a breakpoint.
		stepping bool
		wantDR6  uint64
	}{
		{"the guest's single step", kvm.DebugExit{Exception: vecDB, PC: trapUser, DR6: dr6Idle | kvm.DR6BS}, false, dr6Idle | kvm.DR6BS},
		{"int1", kvm.DebugExit{Exception: vecDB, PC: trapUser + 1, DR6: dr6Idle}, false, dr6Idle},
		{"a single step onto the #PF handler", kvm.DebugExit{Exception: vecDB, PC: trapPF, DR6: dr6Idle | kvm.DR6BS}, false, dr6Idle | kvm.DR6BS},
		{"the VMM's breakpoint bits are not the guest's", kvm.DebugExit{Exception: vecDB, PC: trapUser, DR6: dr6Idle | kvm.DR6BS | kvm.DR6B1}, false, dr6Idle | kvm.DR6BS},
		{"int1 while the trap steps", kvm.DebugExit{Exception: vecDB, PC: trapUser, DR6: dr6Idle | kvm.DR6B2}, true, dr6Idle},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, m, trap := trapFake(t)
			c.dbg.DR7 = 0x400
			if tc.stepping {
				require.NoError(t, trap.step(c))
			}
			regs := c.regs
			op, err := trap.Debug(c, m, tc.exit)
			require.NoError(t, err)
			assert.Equal(t, OpGuestDebug, op)
			nr, _, hasCode, ok := injected(c)
			assert.True(t, ok, "an exception is injected")
			assert.Equal(t, uint8(vecDB), nr)
			assert.False(t, hasCode, "#DB has no error code")
			assert.Equal(t, tc.wantDR6, c.dbg.DR6)
			assert.Equal(t, uint64(0x400), c.dbg.DR7, "the guest's DR7 is kept")
			assert.Equal(t, regs, c.regs, "RIP is already past the trapping instruction")
		})
	}

	t.Run("an exception already pending", func(t *testing.T) {
		c, m, trap := trapFake(t)
		c.events.Exception.Pending, c.events.Exception.Nr = 1, vecGP
		_, err := trap.Debug(c, m, kvm.DebugExit{Exception: vecDB, PC: trapUser, DR6: dr6Idle | kvm.DR6BS})
		assert.ErrorContains(t, err, "already pending")
		assert.Equal(t, uint8(vecGP), c.events.Exception.Nr)
	})

	t.Run("#BP from a software breakpoint", func(t *testing.T) {
		c, _ := newFake(mode64, nil)
		require.NoError(t, InjectDebug(c, kvm.DebugExit{Exception: vecBP, PC: trapUser}))
		nr, _, _, ok := injected(c)
		assert.True(t, ok)
		assert.Equal(t, uint8(vecBP), nr)
		assert.Zero(t, c.calls["SetDebugRegs"], "DR6 is #DB's")
	})

	t.Run("another vector", func(t *testing.T) {
		c, _ := newFake(mode64, nil)
		assert.Error(t, InjectDebug(c, kvm.DebugExit{Exception: vecGP}))
		assert.Zero(t, c.calls["SetVCPUEvents"])
	})

	t.Run("before the guest set LSTAR", func(t *testing.T) {
		c, m := newFake(mode64, nil)
		var trap SyscallTrap
		op, err := trap.Debug(c, m, kvm.DebugExit{Exception: vecDB, PC: trapUser, DR6: dr6Idle | kvm.DR6BS})
		require.NoError(t, err)
		assert.Equal(t, OpGuestDebug, op)
	})
}
