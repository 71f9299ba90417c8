package kvm_test

import (
	"errors"
	"fmt"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/gvmm/gvmm/kvm"
	"github.com/gvmm/gvmm/kvm/kvmtest"
)

// onNewStacks runs f on fresh goroutines, each starting with a small stack
// and calling f at a different depth, so that the ioctl wrappers grow (and
// move) the stack at different points of their calls. A wrapper that
// handed the kernel an address as a uintptr before a call would have the
// kernel write into the old stack; the round trips below would then read
// back zeros or garbage.
func onNewStacks(t *testing.T, f func(t *testing.T)) {
	for _, depth := range []int{0, 3, 40, 400} {
		t.Run(fmt.Sprintf("depth-%d", depth), func(t *testing.T) {
			done := make(chan struct{})
			go func() {
				defer close(done)
				atDepth(depth, func() { f(t) })
			}()
			<-done
		})
	}
}

// atDepth calls f under n frames of 64 bytes of locals each.
//
//go:noinline
func atDepth(n int, f func()) {
	var pad [64]byte
	if n > 0 {
		atDepth(n-1, f)
	} else {
		f()
	}
	_ = pad[n%64]
}

// TestKVMVCPUIoctls sets and reads back each piece of vCPU state through
// its wrapper.
func TestKVMVCPUIoctls(t *testing.T) {
	g := kvmtest.New(t, []byte{0xF4}, kvmtest.Options{IRQChip: true})
	v := g.VCPU
	onNewStacks(t, func(t *testing.T) {
		regs := kvm.Regs{RAX: 0x1111, RBX: 0x2222, R15: 0xF15F15, RIP: kvmtest.CodeAddr, RSP: kvmtest.StackTop, RFLAGS: 0x202}
		require.NoError(t, v.SetRegs(regs))
		got, err := v.Regs()
		require.NoError(t, err)
		assert.Equal(t, regs, got)

		s, err := v.Sregs()
		require.NoError(t, err)
		s.CR2 = 0xDEAD_B000
		require.NoError(t, v.SetSregs(s))
		s2, err := v.Sregs()
		require.NoError(t, err)
		assert.Equal(t, uint64(0xDEAD_B000), s2.CR2)
		assert.Equal(t, s.CS, s2.CS)

		fpu := kvm.FPU{FCW: 0x27F, MXCSR: 0x1F80}
		fpu.XMM[3][0], fpu.XMM[3][15] = 0xA5, 0x5A
		require.NoError(t, v.SetFPU(fpu))
		f2, err := v.FPU()
		require.NoError(t, err)
		assert.Equal(t, fpu.FCW, f2.FCW)
		assert.Equal(t, fpu.XMM[3], f2.XMM[3])

		x, err := v.XSave()
		require.NoError(t, err)
		x.Region[160/4+4*5] = 0xCAFE_F00D // XMM5's low dword in the legacy region
		x.Region[512/4] |= 1 << 1         // XSTATE_BV: the SSE state is present (SDM vol. 1 section 13.4.2)
		require.NoError(t, v.SetXSave(x))
		x2, err := v.XSave()
		require.NoError(t, err)
		assert.Equal(t, uint32(0xCAFE_F00D), x2.Region[160/4+4*5])

		const sysenterESP, kernelGSBase = 0x175, 0xC000_0102
		require.NoError(t, v.SetMSRs([]kvm.MSREntry{{Index: sysenterESP, Data: 0x8000}, {Index: kernelGSBase, Data: 0xFFFF_8880_0000_0000}}))
		msrs := []kvm.MSREntry{{Index: sysenterESP}, {Index: kernelGSBase}}
		require.NoError(t, v.MSRs(msrs))
		assert.Equal(t, uint64(0x8000), msrs[0].Data)
		assert.Equal(t, uint64(0xFFFF_8880_0000_0000), msrs[1].Data)

		cpuid, err := g.Sys.SupportedCPUID()
		require.NoError(t, err)
		require.NotEmpty(t, cpuid)
		require.NoError(t, v.SetCPUID2(cpuid))
		back, err := v.CPUID2()
		require.NoError(t, err)
		// KVM adjusts a few runtime bits (OSXSAVE, the APIC flag), not
		// which leaves there are.
		require.Len(t, back, len(cpuid))
		for i := range cpuid {
			assert.Equal(t, [2]uint32{cpuid[i].Function, cpuid[i].Index}, [2]uint32{back[i].Function, back[i].Index})
		}

		ev, err := v.VCPUEvents()
		require.NoError(t, err)
		ev.Exception.Injected, ev.Exception.Nr = 1, 13
		ev.Exception.HasErrorCode, ev.Exception.ErrorCode = 1, 0x18
		require.NoError(t, v.SetVCPUEvents(ev))
		ev2, err := v.VCPUEvents()
		require.NoError(t, err)
		assert.Equal(t, uint8(13), ev2.Exception.Nr)
		assert.Equal(t, uint32(0x18), ev2.Exception.ErrorCode)
		ev2.Exception.Injected, ev2.Exception.HasErrorCode, ev2.Exception.ErrorCode, ev2.Exception.Nr = 0, 0, 0, 0
		require.NoError(t, v.SetVCPUEvents(ev2))

		tr, err := v.Translate(kvmtest.CodeAddr + 0x123)
		require.NoError(t, err)
		assert.Equal(t, uint8(1), tr.Valid)
		assert.Equal(t, uint64(kvmtest.CodeAddr+0x123), tr.PhysicalAddress)

		require.NoError(t, v.SetMPState(kvm.MPStateHalted))
		st, err := v.MPState()
		require.NoError(t, err)
		assert.Equal(t, uint32(kvm.MPStateHalted), st)
		require.NoError(t, v.SetMPState(kvm.MPStateRunnable))

		lapic, err := v.LAPIC()
		require.NoError(t, err)
		const tpr = 0x80 // task priority register (SDM vol. 3A section 10.8.3.1)
		lapic.Regs[tpr] = 0x20
		require.NoError(t, v.SetLAPIC(lapic))
		l2, err := v.LAPIC()
		require.NoError(t, err)
		assert.Equal(t, uint8(0x20), l2.Regs[tpr])
		l2.Regs[tpr] = 0
		require.NoError(t, v.SetLAPIC(l2))

		dr, err := v.DebugRegs()
		require.NoError(t, err)
		dr.DB[2] = 0x40_1000
		require.NoError(t, v.SetDebugRegs(dr))
		dr2, err := v.DebugRegs()
		require.NoError(t, err)
		assert.Equal(t, uint64(0x40_1000), dr2.DB[2])

		require.NoError(t, v.SetGuestDebug(kvm.GuestDebug{Control: kvm.GuestDebugEnable | kvm.GuestDebugUseHWBP, DebugReg: [8]uint64{0x40_2000, 0, 0, 0, 0, 0, 0, 1}}))
		require.NoError(t, v.SetGuestDebug(kvm.GuestDebug{}))

		khz, err := v.TSCKHz()
		require.NoError(t, err)
		assert.Positive(t, khz)

		// The guest has not enabled kvmclock: KVM refuses, and the errno
		// comes through wrapped.
		assert.ErrorIs(t, v.KVMClockCtrl(), unix.EINVAL)
	})
}

// TestKVMVMIoctls exercises the VM-wide ioctls on a VM of its own (some
// must come before its first vCPU).
func TestKVMVMIoctls(t *testing.T) {
	kvmtest.SkipIfUnavailable(t)
	sys, err := kvm.Open()
	require.NoError(t, err)
	defer sys.Close()
	onNewStacks(t, func(t *testing.T) {
		n, err := sys.CheckExtension(kvm.CapUserMemory)
		require.NoError(t, err)
		assert.Positive(t, n)
		size, err := sys.VCPUMmapSize()
		require.NoError(t, err)
		assert.GreaterOrEqual(t, size, int(unsafe.Sizeof(kvm.RunData{})))
		assert.Positive(t, sys.MaxVCPUs())

		vm, err := sys.CreateVM()
		require.NoError(t, err)
		defer vm.Close()
		n, err = vm.CheckExtension(kvm.CapIRQChip)
		require.NoError(t, err)
		assert.Positive(t, n)
		require.NoError(t, vm.SetTSSAddr(0xFFFB_D000))
		require.NoError(t, vm.SetIdentityMapAddr(0xFFFB_C000))
		require.NoError(t, vm.CreateIRQChip())
		require.NoError(t, vm.CreatePIT2(kvm.PITSpeakerDummy))

		pit, err := vm.PIT2()
		require.NoError(t, err)
		pit.Channels[2].Count = 0x1234
		require.NoError(t, vm.SetPIT2(pit))
		pit2, err := vm.PIT2()
		require.NoError(t, err)
		assert.Equal(t, uint32(0x1234), pit2.Channels[2].Count)

		const ioapic = 2
		chip, err := vm.IRQChip(ioapic)
		require.NoError(t, err)
		require.NoError(t, vm.SetIRQChip(chip))
		chip2, err := vm.IRQChip(ioapic)
		require.NoError(t, err)
		assert.Equal(t, chip, chip2)

		require.NoError(t, vm.IRQLine(5, true))
		require.NoError(t, vm.IRQLine(5, false))

		efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
		require.NoError(t, err)
		defer unix.Close(efd)
		require.NoError(t, vm.IRQFD(efd, 10))
		efd2, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
		require.NoError(t, err)
		defer unix.Close(efd2)
		require.NoError(t, vm.IOEventFD(efd2, 0x510, 2, 0, kvm.IOEventFDPIO))
		require.NoError(t, vm.IOEventFD(efd2, 0x510, 2, 0, kvm.IOEventFDPIO|kvm.IOEventFDDeassign))

		if n, _ := vm.CheckExtension(kvm.CapExitOnEmulationFailure); n > 0 {
			require.NoError(t, vm.EnableCap(kvm.CapExitOnEmulationFailure, 1))
		}
		if n, _ := vm.CheckExtension(kvm.CapX86MSRFilter); n > 0 {
			// The bitmap is built on this goroutine's stack: SetMSRFilter
			// must copy it before the kernel reads its address.
			var bitmap [1]byte
			require.NoError(t, vm.SetMSRFilter([]kvm.MSRFilterRange{{Flags: kvm.MSRFilterWrite, Base: 0xC000_0082, Count: 1, Bitmap: bitmap[:]}}))
		}
		assert.Error(t, vm.SetMSRFilter([]kvm.MSRFilterRange{{Flags: kvm.MSRFilterWrite, Base: 0, Count: 9, Bitmap: []byte{0}}}), "9 MSRs need 2 bitmap bytes")

		clock, err := vm.Clock()
		require.NoError(t, err)
		assert.NotZero(t, clock.Clock, "kvmclock runs from the VM's creation")

		mem, err := unix.Mmap(-1, 0, 1<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		require.NoError(t, err)
		defer unix.Munmap(mem)
		require.NoError(t, vm.SetUserMemoryRegion(kvm.UserspaceMemoryRegion{Slot: 0, MemorySize: 1 << 20, UserspaceAddr: uint64(uintptr(unsafe.Pointer(&mem[0])))}))
		err = vm.SetUserMemoryRegion(kvm.UserspaceMemoryRegion{Slot: 1, MemorySize: 4096, UserspaceAddr: 1})
		assert.ErrorIs(t, err, unix.EINVAL, "an unaligned userspace address")

		cpu, err := vm.CreateVCPU(0)
		require.NoError(t, err)
		assert.Equal(t, 0, cpu.ID())
		require.NoError(t, cpu.Close())
		_, err = vm.CreateVCPU(-1)
		var errno unix.Errno
		assert.True(t, errors.As(err, &errno), "%v wraps the errno", err)
	})
}
