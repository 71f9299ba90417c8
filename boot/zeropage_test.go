package boot

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestZeroPageOffsets writes a zero page and reads each field back at the
// offset arch/x86/include/uapi/asm/bootparam.h and boot.rst give for it.
func TestZeroPageOffsets(t *testing.T) {
	z, err := parseBzImage(buildBzImage(defaultBz(compress(t, CompressionGzip, tinyELF()))))
	require.NoError(t, err)
	e820 := E820(ramLayout(6 * gib))
	zp := zeroPage{
		header:      z.header,
		cmdline:     CmdlineAddr,
		initrd:      Range{Start: 0x1_2345_6000, Size: 0x1_0000_1234},
		rsdp:        0xE0000,
		e820:        e820,
		code32Start: 0x100000,
	}
	b, err := zp.build()
	require.NoError(t, err)
	require.Len(t, b, 4096)
	le := binary.LittleEndian
	tests := []struct {
		name   string
		offset int
		size   int
		want   uint64
	}{
		{"setup_sects", 0x1f1, 1, 4},
		{"boot_flag", 0x1fe, 2, 0xAA55},
		{"header HdrS", 0x202, 4, 0x53726448},
		{"version", 0x206, 2, 0x020f},
		{"type_of_loader", 0x210, 1, 0xff},
		{"loadflags", 0x211, 1, 0x01},
		{"code32_start", 0x214, 4, 0x100000},
		{"ramdisk_image", 0x218, 4, 0x2345_6000},
		{"ramdisk_size", 0x21c, 4, 0x1234},
		{"ext_ramdisk_image", 0x0c0, 4, 0x1},
		{"ext_ramdisk_size", 0x0c4, 4, 0x1},
		{"cmd_line_ptr", 0x228, 4, 0x20000},
		{"ext_cmd_line_ptr", 0x0c8, 4, 0},
		{"initrd_addr_max", 0x22c, 4, 0x7fffffff},
		{"kernel_alignment", 0x230, 4, 0x200000},
		{"xloadflags", 0x236, 2, XLFKernel64},
		{"cmdline_size", 0x238, 4, 2047},
		{"hardware_subarch", 0x23c, 4, 0},
		{"setup_data", 0x250, 8, 0},
		{"pref_address", 0x258, 8, 0x1000000},
		{"init_size", 0x260, 4, 4 * mb},
		{"acpi_rsdp_addr", 0x070, 8, 0xE0000},
		{"sentinel", 0x1ef, 1, 0},
		{"e820_entries", 0x1e8, 1, 4},
		{"e820_table[0].addr", 0x2d0, 8, 0},
		{"e820_table[0].size", 0x2d8, 8, 0x9FC00},
		{"e820_table[0].type", 0x2e0, 4, 1},
		{"e820_table[1].addr", 0x2e4, 8, 0x9FC00},
		{"e820_table[1].type", 0x2f4, 4, 2},
		{"e820_table[2].addr", 0x2f8, 8, 0x100000},
		{"e820_table[2].size", 0x300, 8, 3*gib - 0x100000},
		{"e820_table[3].addr", 0x30c, 8, 4 * gib},
		{"e820_table[3].size", 0x314, 8, 3 * gib},
		{"e820_table[3].type", 0x31c, 4, 1},
		{"e820_table[4] unused", 0x320, 8, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got uint64
			switch tt.size {
			case 1:
				got = uint64(b[tt.offset])
			case 2:
				got = uint64(le.Uint16(b[tt.offset:]))
			case 4:
				got = uint64(le.Uint32(b[tt.offset:]))
			case 8:
				got = le.Uint64(b[tt.offset:])
			}
			assert.Equal(t, tt.want, got, "offset %#x", tt.offset)
		})
	}
}

// TestZeroPageSynthesised covers a bare vmlinux, which has no setup header
// to copy.
func TestZeroPageSynthesised(t *testing.T) {
	b, err := zeroPage{cmdline: CmdlineAddr, cmdlineSize: 2047, e820: E820(ramLayout(512 * mb))}.build()
	require.NoError(t, err)
	le := binary.LittleEndian
	assert.Equal(t, uint16(0xAA55), le.Uint16(b[0x1fe:]))
	assert.Equal(t, "HdrS", string(b[0x202:0x206]))
	assert.Equal(t, uint16(0x020f), le.Uint16(b[0x206:]))
	assert.Equal(t, uint8(0xff), b[0x210])
	assert.Equal(t, uint8(loadedHigh), b[0x211])
	assert.Equal(t, uint32(0x200000), le.Uint32(b[0x230:]))
	assert.Equal(t, uint32(2047), le.Uint32(b[0x238:]))
	assert.Equal(t, uint32(0x20000), le.Uint32(b[0x228:]))
	assert.Equal(t, uint32(0), le.Uint32(b[0x218:]), "no initrd")
	assert.Equal(t, uint64(0), le.Uint64(b[0x070:]), "no RSDP")
	assert.Equal(t, uint8(3), b[0x1e8])
}

func TestZeroPageTooManyE820(t *testing.T) {
	_, err := zeroPage{e820: make([]E820Entry, MaxE820Entries+1)}.build()
	require.ErrorIs(t, err, ErrConfig)
}
