package initramfs

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Environment variables of the prebuilt image store ("compile outside,
// run inside").
const (
	// EnvImages names a folder of prebuilt images. Where it is set and
	// EnvPrebuild is not, images come only from there: an image missing
	// from it is an error, and the Go toolchain never runs. gvmm's make
	// test sets it for the run in the emulated KVM host, where the Go
	// linker is about 30 times slower than on the machine itself.
	EnvImages = "GVMM_VMTEST_IMAGES"
	// EnvPrebuild set to 1, with EnvImages, makes every image be built
	// and stored in EnvImages' folder. vmtest's tests build their images
	// even where they then skip for want of /dev/kvm, so one run of a
	// test binary with both set, outside, prebuilds what the same binary
	// needs inside.
	EnvPrebuild = "GVMM_VMTEST_PREBUILD"
)

// ErrNotPrebuilt is returned (wrapped) for an image that a read-only
// Store lacks.
var ErrNotPrebuilt = errors.New("image not prebuilt")

// Store is a folder of prebuilt images, each named by the key of what it
// was built from (Image.Key, or vmtest's key for a package's tests), with
// an entry KEY.json beside KEY.cpio that says what it is: the manifest.
//
// Keys are computed without the Go toolchain, from the image's
// description, so they do not change with the Go source of its programs:
// a store is valid for the source tree it was prebuilt from, and is
// prebuilt again (cheaply: go's build cache) before every run.
type Store struct {
	// Dir is the folder.
	Dir string
	// Fill makes Provide build every image and store it; otherwise
	// Provide only reads the store.
	Fill bool
}

// StoreFromEnv returns the store EnvImages names (filled when
// EnvPrebuild is 1), or nil when it is not set.
func StoreFromEnv() *Store {
	dir := os.Getenv(EnvImages)
	if dir == "" {
		return nil
	}
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	return &Store{Dir: dir, Fill: os.Getenv(EnvPrebuild) == "1"}
}

// entry is the manifest entry of a stored image.
type entry struct {
	// What says what the image was built from, for people.
	What  string    `json:"what"`
	Built time.Time `json:"built"`
}

// Provide returns the file of the image with the given key: built by
// build into a temporary file when s is nil; from the store when it is
// read-only (an error wrapping ErrNotPrebuilt when the store lacks it,
// naming what and the stored images); built into tmp and also stored
// when s fills. what describes the image in the manifest and in errors.
// A file returned from the store must not be changed.
func (s *Store) Provide(key, what, tmp string, build func(out string) error) (string, error) {
	if s == nil {
		return tmp, build(tmp)
	}
	file := filepath.Join(s.Dir, key+".cpio")
	if !s.Fill {
		if _, err := os.Stat(file); err != nil {
			return "", fmt.Errorf("%w: %s (key %s) is not in %s=%s, and the Go toolchain is not run where it is set: "+
				"run the same tests with %s=1 first where go is fast%s",
				ErrNotPrebuilt, what, short(key), EnvImages, s.Dir, EnvPrebuild, s.listing())
		}
		return file, nil
	}
	if err := build(tmp); err != nil {
		return "", err
	}
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return "", fmt.Errorf("image store: %w", err)
	}
	if err := atomicCopy(tmp, file); err != nil {
		return "", fmt.Errorf("image store: %w", err)
	}
	meta, err := json.MarshalIndent(entry{What: what, Built: time.Now().UTC()}, "", "  ")
	if err != nil {
		return "", fmt.Errorf("image store: %w", err)
	}
	if err := atomicWrite(filepath.Join(s.Dir, key+".json"), append(meta, '\n')); err != nil {
		return "", fmt.Errorf("image store: %w", err)
	}
	return tmp, nil
}

func short(key string) string {
	if len(key) > 16 {
		return key[:16]
	}
	return key
}

// listing names the images the store has, for an error about one it
// lacks.
func (s *Store) listing() string {
	names, _ := filepath.Glob(filepath.Join(s.Dir, "*.json"))
	if len(names) == 0 {
		return " (it holds no image)"
	}
	sort.Strings(names)
	var whats []string
	for _, n := range names {
		data, err := os.ReadFile(n)
		var e entry
		if err != nil || json.Unmarshal(data, &e) != nil {
			continue
		}
		whats = append(whats, e.What)
	}
	return fmt.Sprintf(" (it holds %d: %s)", len(whats), strings.Join(whats, "; "))
}

// Key identifies the image img describes, without building it: the
// description itself, with the contents of the host files it names
// (hashed). It does not cover the Go source of the programs (see Store).
func (img Image) Key() (string, error) {
	h := sha256.New()
	type file struct {
		Name, Content string
		Mode          os.FileMode
	}
	files := make([]file, 0, len(img.Files))
	for _, f := range img.Files {
		sum, err := contentHash(f)
		if err != nil {
			return "", fmt.Errorf("initramfs: %w", err)
		}
		files = append(files, file{f.Name, sum, f.Mode})
	}
	busybox := ""
	if img.Busybox != "" {
		sum, err := contentHash(File{Host: img.Busybox})
		if err != nil {
			return "", fmt.Errorf("initramfs: busybox: %w", err)
		}
		busybox = sum
	}
	desc := struct {
		Version                 int
		Commands                []string
		Files                   []file
		Busybox, ModulesDir     string
		Modules, Run, Env       []string
		Dir                     string
		JSONOutput, QuietKernel bool
		SendDir                 string
		GoEnv                   []string
		Wd, GOFLAGS             string
	}{
		Version: 1, Commands: img.Commands, Files: files, Busybox: busybox,
		ModulesDir: img.ModulesDir, Modules: img.Modules, Run: img.Run, Env: img.Env, Dir: img.Dir,
		JSONOutput: img.JSONOutput, QuietKernel: img.QuietKernel, SendDir: img.SendDir, GoEnv: img.GoEnv,
		GOFLAGS: os.Getenv("GOFLAGS"),
	}
	if len(img.Commands) > 0 {
		// Commands such as "./hello" are relative to it.
		desc.Wd, _ = os.Getwd()
	}
	if err := json.NewEncoder(h).Encode(desc); err != nil {
		return "", fmt.Errorf("initramfs: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func contentHash(f File) (string, error) {
	h := sha256.New()
	if f.Host == "" {
		h.Write(f.Data)
	} else {
		in, err := os.Open(f.Host)
		if err != nil {
			return "", err
		}
		defer in.Close()
		if _, err := io.Copy(h, in); err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// atomicCopy copies src to dst, which readers see whole or not at all.
func atomicCopy(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return atomicWrite(dst, data)
}

func atomicWrite(dst string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(dst), ".tmp-*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), dst)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
