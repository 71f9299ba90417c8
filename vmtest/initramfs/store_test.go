package initramfs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestImageKey checks that the key changes with everything that changes
// the image, host files' contents included, and with nothing else.
func TestImageKey(t *testing.T) {
	host := filepath.Join(t.TempDir(), "f")
	require.NoError(t, os.WriteFile(host, []byte("one"), 0o644))
	base := Image{
		Commands: []string{"./hello"},
		Files:    []File{{Name: "a", Data: []byte("x")}, {Name: "b", Host: host}},
		Run:      []string{"/bin/sh", "/test.sh"},
	}
	baseKey, err := base.Key()
	require.NoError(t, err)
	again, err := base.Key()
	require.NoError(t, err)
	assert.Equal(t, baseKey, again, "the same description, the same key")

	tests := []struct {
		name   string
		change func(img *Image)
	}{
		{"run", func(img *Image) { img.Run = []string{"/bin/sh"} }},
		{"env", func(img *Image) { img.Env = []string{"A=1"} }},
		{"dir", func(img *Image) { img.Dir = "/tmp" }},
		{"command", func(img *Image) { img.Commands = []string{"./other"} }},
		{"file data", func(img *Image) { img.Files = []File{{Name: "a", Data: []byte("y")}, {Name: "b", Host: host}} }},
		{"file name", func(img *Image) { img.Files = []File{{Name: "c", Data: []byte("x")}, {Name: "b", Host: host}} }},
		{"file mode", func(img *Image) {
			img.Files = []File{{Name: "a", Data: []byte("x"), Mode: 0o755}, {Name: "b", Host: host}}
		}},
		{"go env", func(img *Image) { img.GoEnv = []string{"GOFLAGS=-tags=x"} }},
		{"json output", func(img *Image) { img.JSONOutput = true }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := base
			tt.change(&img)
			k, err := img.Key()
			require.NoError(t, err)
			assert.NotEqual(t, baseKey, k)
		})
	}
	t.Run("host file contents", func(t *testing.T) {
		require.NoError(t, os.WriteFile(host, []byte("two"), 0o644))
		k, err := base.Key()
		require.NoError(t, err)
		assert.NotEqual(t, baseKey, k)
	})
	t.Run("missing host file", func(t *testing.T) {
		img := base
		img.Files = []File{{Name: "b", Host: filepath.Join(t.TempDir(), "gone")}}
		_, err := img.Key()
		assert.ErrorIs(t, err, os.ErrNotExist)
	})
}

// TestStoreProvide checks the three ways to get an image: built (no
// store), built and stored (filling), and read from the store, which
// never builds and fails clearly on an image it lacks.
func TestStoreProvide(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "images")
	builds := 0
	build := func(content string) func(string) error {
		return func(out string) error {
			builds++
			return os.WriteFile(out, []byte(content), 0o644)
		}
	}
	tmp := filepath.Join(t.TempDir(), "tmp.cpio")

	var none *Store
	f, err := none.Provide("k1", "image one", tmp, build("v1"))
	require.NoError(t, err)
	assert.Equal(t, tmp, f)
	assert.Equal(t, 1, builds)
	_, err = os.Stat(dir)
	assert.ErrorIs(t, err, os.ErrNotExist, "no store, nothing stored")

	fill := &Store{Dir: dir, Fill: true}
	_, err = fill.Provide("k1", "image one", tmp, build("v1"))
	require.NoError(t, err)
	assert.Equal(t, 2, builds)
	_, err = fill.Provide("k1", "image one", tmp, func(string) error { return errors.New("broken") })
	assert.ErrorContains(t, err, "broken", "a failed build is an error while filling")

	ro := &Store{Dir: dir}
	f, err = ro.Provide("k1", "image one", tmp, build("never"))
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "k1.cpio"), f)
	data, err := os.ReadFile(f)
	require.NoError(t, err)
	assert.Equal(t, "v1", string(data))
	assert.Equal(t, 2, builds, "a read-only store never builds")

	_, err = ro.Provide("0123456789abcdef0123", "image two", tmp, build("never"))
	require.ErrorIs(t, err, ErrNotPrebuilt)
	for _, want := range []string{"image two", "0123456789abcdef", EnvImages, EnvPrebuild, "it holds 1: image one"} {
		assert.ErrorContains(t, err, want)
	}
	assert.Equal(t, 2, builds)
}

// TestStoreFromEnv checks how the environment selects the store.
func TestStoreFromEnv(t *testing.T) {
	tests := []struct {
		name, images, prebuild string
		want                   *Store
	}{
		{"unset", "", "1", nil},
		{"read-only", "/x/images", "", &Store{Dir: "/x/images"}},
		{"filling", "/x/images", "1", &Store{Dir: "/x/images", Fill: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvImages, tt.images)
			t.Setenv(EnvPrebuild, tt.prebuild)
			assert.Equal(t, tt.want, StoreFromEnv())
		})
	}
}

// TestBuildFromStore checks that Image.Build copies a prebuilt image
// without the Go toolchain (PATH has no go), and says what is missing.
func TestBuildFromStore(t *testing.T) {
	dir := t.TempDir()
	img := Image{Run: []string{"/bin/true"}, Files: []File{{Name: "x", Data: []byte("1")}}}
	key, err := img.Key()
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, key+".cpio"), []byte("prebuilt"), 0o644))
	t.Setenv(EnvImages, dir)
	t.Setenv(EnvPrebuild, "")
	t.Setenv("PATH", t.TempDir())

	out := filepath.Join(t.TempDir(), "img.cpio")
	require.NoError(t, img.Build(t.Context(), out))
	data, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.Equal(t, "prebuilt", string(data))

	img.Run = []string{"/bin/false"}
	err = img.Build(t.Context(), out)
	assert.ErrorIs(t, err, ErrNotPrebuilt)
	assert.ErrorContains(t, err, `image running ["/bin/false"]`)
}
