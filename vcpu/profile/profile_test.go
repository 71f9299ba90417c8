package profile

import (
	"bytes"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRoundTrip(t *testing.T) {
	p := New()
	var wg sync.WaitGroup
	for v := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				p.Sample(v, 0xffffffff81000000+uint64(i%7))
			}
		}()
	}
	wg.Wait()
	var buf bytes.Buffer
	_, err := p.WriteTo(&buf)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(buf.String(), "gvmm-profile 1\n0 0xffffffff81000000 143\n"), buf.String())
	q, err := Read(&buf)
	require.NoError(t, err)
	assert.Equal(t, p.Counts(), q.Counts())
	var total uint64
	for _, n := range q.Counts() {
		total += n
	}
	assert.Equal(t, uint64(4000), total)
}

func TestReadErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in, err string
	}{
		{"empty", "", "empty file"},
		{"not a profile", "hello\n", "not a gvmm profile"},
		{"fields", "gvmm-profile 1\n0 0x10\n", "line 2: want"},
		{"bad rip", "gvmm-profile 1\n0 zz 1\n", "line 2"},
		{"bad vcpu", "gvmm-profile 1\n-1 0x10 1\n", "line 2"},
		{"overflow", "gvmm-profile 1\n0 0x10 18446744073709551615\n0 0x10 1\n", "overflows"},
		{"long line", "gvmm-profile 1\n" + strings.Repeat("1", maxLine+1) + "\n", "too long"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(strings.NewReader(tc.in))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.err)
		})
	}
	p, err := Read(strings.NewReader("gvmm-profile 1\n\n1 0x10 2\n1 16 3\n"))
	require.NoError(t, err)
	assert.Equal(t, map[Key]uint64{{1, 0x10}: 5}, p.Counts(), "the same key twice adds up")
}

const systemMap = `ffffffff81000000 T _text
ffffffff81000000 T startup_64
ffffffff81000100 t helper
ffffffff81001000 D some_data
ffffffff81002000 T do_work
ffffffffc0000000 t vring_interrupt	[virtio_ring]
not a symbol line
`

func TestSymbols(t *testing.T) {
	s, err := ReadSymbols(strings.NewReader(systemMap))
	require.NoError(t, err)
	for _, tc := range []struct {
		addr uint64
		name string
		off  uint64
		ok   bool
	}{
		{0xffffffff80ffffff, "", 0, false},
		{0xffffffff81000000, "startup_64", 0, true}, // the later of two aliases
		{0xffffffff81000104, "helper", 4, true},
		{0xffffffff81001800, "helper", 0x1700, true}, // data symbols are skipped
		{0xffffffff81002010, "do_work", 0x10, true},
		{0xffffffffc0000020, "vring_interrupt [virtio_ring]", 0x20, true},
	} {
		name, off, ok := s.Lookup(tc.addr)
		assert.Equal(t, tc.ok, ok, "%#x", tc.addr)
		assert.Equal(t, tc.name, name, "%#x", tc.addr)
		assert.Equal(t, tc.off, off, "%#x", tc.addr)
	}
	_, err = ReadSymbols(strings.NewReader("The real System.map is in the -dbg package\n"))
	assert.ErrorContains(t, err, "no text symbols")
}

func TestReport(t *testing.T) {
	s, err := ReadSymbols(strings.NewReader(systemMap))
	require.NoError(t, err)
	p := New()
	for range 6 {
		p.Sample(0, 0xffffffff81002010)
	}
	for range 3 {
		p.Sample(1, 0xffffffff81002020)
	}
	p.Sample(1, 0x401000)
	var buf bytes.Buffer
	require.NoError(t, Report(&buf, p, s, 10))
	out := buf.String()
	assert.Contains(t, out, "10 samples, vCPU 0: 6, vCPU 1: 4\n")
	assert.Regexp(t, `\n +9 +90\.0  do_work\n +1 +10\.0  \[user\]\n`, out)
	assert.Regexp(t, `\n +6 +60\.0  0xffffffff81002010 do_work\+0x10\n`, out)

	buf.Reset()
	require.NoError(t, Report(&buf, p, nil, 1))
	assert.Regexp(t, `\n +6 +60\.0  0xffffffff81002010\n`, buf.String(), "raw addresses without symbols")
	assert.NotContains(t, buf.String(), "0xffffffff81002010 0xffffffff81002010", "an unknown address is printed once")
	assert.NotContains(t, buf.String(), "[user]", "top 1 keeps only the hottest")

	buf.Reset()
	require.NoError(t, Report(&buf, New(), s, 10))
	assert.Equal(t, "0 samples\n", buf.String())
}

func TestSince(t *testing.T) {
	base := New()
	base.Sample(0, 0x10)
	base.Sample(0, 0x20)
	base.Sample(0, 0x20)
	base.Sample(1, 0x30)
	now := New()
	for k, n := range base.Counts() {
		for range n {
			now.Sample(k.VCPU, k.RIP)
		}
	}
	now.Sample(0, 0x20)
	now.Sample(0, 0x40)
	assert.Equal(t, map[Key]uint64{{0, 0x20}: 1, {0, 0x40}: 1}, now.Since(base).Counts())
	assert.Empty(t, base.Since(now).Counts(), "no negative counts")
}

func TestMaxKeys(t *testing.T) {
	defer func(n int) { maxKeys = n }(maxKeys)
	maxKeys = 1000
	p := New()
	for i := range maxKeys + 10 {
		p.Sample(0, uint64(i))
	}
	p.Sample(0, 5) // a known address still counts
	assert.Len(t, p.Counts(), maxKeys)
	assert.Equal(t, uint64(2), p.Counts()[Key{0, 5}])
	assert.Equal(t, uint64(10), p.Dropped())
	var buf bytes.Buffer
	require.NoError(t, Report(&buf, p, nil, 1))
	assert.Contains(t, buf.String(), "(10 more dropped: over 1000 addresses)")
}
