// Package initramfs builds the initramfs images of vmtest guests: u-root
// commands and other Go programs compiled for the guest, host files, an
// optional static busybox, kernel modules for a modular kernel, and
// vmtest's own /init, which runs the image's command and reports its exit
// status through the test-exit port.
//
//	img := initramfs.Image{
//		Commands: []string{"github.com/u-root/u-root/cmds/core/ls", "./testdata/hello"},
//		Files:    []initramfs.File{{Name: "etc/greeting", Data: []byte("hi\n")}},
//		Run:      []string{"/bin/hello", "/etc/greeting"},
//	}
//	err := img.Build(ctx, "hello.cpio")
//
// Go programs are built on the host with CGO_ENABLED=0 GOOS=linux
// GOARCH=amd64, from the working directory's module; a command whose
// module's dependencies that module lacks (many of u-root's) is built in
// its own module instead. The image is written by package guest/initramfs:
// an uncompressed, reproducible newc archive, modules stored in the order
// their dependencies need.
package initramfs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"

	cpioimage "github.com/gvmm/gvmm/guest/initramfs"
	"github.com/gvmm/gvmm/vmtest/internal/wire"
)

// InitPackage is vmtest's /init, built into every image.
const InitPackage = "github.com/gvmm/gvmm/vmtest/internal/guestinit"

// File is a file of the image.
type File struct {
	// Name is its path in the image, relative ("etc/motd", "test.sh").
	Name string
	// Host is a host file to copy; Data is stored when Host is empty.
	Host string
	Data []byte
	// Mode holds its permission bits (0644 when zero).
	Mode os.FileMode
}

// Image describes an initramfs.
type Image struct {
	// Commands are Go main packages, built for the guest into /bin under
	// their last path element: u-root's commands
	// ("github.com/u-root/u-root/cmds/core/ls"), or the test's own
	// ("./testdata/hello", relative to the working directory).
	Commands []string
	// Files are more files.
	Files []File
	// Busybox is a static busybox for /bin/busybox with its applet links,
	// such as Debian's busybox-static (/bin/busybox); empty for none.
	Busybox string
	// ModulesDir and Modules add kernel modules, loaded by /init in the
	// order given (each after those it needs): a modular kernel's virtio
	// drivers. Modules nil means the virtio drivers
	// (guest/initramfs.VirtioModules).
	ModulesDir string
	Modules    []string
	// Run is the command /init runs, with the console as its terminal;
	// its exit status is the guest's verdict. Empty means /bin/sh.
	Run []string
	// Env is added to the command's environment.
	Env []string
	// Dir is the command's working directory in the guest.
	Dir string

	// JSONOutput, SendDir and QuietKernel are for vmtest.RunGoTests
	// (see vmtest/internal/wire.Config).
	JSONOutput  bool
	SendDir     string
	QuietKernel bool

	// GoEnv is added to the environment of the go commands that build
	// the programs (GOFLAGS=-tags=..., for one).
	GoEnv []string
}

// Build writes the image to out (replacing it atomically), building the
// Go programs in a temporary folder next to it. Where EnvImages names a
// store of prebuilt images (StoreFromEnv), the image is copied from there
// instead, and it is an error (ErrNotPrebuilt) if the store lacks it;
// with EnvPrebuild=1 as well, it is built and stored.
func (img Image) Build(ctx context.Context, out string) error {
	s := StoreFromEnv()
	if s == nil {
		return img.BuildFresh(ctx, out)
	}
	key, err := img.Key()
	if err != nil {
		return err
	}
	what := fmt.Sprintf("image running %q", img.Run)
	if len(img.Commands) > 0 {
		what += fmt.Sprintf(" with commands %s", strings.Join(img.Commands, " "))
	}
	file, err := s.Provide(key, what, out, func(out string) error { return img.BuildFresh(ctx, out) })
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	if file != out {
		if err := atomicCopy(file, out); err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
	}
	return nil
}

// BuildFresh builds the image into out with the Go toolchain, whatever
// the environment says of prebuilt images.
func (img Image) BuildFresh(ctx context.Context, out string) error {
	work, err := os.MkdirTemp(filepath.Dir(out), ".vmtest-build-*")
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	defer os.RemoveAll(work)

	initBin := filepath.Join(work, "init")
	if err := GoBuild(ctx, img.GoEnv, initBin, InitPackage); err != nil {
		return err
	}
	spec := cpioimage.Spec{Init: initBin, Busybox: img.Busybox, ModulesDir: img.ModulesDir, Modules: img.Modules}
	if img.ModulesDir != "" && img.Modules == nil {
		spec.Modules = cpioimage.VirtioModules
	}
	if img.Busybox != "" {
		if err := cpioimage.CheckStatic(img.Busybox); err != nil {
			return fmt.Errorf("initramfs: busybox: %w", err)
		}
	}
	seen := map[string]string{}
	for _, pkg := range img.Commands {
		name := path.Base(strings.TrimRight(filepath.ToSlash(pkg), "/"))
		if name == "." || name == "/" || name == "" {
			return fmt.Errorf("initramfs: command %q has no name", pkg)
		}
		if other, dup := seen[name]; dup {
			return fmt.Errorf("initramfs: commands %s and %s would both be /bin/%s", other, pkg, name)
		}
		seen[name] = pkg
		bin := filepath.Join(work, "bin", name)
		if err := GoBuild(ctx, img.GoEnv, bin, pkg); err != nil {
			return err
		}
		spec.Files = append(spec.Files, cpioimage.File{Name: "bin/" + name, Host: bin, Mode: 0o755})
	}
	for _, f := range img.Files {
		spec.Files = append(spec.Files, cpioimage.File{Name: f.Name, Host: f.Host, Data: f.Data, Mode: uint64(f.Mode.Perm())})
	}
	cfg, err := json.Marshal(wire.Config{Args: img.Run, Env: img.Env, Dir: img.Dir,
		JSONOutput: img.JSONOutput, SendDir: img.SendDir, QuietKernel: img.QuietKernel})
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	spec.Files = append(spec.Files, cpioimage.File{Name: wire.ConfigPath, Data: cfg})
	res, err := cpioimage.WriteFile(out, spec)
	if err != nil {
		return err
	}
	if len(res.Missing) > 0 && img.Modules != nil {
		// Modules named on purpose must be there; the default list is
		// whatever the kernel has of it.
		return fmt.Errorf("initramfs: modules %s not found in %s", strings.Join(res.Missing, ", "), img.ModulesDir)
	}
	return nil
}

// guestEnv is the environment of a build for the guest: static, x86-64
// Linux, whatever the host's go env says.
var guestEnv = []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64"}

// GoBuild builds the Go main package pkg for the guest into the file out:
// first from the working directory's module, then, if that module lacks
// the package's dependencies, from the package's own module (the module
// cache copy of u-root, for one).
func GoBuild(ctx context.Context, env []string, out, pkg string) error {
	flags := []string{"-trimpath", "-ldflags=-s -w"}
	args := append(append([]string{"build"}, flags...), "-o", out, pkg)
	key, ok := buildKey(ctx, "", env, pkg, false, flags)
	first := cached(key, ok, out, func() error { return goCmd(ctx, "", env, args...) })
	if first == nil {
		return nil
	}
	if !strings.Contains(first.Error(), "missing go.sum entry") && !strings.Contains(first.Error(), "no required module provides") {
		return first
	}
	dir, err := moduleDir(ctx, env, pkg)
	if err != nil || dir == "" {
		return first
	}
	key, ok = buildKey(ctx, dir, env, pkg, false, flags)
	if again := cached(key, ok, out, func() error { return goCmd(ctx, dir, env, args...) }); again != nil {
		return fmt.Errorf("%w; in its module %s: %w", first, dir, again)
	}
	return nil
}

// GoTestBuild compiles the tests of pkg for the guest into the file out
// (go test -c), with extra flags such as -cover.
func GoTestBuild(ctx context.Context, env []string, out, pkg string, flags ...string) error {
	args := append([]string{"test", "-c", "-o", out}, flags...)
	key, ok := buildKey(ctx, "", env, pkg, true, flags)
	return cached(key, ok, out, func() error { return goCmd(ctx, "", env, append(args, pkg)...) })
}

// moduleDir returns the folder of the module that provides pkg.
func moduleDir(ctx context.Context, env []string, pkg string) (string, error) {
	var stdout bytes.Buffer
	cmd := exec.CommandContext(ctx, "go", "list", "-e", "-f", "{{with .Module}}{{.Dir}}{{end}}", pkg)
	cmd.Env = append(append(os.Environ(), guestEnv...), env...)
	cmd.Stdout = &stdout
	if err := cmd.Run(); err != nil {
		return "", err
	}
	return strings.TrimSpace(stdout.String()), nil
}

func goCmd(ctx context.Context, dir string, env []string, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), guestEnv...), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("go %s: %s", strings.Join(args, " "), strings.TrimSpace(out.String()))
		}
		return fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// DirFiles returns the regular files under the host folder dir as Files
// under the image folder name, for a test package's testdata.
func DirFiles(dir, name string) ([]File, error) {
	var files []File
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		files = append(files, File{Name: path.Join(name, filepath.ToSlash(rel)), Host: p, Mode: info.Mode().Perm()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	return files, nil
}
