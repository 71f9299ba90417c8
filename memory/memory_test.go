package memory

import (
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
