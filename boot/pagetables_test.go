package boot

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestIdentityPageTables(t *testing.T) {
	b := identityPageTables()
	require.Len(t, b, 0xF000-0x9000)
	entry := func(table uint64, i int) uint64 {
		return binary.LittleEndian.Uint64(b[table-PML4Addr+uint64(i)*8:])
	}
	tests := []struct {
		name  string
		table uint64
		index int
		want  uint64
	}{
		{"PML4[0] -> PDPT", 0x9000, 0, 0xA000 | 3},
		{"PML4[1] empty", 0x9000, 1, 0},
		{"PDPT[0] -> PD 0", 0xA000, 0, 0xB000 | 3},
		{"PDPT[1] -> PD 1", 0xA000, 1, 0xC000 | 3},
		{"PDPT[2] -> PD 2", 0xA000, 2, 0xD000 | 3},
		{"PDPT[3] -> PD 3", 0xA000, 3, 0xE000 | 3},
		{"PDPT[4] empty", 0xA000, 4, 0},
		{"PD0[0] maps 0", 0xB000, 0, 0x83},
		{"PD0[1] maps 2 MiB", 0xB000, 1, 0x200000 | 0x83},
		{"PD0[8] maps 16 MiB", 0xB000, 8, 0x1000000 | 0x83},
		{"PD1[0] maps 1 GiB", 0xC000, 0, 1<<30 | 0x83},
		{"PD3[511] maps 4 GiB - 2 MiB", 0xE000, 511, 0xFFE00000 | 0x83},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, entry(tt.table, tt.index))
		})
	}
}

func TestGDT(t *testing.T) {
	tests := []struct {
		name string
		gdt  []uint64
		want []uint64
	}{
		{"64-bit", bootGDT(descCode64), []uint64{0, 0, 0x00AF9B000000FFFF, 0x00CF93000000FFFF}},
		{"PVH 32-bit", bootGDT(descCode32), []uint64{0, 0, 0x00CF9B000000FFFF, 0x00CF93000000FFFF}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.gdt)
			b := gdtBytes(tt.gdt)
			require.Len(t, b, bootGDTSize)
			assert.Equal(t, tt.want[2], binary.LittleEndian.Uint64(b[0x10:]))
		})
	}
	assert.Equal(t, uint64(0x12cf9b345678ffff), gdtEntry(descCode32, 0x12345678, 0xfffff), "base bits 24-31 go to bits 56-63")
	assert.LessOrEqual(t, GDTAddr+bootGDTSize, IDTAddr, "GDT runs into the IDT")
}

func TestSegmentFromDescriptor(t *testing.T) {
	tests := []struct {
		name string
		sel  uint16
		desc uint64
		want Segment
	}{
		{"64-bit code", 0x10, gdtEntry(descCode64, 0, 0xfffff),
			Segment{Limit: 0xffffffff, Selector: 0x10, Type: 0xb, Present: 1, S: 1, L: 1, G: 1}},
		{"32-bit code", 0x10, gdtEntry(descCode32, 0, 0xfffff),
			Segment{Limit: 0xffffffff, Selector: 0x10, Type: 0xb, Present: 1, S: 1, DB: 1, G: 1}},
		{"data", 0x18, gdtEntry(descData, 0, 0xfffff),
			Segment{Limit: 0xffffffff, Selector: 0x18, Type: 0x3, Present: 1, S: 1, DB: 1, G: 1}},
		{"byte-granular with base", 0x20, gdtEntry(0x0093, 0x12345678, 0xabcd),
			Segment{Base: 0x12345678, Limit: 0xabcd, Selector: 0x20, Type: 0x3, Present: 1, S: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, segmentFromDescriptor(tt.sel, tt.desc))
		})
	}
}

func TestCPUState(t *testing.T) {
	lm := longModeCPU(0x1000000)
	assert.Equal(t, uint64(0x1000000), lm.RIP)
	assert.Equal(t, uint64(0x7000), lm.RSI, "RSI = zero page")
	assert.Equal(t, uint64(2), lm.RFLAGS, "IF clear")
	assert.Equal(t, uint64(0x80000011), lm.CR0, "PE|ET|PG")
	assert.Equal(t, uint64(0x9000), lm.CR3)
	assert.Equal(t, uint64(0x20), lm.CR4, "PAE")
	assert.Equal(t, uint64(0x500), lm.EFER, "LME|LMA")
	assert.Equal(t, uint16(0x10), lm.CS.Selector)
	assert.Equal(t, uint8(1), lm.CS.L)
	assert.Equal(t, uint8(0), lm.CS.DB)
	assert.Equal(t, uint16(0x18), lm.DS.Selector)
	assert.Equal(t, DescriptorTable{Base: 0x500, Limit: 31}, lm.GDT)
	assert.Equal(t, DescriptorTable{Base: 0x520, Limit: 7}, lm.IDT)
	assert.Equal(t, uint8(11), lm.TR.Type)

	pvh := pvhCPU(0x10004a0)
	assert.Equal(t, uint64(0x10004a0), pvh.RIP)
	assert.Equal(t, uint64(0x6000), pvh.RBX, "EBX = hvm_start_info")
	assert.Equal(t, uint64(0x11), pvh.CR0, "PE|ET, no paging")
	assert.Zero(t, pvh.CR3)
	assert.Zero(t, pvh.CR4)
	assert.Zero(t, pvh.EFER)
	assert.Equal(t, uint8(0), pvh.CS.L)
	assert.Equal(t, uint8(1), pvh.CS.DB, "32-bit code")
	assert.Equal(t, uint32(0xffffffff), pvh.CS.Limit)
	assert.Equal(t, uint32(0xffffffff), pvh.DS.Limit)
	assert.Equal(t, uint32(0x67), pvh.TR.Limit)
}
