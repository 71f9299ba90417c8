package fallback

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gvmm/gvmm/kvm"
)

// withIDT gives a fake 64-bit vCPU an IDT at idtAt whose gate for vector
// points at handler, with the given IST index and gate type, and a TSS at
// tssAt whose IST1 is ist1.
func withIDT(c *fakeCPU, m *fakeMem, vector uint8, handler uint64, ist, typ uint8) {
	const idtAt, tssAt = 0x3000, 0x4000
	le := binary.LittleEndian
	g := m.b[idtAt+16*int(vector):]
	le.PutUint16(g[0:], uint16(handler))
	le.PutUint16(g[2:], 0x10)
	g[4] = ist
	g[5] = 0x80 | typ
	le.PutUint16(g[6:], uint16(handler>>16))
	le.PutUint32(g[8:], uint32(handler>>32))
	c.sregs.IDT = kvm.DTable{Base: idtAt, Limit: 256*16 - 1}
	c.sregs.TR.Base = tssAt
	le.PutUint64(m.b[tssAt+0x24:], 0x7800)
}

// TestDeliverInt3 checks the frame and registers of a #BP delivered in
// userspace: RIP past the int3 pushed, SS:RSP, RFLAGS and CS below it,
// RSP aligned, IF cleared by an interrupt gate, no KVM injection.
func TestDeliverInt3(t *testing.T) {
	cpu, mem := newFake(mode64, []byte{0xCC})
	cpu.regs.RSP = 0x6008 // not 16-byte aligned
	cpu.regs.RFLAGS = 2 | 1<<9 | 1<<8
	withIDT(cpu, mem, vecBP, 0xffffffff81000abc&0xFFFFF, 0, 0xE)
	op, err := Emulate(cpu, mem, []byte{0xCC})
	require.NoError(t, err)
	assert.Equal(t, OpInt3, op)
	assert.Equal(t, uint8(0), cpu.events.Exception.Injected, "delivered in userspace, not by KVM")
	assert.Equal(t, uint64(0x81000abc&0xFFFFF), cpu.regs.RIP)
	assert.Equal(t, uint64(0x6000-40), cpu.regs.RSP, "aligned to 16, five words pushed")
	assert.Equal(t, uint64(2), cpu.regs.RFLAGS, "IF and TF cleared")
	le := binary.LittleEndian
	f := mem.b[0x6000-40:]
	assert.Equal(t, uint64(fakeRIP+1), le.Uint64(f[0:]), "return address past the int3")
	assert.Equal(t, uint64(0x10), le.Uint64(f[8:]), "CS")
	assert.Equal(t, uint64(2|1<<9|1<<8), le.Uint64(f[16:]), "RFLAGS")
	assert.Equal(t, uint64(0x6008), le.Uint64(f[24:]), "old RSP")
	assert.Equal(t, uint64(0x18), le.Uint64(f[32:]), "SS")
}

// TestDeliverPageFaultIST checks an exception with an error code on an IST
// stack through a trap gate: error code at the bottom, CR2 set, IF kept.
func TestDeliverPageFaultIST(t *testing.T) {
	// fxsave to an unmapped page faults.
	cpu, mem := newFake(mode64, []byte{0x0F, 0xAE, 0x04, 0x25, 0x00, 0x00, 0x90, 0x00}) // fxsave [0x900000]
	cpu.regs.RSP = 0x6000
	cpu.regs.RFLAGS = 2 | 1<<9
	withIDT(cpu, mem, vecPF, 0x5000, 1, 0xF)
	_, err := Emulate(cpu, mem, nil)
	require.NoError(t, err)
	assert.Equal(t, uint64(0x5000), cpu.regs.RIP)
	assert.Equal(t, uint64(0x7800-48), cpu.regs.RSP, "IST1 stack, six words")
	assert.Equal(t, uint64(2|1<<9), cpu.regs.RFLAGS, "a trap gate keeps IF")
	assert.Equal(t, uint64(0x900000), cpu.sregs.CR2)
	le := binary.LittleEndian
	f := mem.b[0x7800-48:]
	assert.Equal(t, uint64(pfWrite), le.Uint64(f[0:]), "error code: a write to a page not present")
	assert.Equal(t, uint64(fakeRIP), le.Uint64(f[8:]), "a fault returns to the instruction")
	assert.Equal(t, uint64(0x6000), le.Uint64(f[32:]), "old RSP")
}
