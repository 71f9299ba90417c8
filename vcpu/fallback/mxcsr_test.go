package fallback

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMXCSR(t *testing.T) {
	le := binary.LittleEndian
	// stmxcsr [fakeData] (0F AE 1C 25 disp32), ldmxcsr [fakeData+4] (0F AE 14 25 disp32)
	st := append([]byte{0x0F, 0xAE, 0x1C, 0x25}, le.AppendUint32(nil, fakeData)...)
	ld := append([]byte{0x0F, 0xAE, 0x14, 0x25}, le.AppendUint32(nil, fakeData+4)...)

	cpu, mem := newFake(mode64, st)
	cpu.xsave.Region[fxMXCSR/4] = 0x1FA0
	op, err := Emulate(cpu, mem, nil)
	require.NoError(t, err)
	assert.Equal(t, OpStmxcsr, op)
	assert.Equal(t, uint32(0x1FA0), le.Uint32(mem.b[fakeData:]))
	assert.Equal(t, uint64(fakeRIP+len(st)), cpu.regs.RIP)

	cpu, mem = newFake(mode64, ld)
	le.PutUint32(mem.b[fakeData+4:], 0x1F80)
	op, err = Emulate(cpu, mem, nil)
	require.NoError(t, err)
	assert.Equal(t, OpLdmxcsr, op)
	assert.Equal(t, uint32(0x1F80), cpu.xsave.Region[fxMXCSR/4])
	assert.NotZero(t, cpu.xsave.Region[xstateBV]&2, "SSE state marked in use")

	t.Run("reserved bits raise #GP", func(t *testing.T) {
		cpu, mem := newFake(mode64, ld)
		le.PutUint32(mem.b[fakeData+4:], 0xFFFF0000)
		_, err := Emulate(cpu, mem, nil)
		require.NoError(t, err)
		assert.Equal(t, uint8(vecGP), cpu.events.Exception.Nr)
		assert.Equal(t, uint64(fakeRIP), cpu.regs.RIP, "a fault leaves RIP at the instruction")
	})
	t.Run("CR0.TS raises #NM", func(t *testing.T) {
		cpu, mem := newFake(mode64, st)
		cpu.sregs.CR0 |= cr0TS
		_, err := Emulate(cpu, mem, nil)
		require.NoError(t, err)
		assert.Equal(t, uint8(vecNM), cpu.events.Exception.Nr)
	})
}
