package initramfs

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/u-root/u-root/pkg/cpio"

	"github.com/gvmm/gvmm/vmtest/internal/wire"
)

// TestBuild builds an image with a u-root command, files and a config,
// and reads it back.
func TestBuild(t *testing.T) {
	t.Setenv(EnvCache, t.TempDir())
	out := filepath.Join(t.TempDir(), "img.cpio")
	img := Image{
		Commands: []string{"github.com/u-root/u-root/cmds/core/echo"},
		Files:    []File{{Name: "etc/greeting", Data: []byte("hi\n")}},
		Run:      []string{"/bin/echo", "hello"},
		Env:      []string{"A=1"},
	}
	require.NoError(t, img.Build(t.Context(), out))
	data, err := os.ReadFile(out)
	require.NoError(t, err)
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(data)))
	require.NoError(t, err)
	got := map[string]cpio.Record{}
	for _, r := range recs {
		got[r.Name] = r
	}
	for _, name := range []string{"init", "bin/echo", "etc/greeting", wire.ConfigPath} {
		assert.Contains(t, got, name)
	}
	assert.Equal(t, uint64(cpio.S_IFREG|0o755), got["bin/echo"].Mode)
	assert.Greater(t, got["init"].FileSize, uint64(100<<10), "init is the Go guestinit")

	// Two commands with one name are refused.
	img.Commands = append(img.Commands, "./testdata/echo")
	assert.ErrorContains(t, img.Build(t.Context(), out), "would both be /bin/echo")
	// A program that does not build says why.
	img.Commands = []string{"./nonexistent"}
	assert.ErrorContains(t, img.Build(t.Context(), out), "go build")
}

// TestBuildCache checks that a second build of the same program comes
// from the cache, and that a change of flags is a different program.
func TestBuildCache(t *testing.T) {
	t.Setenv(EnvCache, t.TempDir())
	ctx := t.Context()
	k1, ok := buildKey(ctx, "", nil, InitPackage, false, []string{"-trimpath"})
	require.True(t, ok)
	k2, ok := buildKey(ctx, "", nil, InitPackage, false, []string{"-trimpath", "-ldflags=-s"})
	require.True(t, ok)
	assert.NotEqual(t, k1, k2)
	_, ok = buildKey(ctx, "", nil, "./nonexistent", false, nil)
	assert.False(t, ok)

	dir := t.TempDir()
	first, second := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	require.NoError(t, GoBuild(ctx, nil, first, InitPackage))
	builds := 0
	key, ok := buildKey(ctx, "", nil, InitPackage, false, []string{"-trimpath", "-ldflags=-s -w"})
	require.True(t, ok)
	require.NoError(t, cached(key, ok, second, func() error { builds++; return nil }))
	assert.Zero(t, builds, "the program came from the cache")
	a, err := os.ReadFile(first)
	require.NoError(t, err)
	b, err := os.ReadFile(second)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(a, b))
}
