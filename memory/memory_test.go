package memory

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLayout(t *testing.T) {
	for _, tc := range []struct {
		size uint64
		want [][2]uint64
	}{
		{256 << 20, [][2]uint64{{0, 256 << 20}}},
		{3 << 30, [][2]uint64{{0, 3 << 30}}},
		{4 << 30, [][2]uint64{{0, 3 << 30}, {4 << 30, 5 << 30}}},
		{6 << 30, [][2]uint64{{0, 3 << 30}, {4 << 30, 7 << 30}}},
	} {
		assert.Equal(t, tc.want, Layout(tc.size), "size %d MiB", tc.size>>20)
	}
}

func TestNewRejects(t *testing.T) {
	_, err := New(1 << 20)
	assert.ErrorContains(t, err, "too small")
	_, err = New(MaxSize + PageSize)
	assert.ErrorContains(t, err, "too large")
	_, err = New(MinSize + 1)
	assert.ErrorContains(t, err, "multiple")
}

// noReserveBytes sums the sizes of this process's mappings that carry
// VM_NORESERVE ("nr" in /proc/self/smaps' VmFlags, proc(5)): guest RAM's,
// and whatever mapAligned failed to trim.
func noReserveBytes(t *testing.T) uint64 {
	f, err := os.Open("/proc/self/smaps")
	require.NoError(t, err)
	defer f.Close()
	var total, size uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) == 3 && fields[0] == "Size:":
			kb, err := strconv.ParseUint(fields[1], 10, 64)
			require.NoError(t, err)
			size = kb << 10
		case len(fields) > 0 && fields[0] == "VmFlags:":
			for _, fl := range fields[1:] {
				if fl == "nr" {
					total += size
				}
			}
		}
	}
	require.NoError(t, sc.Err())
	return total
}

// Every region's host mapping starts on a 2 MiB boundary, so that KVM may map
// it with large pages, and New maps exactly the RAM asked for: the alignment
// slack is unmapped, and Close unmaps the rest.
func TestNewAlignsRegions(t *testing.T) {
	for _, size := range []uint64{MinSize, MinSize + PageSize, 256<<20 + 3*PageSize, 5<<30 + PageSize} {
		before := noReserveBytes(t)
		g, err := New(size)
		require.NoError(t, err, "size %#x", size)
		assert.Equal(t, before+size, noReserveBytes(t), "size %#x: mapped bytes", size)
		for _, r := range g.Regions() {
			assert.Zero(t, r.HostAddr()%HugePageSize, "size %#x: region at %#x starts at host %#x", size, r.GPA, r.HostAddr())
			// The first and last byte are there and writable.
			_, err := g.WriteAt([]byte{1}, int64(r.GPA))
			require.NoError(t, err)
			_, err = g.WriteAt([]byte{2}, int64(r.End()-1))
			require.NoError(t, err)
			assert.Equal(t, byte(1), r.Mem[0])
			assert.Equal(t, byte(2), r.Mem[len(r.Mem)-1])
		}
		require.NoError(t, g.Close())
		assert.Equal(t, before, noReserveBytes(t), "size %#x: bytes left mapped after Close", size)
	}
}

func TestBoundsChecked(t *testing.T) {
	g, err := New(5 << 30) // crosses the hole; nothing is touched, so this is cheap
	require.NoError(t, err)
	defer g.Close()
	require.Len(t, g.Regions(), 2)

	buf := []byte{1, 2, 3, 4}
	_, err = g.WriteAt(buf, HoleStart-4)
	require.NoError(t, err)
	got := make([]byte, 4)
	_, err = g.ReadAt(got, HoleStart-4)
	require.NoError(t, err)
	assert.Equal(t, buf, got)

	for _, tc := range []struct {
		name string
		gpa  int64
		n    int
	}{
		{"straddles the hole start", HoleStart - 2, 4},
		{"inside the hole", HoleStart + 16, 4},
		{"end of high RAM", HighStart + 2<<30 - 2, 4},
		{"past the end", HighStart + 3<<30, 1},
		{"negative", -1, 1},
		{"huge length", 0, 1 << 62},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.n > 1<<20 {
				_, err := g.Slice(uint64(tc.gpa), uint64(tc.n))
				assert.ErrorIs(t, err, ErrOutOfRange)
				return
			}
			_, err := g.ReadAt(make([]byte, tc.n), tc.gpa)
			assert.ErrorIs(t, err, ErrOutOfRange)
			_, err = g.WriteAt(make([]byte, tc.n), tc.gpa)
			assert.ErrorIs(t, err, ErrOutOfRange)
		})
	}
	_, err = g.WriteAt([]byte{9}, HighStart)
	assert.NoError(t, err, "first byte above 4 GiB is RAM")
}

// FuzzSlice checks that no address/length pair escapes guest RAM or panics.
func FuzzSlice(f *testing.F) {
	g, err := New(MinSize)
	if err != nil {
		f.Fatal(err)
	}
	defer g.Close()
	f.Add(uint64(0), uint64(1))
	f.Add(uint64(MinSize-1), uint64(2))
	f.Add(^uint64(0), uint64(2))
	f.Fuzz(func(t *testing.T, gpa, n uint64) {
		s, err := g.Slice(gpa, n)
		if err != nil {
			return
		}
		if uint64(len(s)) != n || gpa+n > MinSize || gpa+n < gpa {
			t.Fatalf("Slice(%#x, %#x) returned %d bytes", gpa, n, len(s))
		}
	})
}

func TestAtomicAccess(t *testing.T) {
	g, err := New(MinSize)
	require.NoError(t, err)
	defer g.Close()
	b, err := g.Slice(0x1000, 8)
	require.NoError(t, err)
	require.NoError(t, StoreUint32(b, 0x11223344))
	assert.Equal(t, []byte{0x44, 0x33, 0x22, 0x11}, b[:4], "little-endian")
	v, err := LoadUint32(b)
	require.NoError(t, err)
	assert.Equal(t, uint32(0x11223344), v)

	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"misaligned", b[2:], ErrMisaligned},
		{"short", b[4:7], ErrOutOfRange},
		{"empty", nil, ErrOutOfRange},
	} {
		_, err := LoadUint32(tc.b)
		assert.ErrorIs(t, err, tc.want, tc.name)
		assert.ErrorIs(t, StoreUint32(tc.b, 1), tc.want, tc.name)
	}
}
