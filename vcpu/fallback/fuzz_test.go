package fallback

import (
	"maps"
	"testing"

	"github.com/stretchr/testify/require"
)

// clone copies a fake vCPU with fresh call counts.
func (c *fakeCPU) clone() *fakeCPU {
	d := *c
	d.pages, d.ro, d.calls = maps.Clone(c.pages), maps.Clone(c.ro), map[string]int{}
	return &d
}

// fuzzAddr maps register values with the top bit set into the mapped low
// memory, so that memory operands often hit RAM; other values stay as they
// are and mostly fault.
func fuzzAddr(v uint64) uint64 {
	if v>>63 != 0 {
		return v & (fakeIdentity - 1)
	}
	return v
}

// FuzzEmulate feeds arbitrary instruction bytes and register values to
// Emulate, Describe and SkipClockPairing with a fake vCPU and RAM. Nothing
// may panic; Emulate either fails leaving the vCPU as it was, injects a
// fault leaving RIP as it was, or advances RIP by exactly the decoded
// length (wrapped to the code size).
func FuzzEmulate(f *testing.F) {
	f.Add([]byte{0xF3, 0x48, 0x0F, 0xB8, 0x00}, uint8(0), false, uint64(1<<63|fakeData), uint64(0), uint64(0), uint64(0), uint64(0), uint64(0), uint64(0), uint64(0), uint64(2), uint64(0))
	f.Fuzz(func(t *testing.T, insn []byte, mode uint8, fetch bool,
		rax, rbx, rcx, rdx, rsi, rdi, rbp, rip, rflags, ctl uint64) {
		modes := [4]int{mode64, mode32, mode16, modeReal}
		cpu, mem := newFake(modes[mode&3], nil)
		cpl := mode >> 2 & 3
		cpu.sregs.SS.DPL, cpu.sregs.CS.DPL = cpl, cpl
		r := &cpu.regs
		r.RAX, r.RBX, r.RCX, r.RDX = fuzzAddr(rax), fuzzAddr(rbx), fuzzAddr(rcx), fuzzAddr(rdx)
		r.RSI, r.RDI, r.RBP, r.RSP = fuzzAddr(rsi), fuzzAddr(rdi), fuzzAddr(rbp), fuzzAddr(rbp^rsi)
		r.R8, r.R9, r.R10, r.R11 = rax^rbx, rbx^rcx, rcx^rdx, rdx^rsi
		r.R12, r.R13, r.R14, r.R15 = fuzzAddr(rsi^rdi), rdi^rbp, rbp^rax, fuzzAddr(ctl)
		r.RFLAGS = rflags
		if rip>>63 != 0 {
			rip = fakeRIP + rip%0x3000
		}
		r.RIP = rip
		sr := &cpu.sregs
		sr.CR0 ^= ctl & (cr0MP | cr0EM | cr0TS)
		sr.CR4 ^= ctl & (cr4OSFXSR | cr4LA57)
		if ctl&(1<<20) != 0 {
			sr.FS.Base, sr.GS.Base = fuzzAddr(ctl), fuzzAddr(^ctl)
		}
		if ctl&(1<<21) != 0 {
			sr.CS.Base, sr.DS.Base, sr.SS.Base = ctl>>32&0xFFFF, ctl>>40&0xFFFF0, rflags>>32
		}
		cpu.pages[0x7000_0000] = 0x4000_0000 // a page outside RAM
		cpu.ro[fakeData+0x1000] = ctl&(1<<22) != 0
		cpu.xsave = xsaveImage()
		cpu.xsave.Region[fxMask/4] = uint32(ctl >> 32)
		if len(insn) > 2*maxInsnLen {
			insn = insn[:2*maxInsnLen]
		}
		// Place the bytes at CS:RIP when that is RAM.
		s := &state{cpu: cpu, mem: mem, regs: cpu.regs, sregs: cpu.sregs, mode: codeSize(&cpu.sregs)}
		if tr, err := cpu.Translate(s.ripLinear()); err == nil && tr.Valid != 0 && tr.PhysicalAddress < fakeRAM {
			copy(mem.b[tr.PhysicalAddress:], insn)
		}
		arg := insn
		if fetch {
			arg = nil
		}

		_ = Describe(cpu.clone(), mem, arg)
		sk := cpu.clone()
		if skipped, err := SkipClockPairing(sk, mem); err == nil && skipped {
			require.Equal(t, (rip+3)&sizeMask(s.mode), sk.regs.RIP)
		} else {
			require.Equal(t, cpu.regs, sk.regs)
		}

		// What Emulate will decode.
		pre, preErr := newState(cpu.clone(), mem, arg)
		before := cpu.regs
		beforeX := cpu.xsave
		op, err := Emulate(cpu, mem, arg)
		exc := cpu.events.Exception.Injected != 0
		if err != nil {
			require.Equal(t, before, cpu.regs, "failed emulation changed registers: %v", err)
			require.Equal(t, beforeX, cpu.xsave)
			require.False(t, exc)
			return
		}
		require.NoError(t, preErr)
		require.NotEqual(t, OpNone, op)
		n := uint64(pre.in.inst.Len)
		require.True(t, n >= 1 && n <= maxInsnLen, "length %d", n)
		next := (before.RIP + n) & sizeMask(s.mode)
		switch {
		case exc && op == OpInt3:
			require.Equal(t, next, cpu.regs.RIP)
		case exc:
			require.Equal(t, before, cpu.regs, "a fault changed registers")
			require.Equal(t, beforeX, cpu.xsave)
		default:
			require.Equal(t, next, cpu.regs.RIP, "%s", pre.in)
		}
	})
}
