package disk

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func image(t *testing.T, size int) (string, []byte) {
	p := filepath.Join(t.TempDir(), "disk.img")
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i*7 + i/4096)
	}
	require.NoError(t, os.WriteFile(p, b, 0o644))
	return p, b
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	odd := filepath.Join(dir, "odd.img")
	require.NoError(t, os.WriteFile(odd, make([]byte, 1000), 0o644))
	ro := filepath.Join(dir, "ro.img")
	require.NoError(t, os.WriteFile(ro, make([]byte, 4096), 0o444))
	for _, tc := range []struct {
		name string
		path string
		opts Options
		want error
		text string
	}{
		{"missing", filepath.Join(dir, "nope.img"), Options{}, nil, "no such file"},
		{"directory", dir, Options{}, ErrNotDisk, ""},
		{"size", odd, Options{}, ErrSize, "1000 bytes"},
		{"read-only file", ro, Options{}, ErrReadOnlyFile, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(tc.path, tc.opts)
			require.Error(t, err)
			if tc.want != nil {
				assert.ErrorIs(t, err, tc.want)
			}
			assert.Contains(t, err.Error(), tc.path)
			assert.Contains(t, err.Error(), tc.text)
		})
	}
	f, err := Open(ro, Options{ReadOnly: true})
	require.NoError(t, err)
	f.Close()
}

func TestLocks(t *testing.T) {
	p, _ := image(t, 8192)
	w, err := Open(p, Options{})
	require.NoError(t, err)
	_, err = Open(p, Options{})
	assert.ErrorIs(t, err, ErrLocked, "a second writer")
	_, err = Open(p, Options{ReadOnly: true})
	assert.ErrorIs(t, err, ErrLocked, "a reader while it is written")
	require.NoError(t, w.Close())

	r1, err := Open(p, Options{ReadOnly: true})
	require.NoError(t, err)
	defer r1.Close()
	r2, err := Open(p, Options{ReadOnly: true})
	require.NoError(t, err, "readers share")
	defer r2.Close()
	_, err = Open(p, Options{})
	assert.ErrorIs(t, err, ErrLocked, "a writer while it is read")
}

func TestParseCache(t *testing.T) {
	for _, c := range []Cache{CacheWriteback, CacheNone, CacheWritethrough} {
		got, err := ParseCache(c.String())
		require.NoError(t, err)
		assert.Equal(t, c, got)
	}
	_, err := ParseCache("unsafe")
	assert.Error(t, err)
}

// guestBuf returns n bytes of mmap'ed memory starting at offset off of a
// page, standing in for guest RAM.
func guestBuf(t *testing.T, n, off int) []byte {
	m, err := unix.Mmap(-1, 0, n+off+4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Munmap(m) })
	return m[off : off+n]
}

func TestIO(t *testing.T) {
	for _, cache := range []Cache{CacheWriteback, CacheNone, CacheWritethrough} {
		t.Run(cache.String(), func(t *testing.T) {
			p, want := image(t, 64<<10)
			f, err := Open(p, Options{Cache: cache})
			if cache == CacheNone && err != nil {
				t.Skipf("no O_DIRECT on the test file system: %v", err)
			}
			require.NoError(t, err)
			defer f.Close()
			x := f.NewIO()
			defer x.Close()
			for _, tc := range []struct {
				name     string
				off      uint64
				sizes    []int
				misalign int
			}{
				{"aligned", 4096, []int{4096, 8192}, 0},
				{"buffers not aligned", 8192, []int{512, 1536}, 8},
				{"odd buffer lengths", 0, []int{100, 412, 512}, 0},
				{"offset not aligned", 512 + 3, []int{1000}, 0},
				{"large", 0, []int{48 << 10}, 0},
			} {
				t.Run(tc.name, func(t *testing.T) {
					var bufs [][]byte
					total := 0
					for _, n := range tc.sizes {
						bufs = append(bufs, guestBuf(t, n, tc.misalign))
						total += n
					}
					require.NoError(t, x.ReadAt(bufs, tc.off))
					assert.Equal(t, want[tc.off:tc.off+uint64(total)], bytes.Join(bufs, nil))
					for _, b := range bufs {
						for i := range b {
							b[i] ^= 0xFF
						}
					}
					require.NoError(t, x.WriteAt(bufs, tc.off))
					copy(want[tc.off:], bytes.Join(bufs, nil))
					require.NoError(t, f.Flush())
					got, err := os.ReadFile(p)
					require.NoError(t, err)
					assert.True(t, bytes.Equal(want, got), "the file holds what was written")
				})
			}
			assert.ErrorIs(t, x.ReadAt([][]byte{make([]byte, 512)}, 64<<10), ErrRange)
			assert.ErrorIs(t, x.WriteAt([][]byte{make([]byte, 2048)}, 63<<10), ErrRange)
			assert.ErrorIs(t, x.Discard(^uint64(0)-10, 100), ErrRange)

			require.NoError(t, x.WriteZeroes(4096, 8192))
			require.NoError(t, x.Discard(32<<10, 4096))
			got, err := os.ReadFile(p)
			require.NoError(t, err)
			assert.Equal(t, make([]byte, 8192), got[4096:4096+8192])
			assert.Len(t, got, 64<<10, "the size stays")
		})
	}
}

func TestReadOnlyIO(t *testing.T) {
	p, _ := image(t, 8192)
	f, err := Open(p, Options{ReadOnly: true})
	require.NoError(t, err)
	defer f.Close()
	x := f.NewIO()
	assert.Error(t, x.WriteAt([][]byte{make([]byte, 512)}, 0))
	assert.Error(t, x.Discard(0, 512))
	assert.Error(t, x.WriteZeroes(0, 512))
	require.NoError(t, x.ReadAt([][]byte{make([]byte, 512)}, 0))
}
