package boot

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestE820(t *testing.T) {
	low := E820Entry{0, 0x9FC00, E820RAM}
	legacy := E820Entry{0x9FC00, 0x100000 - 0x9FC00, E820Reserved}
	tests := []struct {
		name string
		ram  []Range
		want []E820Entry
	}{
		{"512 MiB", ramLayout(512 * mb), []E820Entry{low, legacy, {0x100000, 512*mb - 0x100000, E820RAM}}},
		{"3 GiB", ramLayout(3 * gib), []E820Entry{low, legacy, {0x100000, 3*gib - 0x100000, E820RAM}}},
		{"4 GiB: 1 GiB above the hole", ramLayout(4 * gib), []E820Entry{low, legacy,
			{0x100000, 3*gib - 0x100000, E820RAM}, {4 * gib, 1 * gib, E820RAM}}},
		{"6 GiB: 3 GiB above the hole", ramLayout(6 * gib), []E820Entry{low, legacy,
			{0x100000, 3*gib - 0x100000, E820RAM}, {4 * gib, 3 * gib, E820RAM}}},
		{"adjacent ranges merge", []Range{{0, 256 * mb}, {256 * mb, 256 * mb}}, []E820Entry{low, legacy,
			{0x100000, 512*mb - 0x100000, E820RAM}}},
		{"tiny guest: RAM ends below the EBDA", []Range{{0, 0x80000}}, []E820Entry{{0, 0x80000, E820RAM}, legacy}},
		{"no RAM below 1 MiB", []Range{{1 * mb, 63 * mb}}, []E820Entry{legacy, {1 * mb, 63 * mb, E820RAM}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := E820(tt.ram)
			assert.Equal(t, tt.want, got)
			for _, e := range got {
				assert.False(t, overlaps(e.Addr, e.Size, 3*gib, 1*gib), "entry %+v is in the 3-4 GiB hole", e)
			}
		})
	}
}

func TestE820Reserved(t *testing.T) {
	ram := []Range{{Start: 0, Size: 3 << 30}, {Start: 4 << 30, Size: 1 << 30}}
	got := E820(ram, Range{Start: 0xE000_0000, Size: 1 << 20})
	require.Len(t, got, 5)
	assert.Equal(t, E820Entry{Addr: 0xE000_0000, Size: 1 << 20, Type: E820Reserved}, got[3])
	assert.Equal(t, uint64(4<<30), got[4].Addr)
}
