package fallback

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/gvmm/gvmm/kvm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOpString(t *testing.T) {
	for op, want := range map[Op]string{
		OpInt3: "int3", OpPopcnt: "popcnt", OpClac: "clac", OpStac: "stac",
		OpFwait: "fwait", OpFxsave: "fxsave", OpFxrstor: "fxrstor",
		OpCmpxchg16b: "cmpxchg16b", OpClockPairing: "clock-pairing", OpSyscall: "syscall", OpSyscallStep: "syscall-trap-step",
		OpLdmxcsr: "ldmxcsr", OpStmxcsr: "stmxcsr", OpGuestDebug: "guest-debug", NumOps: "Op(15)",
	} {
		assert.Equal(t, want, op.String())
	}
	for op := range NumOps {
		assert.NotEmpty(t, opNames[op], "Op %d has no name", op)
	}
}

// injected returns the exception the fake vCPU has injected, if any.
func injected(c *fakeCPU) (nr uint8, code uint32, hasCode, ok bool) {
	e := c.events.Exception
	return e.Nr, e.ErrorCode, e.HasErrorCode != 0, e.Injected != 0
}

// TestDecodeForms checks that each instruction form is recognized, and that
// RIP advances by its length, with bytes given and with bytes fetched.
func TestDecodeForms(t *testing.T) {
	cases := []struct {
		name  string
		mode  int
		bytes []byte
		op    Op
	}{
		{"int3", mode64, []byte{0xCC}, OpInt3},
		{"int3/32", mode32, []byte{0xCC}, OpInt3},
		{"int3/16", mode16, []byte{0xCC}, OpInt3},
		{"popcnt r64,r64", mode64, []byte{0xF3, 0x48, 0x0F, 0xB8, 0xC3}, OpPopcnt},
		{"popcnt r32,r32", mode64, []byte{0xF3, 0x0F, 0xB8, 0xC3}, OpPopcnt},
		{"popcnt r16,r16", mode64, []byte{0x66, 0xF3, 0x0F, 0xB8, 0xC3}, OpPopcnt},
		{"popcnt r8,r9 (REX)", mode64, []byte{0xF3, 0x4D, 0x0F, 0xB8, 0xC1}, OpPopcnt},
		{"popcnt r64,m64", mode64, []byte{0xF3, 0x48, 0x0F, 0xB8, 0x00}, OpPopcnt},
		{"popcnt SIB+disp8", mode64, []byte{0xF3, 0x48, 0x0F, 0xB8, 0x44, 0x8B, 0x10}, OpPopcnt},
		{"popcnt RIP-relative", mode64, []byte{0xF3, 0x0F, 0xB8, 0x05, 0x00, 0x01, 0x00, 0x00}, OpPopcnt},
		{"popcnt/32", mode32, []byte{0xF3, 0x0F, 0xB8, 0xC3}, OpPopcnt},
		{"popcnt/16", mode16, []byte{0xF3, 0x0F, 0xB8, 0xC3}, OpPopcnt},
		{"popcnt/real", modeReal, []byte{0x66, 0xF3, 0x0F, 0xB8, 0xC3}, OpPopcnt},
		{"clac", mode64, []byte{0x0F, 0x01, 0xCA}, OpClac},
		{"stac", mode64, []byte{0x0F, 0x01, 0xCB}, OpStac},
		{"clac/32", mode32, []byte{0x0F, 0x01, 0xCA}, OpClac},
		{"fwait", mode64, []byte{0x9B}, OpFwait},
		{"fxsave", mode64, []byte{0x0F, 0xAE, 0x00}, OpFxsave},
		{"fxsave64", mode64, []byte{0x48, 0x0F, 0xAE, 0x00}, OpFxsave},
		{"fxsave64 disp32", mode64, []byte{0x48, 0x0F, 0xAE, 0x80, 0x00, 0x10, 0x00, 0x00}, OpFxsave},
		{"fxrstor", mode64, []byte{0x0F, 0xAE, 0x08}, OpFxrstor},
		{"fxrstor64", mode64, []byte{0x48, 0x0F, 0xAE, 0x08}, OpFxrstor},
		{"fxsave/32", mode32, []byte{0x0F, 0xAE, 0x00}, OpFxsave},
		{"lock cmpxchg16b", mode64, []byte{0xF0, 0x48, 0x0F, 0xC7, 0x08}, OpCmpxchg16b},
		{"cmpxchg16b", mode64, []byte{0x48, 0x0F, 0xC7, 0x08}, OpCmpxchg16b},
		{"vmcall clock pairing", mode64, []byte{0x0F, 0x01, 0xC1}, OpClockPairing},
		{"vmmcall clock pairing", mode64, []byte{0x0F, 0x01, 0xD9}, OpClockPairing},
	}
	for _, c := range cases {
		for _, fetch := range []bool{false, true} {
			name := c.name
			if fetch {
				name += "/fetch"
			}
			t.Run(name, func(t *testing.T) {
				cpu, mem := newFake(c.mode, c.bytes)
				cpu.regs.RAX = fakeData // memory operands point at the scratch page
				if c.op == OpClockPairing {
					cpu.regs.RAX = hcClockPairing
				}
				insn := c.bytes
				if fetch {
					insn = nil
				}
				op, err := Emulate(cpu, mem, insn)
				require.NoError(t, err)
				assert.Equal(t, c.op, op)
				want := uint64(fakeRIP + len(c.bytes))
				if c.op == OpClockPairing {
					want = fakeRIP + 3
				}
				assert.Equal(t, want, cpu.regs.RIP)
				if c.op != OpInt3 {
					_, _, _, exc := injected(cpu)
					assert.False(t, exc, "no exception injected")
				}
			})
		}
	}
}

// TestPopcnt checks results and flags for 16-, 32- and 64-bit operands and
// register and memory sources in all addressing forms.
func TestPopcnt(t *testing.T) {
	const allFlags = arithFlags | 2
	cases := []struct {
		name  string
		mode  int
		bytes []byte
		setup func(c *fakeCPU, m *fakeMem)
		reg   func(r *kvm.Regs) uint64 // the destination
		want  uint64
		zf    bool
	}{
		{
			name: "r64", mode: mode64, bytes: []byte{0xF3, 0x48, 0x0F, 0xB8, 0xC3}, // popcnt %rbx,%rax
			setup: func(c *fakeCPU, m *fakeMem) { c.regs.RBX = ^uint64(0) },
			reg:   func(r *kvm.Regs) uint64 { return r.RAX }, want: 64,
		},
		{
			name: "r32 zero-extends", mode: mode64, bytes: []byte{0xF3, 0x0F, 0xB8, 0xC3}, // popcnt %ebx,%eax
			setup: func(c *fakeCPU, m *fakeMem) { c.regs.RAX, c.regs.RBX = 0xDEAD_BEEF_0000_0000, 0xFFFF_FFFF_0000_000F },
			reg:   func(r *kvm.Regs) uint64 { return r.RAX }, want: 4,
		},
		{
			name: "r16 merges", mode: mode64, bytes: []byte{0x66, 0xF3, 0x0F, 0xB8, 0xC3}, // popcnt %bx,%ax
			setup: func(c *fakeCPU, m *fakeMem) { c.regs.RAX, c.regs.RBX = 0x1111_2222_3333_4444, 0xFFFF_FFFF_FFFF_0003 },
			reg:   func(r *kvm.Regs) uint64 { return r.RAX }, want: 0x1111_2222_3333_0002,
		},
		{
			name: "zero source sets ZF", mode: mode64, bytes: []byte{0xF3, 0x48, 0x0F, 0xB8, 0xC3},
			setup: func(c *fakeCPU, m *fakeMem) { c.regs.RAX, c.regs.RBX = 99, 0 },
			reg:   func(r *kvm.Regs) uint64 { return r.RAX }, want: 0, zf: true,
		},
		{
			name: "REX r8,r9", mode: mode64, bytes: []byte{0xF3, 0x4D, 0x0F, 0xB8, 0xC1}, // popcnt %r9,%r8
			setup: func(c *fakeCPU, m *fakeMem) { c.regs.R9 = 0x8000_0000_0000_0001 },
			reg:   func(r *kvm.Regs) uint64 { return r.R8 }, want: 2,
		},
		{
			name: "m64 (%rax)", mode: mode64, bytes: []byte{0xF3, 0x48, 0x0F, 0xB8, 0x00},
			setup: func(c *fakeCPU, m *fakeMem) {
				c.regs.RAX = fakeData
				binary.LittleEndian.PutUint64(m.b[fakeData:], 0x0101_0101_0101_0101)
			},
			reg: func(r *kvm.Regs) uint64 { return r.RAX }, want: 8,
		},
		{
			name: "m64 SIB 0x10(%rbx,%rcx,4)", mode: mode64, bytes: []byte{0xF3, 0x48, 0x0F, 0xB8, 0x44, 0x8B, 0x10},
			setup: func(c *fakeCPU, m *fakeMem) {
				c.regs.RBX, c.regs.RCX = fakeData, 0x20
				binary.LittleEndian.PutUint64(m.b[fakeData+0x90:], 0x7)
			},
			reg: func(r *kvm.Regs) uint64 { return r.RAX }, want: 3,
		},
		{
			name: "m32 RIP-relative", mode: mode64, bytes: []byte{0xF3, 0x0F, 0xB8, 0x05, 0xF8, 0x6F, 0x00, 0x00}, // disp 0x6ff8
			setup: func(c *fakeCPU, m *fakeMem) {
				binary.LittleEndian.PutUint32(m.b[fakeRIP+8+0x6FF8:], 0xFFFF) // next RIP + disp = 0x8000
			},
			reg: func(r *kvm.Regs) uint64 { return r.RAX }, want: 16,
		},
		{
			name: "m16 negative displacement", mode: mode64, bytes: []byte{0x66, 0xF3, 0x0F, 0xB8, 0x43, 0xFE}, // popcnt -2(%rbx),%ax
			setup: func(c *fakeCPU, m *fakeMem) {
				c.regs.RBX = fakeData + 2
				binary.LittleEndian.PutUint16(m.b[fakeData:], 0x8001)
			},
			reg: func(r *kvm.Regs) uint64 { return r.RAX }, want: 2,
		},
		{
			name: "FS override", mode: mode64, bytes: []byte{0x64, 0xF3, 0x48, 0x0F, 0xB8, 0x00}, // popcnt %fs:(%rax),%rax
			setup: func(c *fakeCPU, m *fakeMem) {
				c.sregs.FS.Base, c.regs.RAX = 0x5000, 0x3000
				binary.LittleEndian.PutUint64(m.b[fakeData:], 0xF)
			},
			reg: func(r *kvm.Regs) uint64 { return r.RAX }, want: 4,
		},
		{
			name: "DS base ignored in 64-bit mode", mode: mode64, bytes: []byte{0x3E, 0xF3, 0x48, 0x0F, 0xB8, 0x00},
			setup: func(c *fakeCPU, m *fakeMem) {
				c.sregs.DS.Base, c.regs.RAX = 0x5000, fakeData
				binary.LittleEndian.PutUint64(m.b[fakeData:], 0x3)
			},
			reg: func(r *kvm.Regs) uint64 { return r.RAX }, want: 2,
		},
		{
			name: "addr32 truncates", mode: mode64, bytes: []byte{0x67, 0xF3, 0x48, 0x0F, 0xB8, 0x00}, // popcnt (%eax),%rax
			setup: func(c *fakeCPU, m *fakeMem) {
				c.regs.RAX = 0xFFFF_FFFF_0000_0000 | fakeData
				binary.LittleEndian.PutUint64(m.b[fakeData:], 0x1F)
			},
			reg: func(r *kvm.Regs) uint64 { return r.RAX }, want: 5,
		},
		{
			name: "operand across a page boundary", mode: mode64, bytes: []byte{0xF3, 0x48, 0x0F, 0xB8, 0x00},
			setup: func(c *fakeCPU, m *fakeMem) {
				// Linear 0x100000-0x101FFF maps to 0x30000 and 0x20000.
				c.pages[0x10_0000], c.pages[0x10_1000] = 0x30000, 0x20000
				c.regs.RAX = 0x10_0FFC
				copy(m.b[0x30FFC:], []byte{0xFF, 0xFF, 0xFF, 0xFF})
				copy(m.b[0x20000:], []byte{0x01, 0x00, 0x00, 0x00})
			},
			reg: func(r *kvm.Regs) uint64 { return r.RAX }, want: 33,
		},
		{
			name: "32-bit mode, SS default for EBP", mode: mode32, bytes: []byte{0xF3, 0x0F, 0xB8, 0x45, 0x08}, // popcnt 8(%ebp),%eax
			setup: func(c *fakeCPU, m *fakeMem) {
				c.sregs.SS.Base, c.regs.RBP = 0x2000, fakeData-0x2000-8
				binary.LittleEndian.PutUint32(m.b[fakeData:], 0x3)
			},
			reg: func(r *kvm.Regs) uint64 { return r.RAX }, want: 2,
		},
		{
			name: "32-bit mode, DS base, linear wrap", mode: mode32, bytes: []byte{0xF3, 0x0F, 0xB8, 0x03}, // popcnt (%ebx),%eax
			setup: func(c *fakeCPU, m *fakeMem) {
				c.sregs.DS.Base, c.regs.RBX = 0xFFFF_F000, fakeData+0x1000
				binary.LittleEndian.PutUint32(m.b[fakeData:], 0xFF)
			},
			reg: func(r *kvm.Regs) uint64 { return r.RAX }, want: 8,
		},
		{
			name: "16-bit mode (%bx,%si)", mode: mode16, bytes: []byte{0xF3, 0x0F, 0xB8, 0x00}, // popcnt (%bx,%si),%ax
			setup: func(c *fakeCPU, m *fakeMem) {
				c.sregs.DS.Base, c.regs.RBX, c.regs.RSI = 0x7000, 0xF00, 0x100
				binary.LittleEndian.PutUint16(m.b[fakeData:], 0x5)
			},
			reg: func(r *kvm.Regs) uint64 { return r.RAX }, want: 2,
		},
		{
			name: "real mode, 16-bit address wrap", mode: modeReal, bytes: []byte{0xF3, 0x0F, 0xB8, 0x47, 0x10}, // popcnt 0x10(%bx),%ax
			setup: func(c *fakeCPU, m *fakeMem) {
				c.sregs.DS.Base, c.regs.RBX = 0x8000, 0xFFF0 // (0xfff0 + 0x10) & 0xffff = 0
				binary.LittleEndian.PutUint16(m.b[fakeData:], 0x7)
			},
			reg: func(r *kvm.Regs) uint64 { return r.RAX }, want: 3,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cpu, mem := newFake(c.mode, c.bytes)
			cpu.regs.RFLAGS = allFlags
			c.setup(cpu, mem)
			op, err := Emulate(cpu, mem, c.bytes)
			require.NoError(t, err)
			assert.Equal(t, OpPopcnt, op)
			assert.Equal(t, c.want, c.reg(&cpu.regs))
			wantFlags := uint64(2)
			if c.zf {
				wantFlags |= flagZF
			}
			assert.Equal(t, wantFlags, cpu.regs.RFLAGS, "ZF = source zero, OF SF AF CF PF cleared")
			assert.Equal(t, uint64(fakeRIP+len(c.bytes)), cpu.regs.RIP)
		})
	}
}

func TestSysFlags(t *testing.T) {
	clac, stac := []byte{0x0F, 0x01, 0xCA}, []byte{0x0F, 0x01, 0xCB}
	cases := []struct {
		name       string
		bytes      []byte
		cpl        uint8
		rflags     uint64
		wantRFLAGS uint64
		wantRIP    uint64
		wantUD     bool
	}{
		{"clac clears AC", clac, 0, 2 | rflagsAC | flagCF, 2 | flagCF, fakeRIP + 3, false},
		{"clac with AC clear", clac, 0, 2, 2, fakeRIP + 3, false},
		{"stac sets AC", stac, 0, 2 | flagZF, 2 | flagZF | rflagsAC, fakeRIP + 3, false},
		{"clac at CPL3 is #UD", clac, 3, 2 | rflagsAC, 2 | rflagsAC, fakeRIP, true},
		{"stac at CPL3 is #UD", stac, 3, 2, 2, fakeRIP, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cpu, mem := newFake(mode64, c.bytes)
			cpu.sregs.SS.DPL, cpu.sregs.CS.DPL = c.cpl, c.cpl
			cpu.regs.RFLAGS = c.rflags
			_, err := Emulate(cpu, mem, c.bytes)
			require.NoError(t, err)
			assert.Equal(t, c.wantRFLAGS, cpu.regs.RFLAGS)
			assert.Equal(t, c.wantRIP, cpu.regs.RIP)
			nr, _, _, exc := injected(cpu)
			assert.Equal(t, c.wantUD, exc)
			if c.wantUD {
				assert.Equal(t, uint8(vecUD), nr)
			}
		})
	}
}

func TestFwait(t *testing.T) {
	for _, c := range []struct {
		name string
		cr0  uint64
		nm   bool
	}{
		{"skipped", cr0PE | cr0MP, false},
		{"TS without MP: skipped", cr0PE | cr0TS, false},
		{"MP and TS: #NM", cr0PE | cr0MP | cr0TS, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			cpu, mem := newFake(mode64, []byte{0x9B})
			cpu.sregs.CR0 = c.cr0 | 1<<31
			op, err := Emulate(cpu, mem, nil)
			require.NoError(t, err)
			assert.Equal(t, OpFwait, op)
			nr, _, _, exc := injected(cpu)
			if c.nm {
				assert.True(t, exc)
				assert.Equal(t, uint8(vecNM), nr)
				assert.Equal(t, uint64(fakeRIP), cpu.regs.RIP)
			} else {
				assert.False(t, exc)
				assert.Equal(t, uint64(fakeRIP+1), cpu.regs.RIP)
			}
		})
	}
}

func TestInt3(t *testing.T) {
	cpu, mem := newFake(mode64, []byte{0xCC})
	cpu.events.Flags = 0xC // KVM_VCPUEVENT_VALID_SHADOW | VALID_SMM, as KVM reports
	op, err := Emulate(cpu, mem, []byte{0xCC})
	require.NoError(t, err)
	assert.Equal(t, OpInt3, op)
	assert.Equal(t, uint64(fakeRIP+1), cpu.regs.RIP, "#BP is a trap: RIP past the int3")
	e := cpu.events.Exception
	assert.Equal(t, uint8(1), e.Injected)
	assert.Equal(t, uint8(3), e.Nr)
	assert.Equal(t, uint8(0), e.HasErrorCode)
	assert.Equal(t, uint8(0), e.Pending)
	assert.Equal(t, uint32(0xC), cpu.events.Flags, "flags round-trip")
	assert.Equal(t, 0, cpu.calls["SetSregs"])

	t.Run("exception already pending", func(t *testing.T) {
		cpu, mem := newFake(mode64, []byte{0xCC})
		cpu.events.Exception.Injected, cpu.events.Exception.Nr = 1, 14
		_, err := Emulate(cpu, mem, nil)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "already pending")
		assert.Equal(t, uint8(14), cpu.events.Exception.Nr)
	})
	for _, b := range [][]byte{{0xCD, 0x03}, {0xCD, 0xCC}} {
		t.Run(fmt.Sprintf("% x is not int3", b), func(t *testing.T) {
			cpu, mem := newFake(mode64, b)
			_, err := Emulate(cpu, mem, nil)
			require.ErrorIs(t, err, ErrUnsupported)
		})
	}
}

// xsaveImage returns an XSAVE image whose legacy region holds a pattern,
// with a valid MXCSR and MXCSR_MASK.
func xsaveImage() kvm.XSave {
	var b [fxAreaSize]byte
	for i := range b {
		b[i] = byte(i*7 + 1)
	}
	binary.LittleEndian.PutUint32(b[fxMXCSR:], 0x1F80)
	binary.LittleEndian.PutUint32(b[fxMask:], 0xFFFF)
	var x kvm.XSave
	setLegacyRegion(&x, &b)
	x.Region[xstateBV] = 0x4 // only AVX state: x87 and SSE in their init state
	return x
}

func TestFxsave(t *testing.T) {
	fxsave64 := []byte{0x48, 0x0F, 0xAE, 0x00} // fxsave64 (%rax)
	fxsave := []byte{0x0F, 0xAE, 0x00}         // fxsave (%rax)
	img := xsaveImage()
	want := legacyRegion(&img)
	cases := []struct {
		name  string
		mode  int
		bytes []byte
		end   int // bytes written
		fmt32 bool
	}{
		{"fxsave64", mode64, fxsave64, fxEnd64, false},
		{"fxsave in 64-bit mode", mode64, fxsave, fxEnd64, true},
		{"fxsave in 32-bit mode", mode32, fxsave, fxEnd32, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cpu, mem := newFake(c.mode, c.bytes)
			cpu.xsave = img
			cpu.regs.RAX = fakeData
			for i := range fxAreaSize {
				mem.b[fakeData+i] = 0xAA
			}
			op, err := Emulate(cpu, mem, nil)
			require.NoError(t, err)
			assert.Equal(t, OpFxsave, op)
			got := mem.b[fakeData : fakeData+fxAreaSize]
			w := want
			if c.fmt32 {
				clear(w[12:16]) // FIP[63:32] -> FCS, reserved
				clear(w[20:24]) // FDP[63:32] -> FDS, reserved
			}
			assert.Equal(t, w[:c.end], got[:c.end])
			assert.Equal(t, strings.Repeat("\xAA", fxAreaSize-c.end), string(got[c.end:]), "bytes past the saved state untouched")
			assert.Equal(t, 0, cpu.calls["SetXSave"])
			assert.Equal(t, uint64(fakeRIP+len(c.bytes)), cpu.regs.RIP)
		})
	}
}

// TestFxsaveFaults checks the exceptions fxsave and fxrstor raise: nothing
// is written, RIP stays, the exception is injected.
func TestFxsaveFaults(t *testing.T) {
	fxsave64 := []byte{0x48, 0x0F, 0xAE, 0x00}
	fxrstor64 := []byte{0x48, 0x0F, 0xAE, 0x08}
	cases := []struct {
		name   string
		bytes  []byte
		setup  func(c *fakeCPU, m *fakeMem)
		vector uint8
		code   uint32
		cr2    uint64
	}{
		{"misaligned fxsave", fxsave64, func(c *fakeCPU, m *fakeMem) { c.regs.RAX = fakeData + 8 }, vecGP, 0, 0},
		{"misaligned fxrstor", fxrstor64, func(c *fakeCPU, m *fakeMem) { c.regs.RAX = fakeData + 1 }, vecGP, 0, 0},
		{"CR0.TS", fxsave64, func(c *fakeCPU, m *fakeMem) { c.sregs.CR0 |= cr0TS }, vecNM, 0, 0},
		{"CR0.EM", fxrstor64, func(c *fakeCPU, m *fakeMem) { c.sregs.CR0 |= cr0EM }, vecNM, 0, 0},
		{"reserved MXCSR bits", fxrstor64, func(c *fakeCPU, m *fakeMem) {
			binary.LittleEndian.PutUint32(m.b[fakeData+fxMXCSR:], 0x1_0000)
		}, vecGP, 0, 0},
		{"MXCSR.DAZ with a mask without it", fxrstor64, func(c *fakeCPU, m *fakeMem) {
			binary.LittleEndian.PutUint32(m.b[fakeData+fxMXCSR:], 0x40)
			c.xsave.Region[fxMask/4] = 0 // default mask 0xFFBF: no DAZ
		}, vecGP, 0, 0},
		{"fxsave to an unmapped page", fxsave64, func(c *fakeCPU, m *fakeMem) { c.regs.RAX = 0x40_0000 }, vecPF, pfWrite, 0x40_0000},
		{"fxsave across into an unmapped page", fxsave64, func(c *fakeCPU, m *fakeMem) {
			c.regs.RAX = fakeIdentity - 0x100
		}, vecPF, pfWrite, fakeIdentity},
		{"fxsave to a read-only page", fxsave64, func(c *fakeCPU, m *fakeMem) { c.ro[fakeData] = true }, vecPF, pfPresent | pfWrite, fakeData},
		{"fxrstor from an unmapped page at CPL3", fxrstor64, func(c *fakeCPU, m *fakeMem) {
			c.regs.RAX = 0x40_0000
			c.sregs.SS.DPL, c.sregs.CS.DPL = 3, 3
		}, vecPF, pfUser, 0x40_0000},
		{"non-canonical", fxsave64, func(c *fakeCPU, m *fakeMem) { c.regs.RAX = 0x8000_0000_0000_0000 }, vecGP, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cpu, mem := newFake(mode64, c.bytes)
			cpu.xsave = xsaveImage()
			cpu.regs.RAX = fakeData
			c.setup(cpu, mem)
			before := cpu.xsave
			ram := append([]byte(nil), mem.b...)
			regs := cpu.regs
			_, err := Emulate(cpu, mem, nil)
			require.NoError(t, err)
			nr, code, hasCode, exc := injected(cpu)
			require.True(t, exc)
			assert.Equal(t, c.vector, nr)
			assert.Equal(t, c.vector != vecNM, hasCode)
			assert.Equal(t, c.code, code)
			assert.Equal(t, regs, cpu.regs, "registers unchanged")
			assert.Equal(t, 0, cpu.calls["SetRegs"])
			assert.True(t, string(ram) == string(mem.b), "memory unchanged")
			assert.Equal(t, before, cpu.xsave, "FPU state unchanged")
			if c.vector == vecPF {
				assert.Equal(t, c.cr2, cpu.sregs.CR2)
				assert.Equal(t, 1, cpu.calls["SetSregs"])
			} else {
				assert.Equal(t, 0, cpu.calls["SetSregs"])
			}
		})
	}
}

func TestFxrstor(t *testing.T) {
	t.Run("round trip", func(t *testing.T) {
		// fxsave64 the image, change the vCPU state, fxrstor64: the
		// legacy region is back, and XSTATE_BV marks x87 and SSE present.
		cpu, mem := newFake(mode64, []byte{0x48, 0x0F, 0xAE, 0x00})
		orig := xsaveImage()
		cpu.xsave = orig
		cpu.regs.RAX = fakeData
		_, err := Emulate(cpu, mem, nil)
		require.NoError(t, err)
		for i := range 128 {
			cpu.xsave.Region[i] = 0
		}
		cpu.xsave.Region[fxMask/4] = 0xFFFF
		cpu.xsave.Region[fxMXCSR/4] = 0x1F80
		copy(mem.b[fakeRIP:], []byte{0x48, 0x0F, 0xAE, 0x08})
		cpu.regs.RIP = fakeRIP
		op, err := Emulate(cpu, mem, nil)
		require.NoError(t, err)
		assert.Equal(t, OpFxrstor, op)
		got, want := legacyRegion(&cpu.xsave), legacyRegion(&orig)
		assert.Equal(t, want[:fxEnd64], got[:fxEnd64])
		assert.Equal(t, uint32(0x7), cpu.xsave.Region[xstateBV])
		assert.Equal(t, 1, cpu.calls["SetXSave"])
	})
	t.Run("32-bit format and MXCSR_MASK kept", func(t *testing.T) {
		cpu, mem := newFake(mode64, []byte{0x0F, 0xAE, 0x08}) // fxrstor (%rax)
		cpu.xsave = xsaveImage()
		cpu.regs.RAX = fakeData
		area := mem.b[fakeData : fakeData+fxAreaSize]
		for i := range area {
			area[i] = 0x55
		}
		binary.LittleEndian.PutUint32(area[fxMXCSR:], 0x1F80|0x6000)
		binary.LittleEndian.PutUint32(area[fxMask:], 0x1234)
		_, err := Emulate(cpu, mem, nil)
		require.NoError(t, err)
		got := legacyRegion(&cpu.xsave)
		assert.Equal(t, uint64(0x5555_5555), binary.LittleEndian.Uint64(got[fxFIP:]), "FIP zero-extended")
		assert.Equal(t, uint64(0x5555_5555), binary.LittleEndian.Uint64(got[fxFDP:]), "FDP zero-extended")
		assert.Equal(t, uint32(0x7F80), binary.LittleEndian.Uint32(got[fxMXCSR:]))
		assert.Equal(t, uint32(0xFFFF), binary.LittleEndian.Uint32(got[fxMask:]), "MXCSR_MASK is not loaded")
		assert.Equal(t, strings.Repeat("\x55", fxEnd64-32), string(got[32:fxEnd64]))
		img := xsaveImage()
		want := legacyRegion(&img)
		assert.Equal(t, want[fxEnd64:], got[fxEnd64:], "reserved and software bytes untouched")
	})
	t.Run("32-bit mode restores XMM0-7 only", func(t *testing.T) {
		cpu, mem := newFake(mode32, []byte{0x0F, 0xAE, 0x08})
		cpu.xsave = xsaveImage()
		cpu.regs.RAX = fakeData
		binary.LittleEndian.PutUint32(mem.b[fakeData+fxMXCSR:], 0x1F80)
		_, err := Emulate(cpu, mem, nil)
		require.NoError(t, err)
		got := legacyRegion(&cpu.xsave)
		img := xsaveImage()
		want := legacyRegion(&img)
		assert.Equal(t, make([]byte, fxEnd32-32), got[32:fxEnd32])
		assert.Equal(t, want[fxEnd32:], got[fxEnd32:])
	})
}

func TestCmpxchg16b(t *testing.T) {
	insn := []byte{0xF0, 0x48, 0x0F, 0xC7, 0x0F} // lock cmpxchg16b (%rdi)
	setup := func(lo, hi uint64) (*fakeCPU, *fakeMem) {
		cpu, mem := newFake(mode64, insn)
		cpu.regs.RDI = fakeData + 0x10
		cpu.regs.RAX, cpu.regs.RDX = 1, 2 // expected
		cpu.regs.RBX, cpu.regs.RCX = 3, 4 // new
		cpu.regs.RFLAGS = 2 | flagCF | flagSF
		binary.LittleEndian.PutUint64(mem.b[fakeData+0x10:], lo)
		binary.LittleEndian.PutUint64(mem.b[fakeData+0x18:], hi)
		return cpu, mem
	}
	t.Run("equal", func(t *testing.T) {
		cpu, mem := setup(1, 2)
		op, err := Emulate(cpu, mem, insn)
		require.NoError(t, err)
		assert.Equal(t, OpCmpxchg16b, op)
		assert.Equal(t, uint64(3), binary.LittleEndian.Uint64(mem.b[fakeData+0x10:]))
		assert.Equal(t, uint64(4), binary.LittleEndian.Uint64(mem.b[fakeData+0x18:]))
		assert.Equal(t, uint64(2|flagCF|flagSF|flagZF), cpu.regs.RFLAGS)
		assert.Equal(t, [2]uint64{1, 2}, [2]uint64{cpu.regs.RAX, cpu.regs.RDX})
		assert.Equal(t, uint64(fakeRIP+5), cpu.regs.RIP)
	})
	t.Run("not equal", func(t *testing.T) {
		cpu, mem := setup(1, 7) // high half differs
		cpu.regs.RFLAGS |= flagZF
		_, err := Emulate(cpu, mem, insn)
		require.NoError(t, err)
		assert.Equal(t, uint64(1), binary.LittleEndian.Uint64(mem.b[fakeData+0x10:]))
		assert.Equal(t, uint64(7), binary.LittleEndian.Uint64(mem.b[fakeData+0x18:]))
		assert.Equal(t, uint64(2|flagCF|flagSF), cpu.regs.RFLAGS)
		assert.Equal(t, [2]uint64{1, 7}, [2]uint64{cpu.regs.RAX, cpu.regs.RDX})
		assert.Equal(t, uint64(fakeRIP+5), cpu.regs.RIP)
	})
	t.Run("misaligned", func(t *testing.T) {
		cpu, mem := setup(1, 2)
		cpu.regs.RDI = fakeData + 8
		_, err := Emulate(cpu, mem, insn)
		require.NoError(t, err)
		nr, code, hasCode, exc := injected(cpu)
		assert.True(t, exc && hasCode)
		assert.Equal(t, [2]uint32{vecGP, 0}, [2]uint32{uint32(nr), code})
		assert.Equal(t, uint64(fakeRIP), cpu.regs.RIP)
	})
	t.Run("memory without Slice", func(t *testing.T) {
		cpu, mem := setup(1, 2)
		_, err := Emulate(cpu, plainMem{mem}, insn)
		require.ErrorIs(t, err, errNoSlice)
		assert.Equal(t, uint64(fakeRIP), cpu.regs.RIP)
	})
	t.Run("outside RAM", func(t *testing.T) {
		cpu, mem := setup(1, 2)
		cpu.pages[0x70_0000] = 0x1000_0000 // an MMIO address
		cpu.regs.RDI = 0x70_0000
		_, err := Emulate(cpu, mem, insn)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "outside RAM")
		_, _, _, exc := injected(cpu)
		assert.False(t, exc)
	})
}

// TestCas128 checks the assembly directly, including atomicity: goroutines
// incrementing a 128-bit counter whose low half carries into the high half.
func TestCas128(t *testing.T) {
	buf := make([]byte, 64)
	off := (16 - int(uintptr(unsafe.Pointer(&buf[0]))%16)) % 16
	p := unsafe.Pointer(&buf[off])
	binary.LittleEndian.PutUint64(buf[off:], ^uint64(0)-1000)
	lo, hi, ok := cas128(p, 5, 6, 7, 8)
	assert.False(t, ok)
	assert.Equal(t, [2]uint64{^uint64(0) - 1000, 0}, [2]uint64{lo, hi})

	const workers, incs = 8, 2000
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range incs {
				lo, hi, _ := cas128(p, 0, 0, 0, 0) // read
				for {
					nlo, nhi := lo+1, hi
					if nlo == 0 {
						nhi++
					}
					var ok bool
					if lo, hi, ok = cas128(p, lo, hi, nlo, nhi); ok {
						break
					}
				}
			}
		})
	}
	wg.Wait()
	total := uint64(workers*incs) - 1001 // what carried past the low half
	assert.Equal(t, total, binary.LittleEndian.Uint64(buf[off:]))
	assert.Equal(t, uint64(1), binary.LittleEndian.Uint64(buf[off+8:]))
}

func TestSkipClockPairing(t *testing.T) {
	cases := []struct {
		name    string
		mode    int
		bytes   []byte
		rax     uint64
		skip    bool
		wantRAX uint64
	}{
		{"vmcall", mode64, []byte{0x0F, 0x01, 0xC1}, 9, true, 0xFFFF_FFFF_FFFF_FC18},
		{"vmmcall", mode64, []byte{0x0F, 0x01, 0xD9}, 9, true, 0xFFFF_FFFF_FFFF_FC18},
		{"vmcall 32-bit", mode32, []byte{0x0F, 0x01, 0xC1}, 0xFFFF_FFFF_0000_0009, true, 0xFFFF_FC18},
		{"other hypercall", mode64, []byte{0x0F, 0x01, 0xC1}, 1, false, 1},
		{"high bits of RAX in 64-bit mode", mode64, []byte{0x0F, 0x01, 0xC1}, 1<<32 | 9, false, 1<<32 | 9},
		{"not a hypercall", mode64, []byte{0x0F, 0x01, 0xCA}, 9, false, 9},
		{"nop", mode64, []byte{0x90}, 9, false, 9},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cpu, mem := newFake(c.mode, c.bytes)
			cpu.regs.RAX = c.rax
			skipped, err := SkipClockPairing(cpu, mem)
			require.NoError(t, err)
			assert.Equal(t, c.skip, skipped)
			assert.Equal(t, c.wantRAX, cpu.regs.RAX)
			if c.skip {
				assert.Equal(t, uint64(fakeRIP+3), cpu.regs.RIP)
			} else {
				assert.Equal(t, uint64(fakeRIP), cpu.regs.RIP)
				assert.Equal(t, 0, cpu.calls["SetRegs"])
			}
		})
	}
	t.Run("RIP not mapped", func(t *testing.T) {
		cpu, mem := newFake(mode64, nil)
		cpu.regs.RIP = 0x40_0000
		cpu.regs.RAX = 9
		skipped, err := SkipClockPairing(cpu, mem)
		assert.Error(t, err)
		assert.False(t, skipped)
		assert.Equal(t, 0, cpu.calls["SetRegs"])
	})
}

func TestUnsupported(t *testing.T) {
	cases := []struct {
		name  string
		bytes []byte
		asm   string
	}{
		{"ud2", []byte{0x0F, 0x0B}, "ud2"},
		{"xsave", []byte{0x0F, 0xAE, 0x20}, "xsave (%rax)"},
		{"xrstor64", []byte{0x48, 0x0F, 0xAE, 0x28}, "xrstor64 (%rax)"},
		{"xsaves", []byte{0x0F, 0xC7, 0x28}, "xsaves (%rax)"},
		{"cmpxchg8b", []byte{0x0F, 0xC7, 0x0F}, "cmpxchg8b (%rdi)"},
		{"vmcall, other hypercall", []byte{0x0F, 0x01, 0xC1}, "vmcall"},
		{"undecodable", []byte{0x0F, 0x04, 0x00}, "0f 04 00"},
		{"mov", []byte{0x48, 0x89, 0xD8}, "mov %rbx,%rax"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cpu, mem := newFake(mode64, c.bytes)
			regs := cpu.regs
			op, err := Emulate(cpu, mem, c.bytes)
			require.ErrorIs(t, err, ErrUnsupported)
			assert.Equal(t, OpNone, op)
			assert.Contains(t, err.Error(), c.asm)
			assert.Equal(t, regs, cpu.regs)
			assert.Equal(t, 0, cpu.calls["SetRegs"]+cpu.calls["SetVCPUEvents"]+cpu.calls["SetXSave"])
		})
	}
}

func TestLockPrefix(t *testing.T) {
	for _, b := range [][]byte{
		{0xF0, 0xF3, 0x0F, 0xB8, 0xC3}, // lock popcnt
		{0xF0, 0xCC},                   // lock int3
		{0xF0, 0x9B},                   // lock fwait
		{0xF0, 0x48, 0x0F, 0xAE, 0x00}, // lock fxsave64
		{0xF0, 0x0F, 0xAE, 0x08},       // lock fxrstor
	} {
		cpu, mem := newFake(mode64, nil)
		cpu.regs.RAX = fakeData
		op, err := Emulate(cpu, mem, b)
		require.NoError(t, err)
		assert.NotEqual(t, OpNone, op)
		nr, _, _, exc := injected(cpu)
		assert.True(t, exc, "% x", b)
		assert.Equal(t, uint8(vecUD), nr, "% x", b)
		assert.Equal(t, uint64(fakeRIP), cpu.regs.RIP, "% x", b)
	}
}

func TestFetch(t *testing.T) {
	popcnt := []byte{0xF3, 0x48, 0x0F, 0xB8, 0xC3}
	t.Run("across a page boundary", func(t *testing.T) {
		// Linear 0x200000 maps to 0x30000, 0x201000 to 0x10000: not
		// contiguous; the instruction starts 2 bytes before the boundary.
		cpu, mem := newFake(mode64, nil)
		cpu.pages[0x20_0000], cpu.pages[0x20_1000] = 0x30000, 0x10000
		cpu.regs.RIP = 0x20_0FFE
		copy(mem.b[0x30FFE:], popcnt[:2])
		copy(mem.b[0x10000:], popcnt[2:])
		cpu.regs.RBX = 0xFF
		op, err := Emulate(cpu, mem, nil)
		require.NoError(t, err)
		assert.Equal(t, OpPopcnt, op)
		assert.Equal(t, uint64(8), cpu.regs.RAX)
		assert.Equal(t, uint64(0x20_0FFE+5), cpu.regs.RIP)
	})
	t.Run("second page unmapped, instruction in the first", func(t *testing.T) {
		cpu, mem := newFake(mode64, nil)
		cpu.regs.RIP = fakeIdentity - 1
		mem.b[fakeIdentity-1] = 0x9B
		op, err := Emulate(cpu, mem, nil)
		require.NoError(t, err)
		assert.Equal(t, OpFwait, op)
	})
	t.Run("second page unmapped, instruction crosses", func(t *testing.T) {
		cpu, mem := newFake(mode64, nil)
		cpu.regs.RIP = fakeIdentity - 2
		copy(mem.b[fakeIdentity-2:], popcnt)
		_, err := Emulate(cpu, mem, nil)
		require.ErrorIs(t, err, ErrUnsupported)
		assert.Contains(t, err.Error(), "truncated")
	})
	t.Run("truncated bytes from the exit", func(t *testing.T) {
		cpu, mem := newFake(mode64, popcnt)
		cpu.regs.RBX = 3
		op, err := Emulate(cpu, mem, popcnt[:3])
		require.NoError(t, err)
		assert.Equal(t, OpPopcnt, op)
		assert.Equal(t, uint64(2), cpu.regs.RAX)
	})
	t.Run("32-bit code segment base", func(t *testing.T) {
		cpu, mem := newFake(mode32, nil)
		cpu.sregs.CS.Base = 0x3000
		copy(mem.b[0x3000+fakeRIP:], []byte{0x9B})
		op, err := Emulate(cpu, mem, nil)
		require.NoError(t, err)
		assert.Equal(t, OpFwait, op)
		assert.Equal(t, uint64(fakeRIP+1), cpu.regs.RIP)
	})
	t.Run("16-bit IP wraps", func(t *testing.T) {
		cpu, mem := newFake(mode16, nil)
		cpu.regs.RIP = 0xFFFF
		mem.b[0xFFFF] = 0x9B
		_, err := Emulate(cpu, mem, nil)
		require.NoError(t, err)
		assert.Equal(t, uint64(0), cpu.regs.RIP)
	})
	for _, c := range []struct {
		name  string
		setup func(c *fakeCPU)
	}{
		{"RIP not mapped", func(c *fakeCPU) { c.regs.RIP = 0x40_0000 }},
		{"RIP non-canonical", func(c *fakeCPU) { c.regs.RIP = 0x8000_0000_0000_0000 }},
		{"RIP outside RAM", func(c *fakeCPU) { c.pages[0x40_0000] = 0x4000_0000; c.regs.RIP = 0x40_0000 }},
		{"KVM_TRANSLATE fails", func(c *fakeCPU) { c.fail = "Translate" }},
		{"KVM_GET_REGS fails", func(c *fakeCPU) { c.fail = "Regs" }},
		{"KVM_GET_SREGS fails", func(c *fakeCPU) { c.fail = "Sregs" }},
	} {
		t.Run(c.name, func(t *testing.T) {
			cpu, mem := newFake(mode64, popcnt)
			c.setup(cpu)
			op, err := Emulate(cpu, mem, nil)
			require.Error(t, err)
			assert.False(t, errors.Is(err, ErrUnsupported))
			assert.Equal(t, OpNone, op)
			assert.Equal(t, 0, cpu.calls["SetRegs"])
		})
	}
}

func TestNonCanonical(t *testing.T) {
	for _, c := range []struct {
		name   string
		bytes  []byte
		vector uint8
	}{
		{"(%rax): #GP", []byte{0xF3, 0x48, 0x0F, 0xB8, 0x00}, vecGP},
		{"(%rbp): #SS", []byte{0xF3, 0x48, 0x0F, 0xB8, 0x45, 0x00}, vecSS},
	} {
		t.Run(c.name, func(t *testing.T) {
			cpu, mem := newFake(mode64, c.bytes)
			cpu.regs.RAX, cpu.regs.RBP = 0x0000_8000_0000_0000, 0x0000_8000_0000_0000
			_, err := Emulate(cpu, mem, nil)
			require.NoError(t, err)
			nr, _, hasCode, exc := injected(cpu)
			assert.True(t, exc && hasCode)
			assert.Equal(t, c.vector, nr)
		})
	}
	t.Run("LA57", func(t *testing.T) {
		assert.False(t, canonical(0x0000_8000_0000_0000, false))
		assert.True(t, canonical(0x0000_8000_0000_0000, true))
		assert.True(t, canonical(0xFFFF_8000_0000_0000, false))
		assert.False(t, canonical(0x0100_0000_0000_0000, true))
	})
}

func TestPageFaultOnRead(t *testing.T) {
	cpu, mem := newFake(mode64, []byte{0xF3, 0x48, 0x0F, 0xB8, 0x00})
	cpu.regs.RAX = 0x40_0008
	cpu.sregs.CR2 = 0x1234
	_, err := Emulate(cpu, mem, nil)
	require.NoError(t, err)
	nr, code, hasCode, exc := injected(cpu)
	assert.True(t, exc && hasCode)
	assert.Equal(t, uint8(vecPF), nr)
	assert.Equal(t, uint32(0), code, "read, not present, supervisor")
	assert.Equal(t, uint64(0x40_0008), cpu.sregs.CR2)
	assert.Equal(t, uint64(fakeRIP), cpu.regs.RIP)
}

func TestDescribe(t *testing.T) {
	popcnt := []byte{0xF3, 0x48, 0x0F, 0xB8, 0xC3}
	cpu, mem := newFake(mode64, popcnt)
	cpu.regs.RAX, cpu.regs.R15 = 0xAAAA, 0xF15
	cpu.sregs.CR3 = 0x9000
	d := Describe(cpu, mem, nil)
	t.Log("\n" + d)
	for _, s := range []string{
		"64-bit CPL0", "RIP 0x1000", "linear 0x1000",
		"insn [f3 48 0f b8 c3] 00 00", "popcnt %rbx,%rax",
		"RAX 0x000000000000aaaa", "R15 0x0000000000000f15", "CR3 0x9000", "EFER 0x500",
	} {
		assert.Contains(t, d, s)
	}
	assert.LessOrEqual(t, strings.Count(d, "\n"), 9)

	d = Describe(cpu, mem, []byte{0x0F, 0x01, 0xCA})
	assert.Contains(t, d, "insn [0f 01 ca]: clac")

	cpu.regs.RIP = 0x40_0000
	assert.Contains(t, Describe(cpu, mem, nil), "insn unavailable")
	cpu.fail = "Sregs"
	assert.Contains(t, Describe(cpu, mem, nil), "special registers unavailable")
	cpu.fail = "Regs"
	assert.Contains(t, Describe(cpu, mem, nil), "registers unavailable")

	cpu, mem = newFake(mode32, nil)
	cpu.sregs.SS.DPL = 3
	assert.Contains(t, Describe(cpu, mem, []byte{0xCC}), "32-bit CPL3")
}
