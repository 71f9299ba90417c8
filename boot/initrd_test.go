package boot

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPlaceInitrd(t *testing.T) {
	kernel := []Range{{0x1000000, 0x1134000}}
	tests := []struct {
		name  string
		ram   []Range
		size  uint64
		limit uint64
		avoid []Range
		want  uint64
		err   string
	}{
		{"top of 512 MiB", ramLayout(512 * mb), 1032170, 0x80000000, kernel, alignDown(512*mb-1032170, pageSize), ""},
		{"below initrd_addr_max", ramLayout(3 * gib), 10 * mb, 0x80000000, kernel, 2*gib - 10*mb, ""},
		{"below 3 GiB when the limit is 4 GiB", ramLayout(6 * gib), 10 * mb, 4 * gib, kernel, 3*gib - 10*mb, ""},
		{"above 4 GiB when allowed", ramLayout(6 * gib), 10 * mb, ^uint64(0), kernel, 7*gib - 10*mb, ""},
		{"exact fit", []Range{{0, 1 * mb}, {1 * mb, 1 * mb}}, 1 * mb, ^uint64(0), nil, 1 * mb, ""},
		{"below the kernel when above is too small", []Range{{0, 0x1000000 + 0x1134000 + 0x1000}}, 8 * mb, ^uint64(0), kernel, 0x1000000 - 8*mb, ""},
		{"too large", ramLayout(64 * mb), 64 * mb, 0x80000000, kernel, 0, "initrd (64 MiB) does not fit in guest RAM below 0x80000000"},
		{"too large, no limit", ramLayout(64 * mb), 100*mb + 512*kib, ^uint64(0), kernel, 0, "initrd (100.5 MiB) does not fit in guest RAM below the top of RAM"},
		{"only room inside the kernel", []Range{{0, 0x1000000 + 0x1134000}}, 15*mb + 1, ^uint64(0), kernel, 0, "does not fit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := placeInitrd(tt.ram, tt.size, tt.limit, tt.avoid)
			if tt.err != "" {
				require.ErrorIs(t, err, ErrInitrdTooLarge)
				assert.Contains(t, err.Error(), tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			assert.Zero(t, got%pageSize)
			assert.True(t, ramCovers(tt.ram, got, got+tt.size))
			assert.LessOrEqual(t, got+tt.size, tt.limit)
			for _, a := range tt.avoid {
				assert.False(t, overlaps(got, tt.size, a.Start, a.Size))
			}
		})
	}
}

func TestFreeRanges(t *testing.T) {
	ram := []Range{{0, 3 * gib}, {4 * gib, 2 * gib}}
	got := freeRanges(ram, 1*mb, 5*gib, []Range{{16 * mb, 16 * mb}, {0, 0}, {4*gib + 1*mb, 1 * mb}})
	assert.Equal(t, []Range{{1 * mb, 15 * mb}, {32 * mb, 3*gib - 32*mb}, {4 * gib, 1 * mb}, {4*gib + 2*mb, 1*gib - 2*mb}}, got)
}

func TestRAMCovers(t *testing.T) {
	ram := []Range{{0, 1 * gib}, {1 * gib, 1 * gib}, {4 * gib, 1 * gib}}
	assert.True(t, ramCovers(ram, 0, 2*gib), "adjacent ranges")
	assert.True(t, ramCovers(ram, 5, 5))
	assert.False(t, ramCovers(ram, 2*gib-1, 2*gib+1), "into the hole")
	assert.False(t, ramCovers(ram, 5*gib, 5*gib+1), "past the end")
	assert.False(t, ramCovers(ram, 10, 5), "inverted")
}

func TestValidateRAM(t *testing.T) {
	for _, ram := range [][]Range{
		nil,
		{{0, 0}},
		{{^uint64(0) - 5, 10}},
		{{1 * gib, 1 * gib}, {0, 1 * gib}},
		{{0, 2 * gib}, {1 * gib, 2 * gib}},
	} {
		assert.ErrorIs(t, validateRAM(ram), ErrConfig, "%v", ram)
	}
	assert.NoError(t, validateRAM(ramLayout(6*gib)))
}
