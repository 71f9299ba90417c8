package emuhost

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/gvmm/gvmm/boot"
	"github.com/gvmm/gvmm/guest/initramfs"
)

// initScript is the host's /init.
//
//go:embed init.sh
var initScript []byte

// Packages names the Debian packages the host is made of.
type Packages struct {
	// KernelMeta is the metapackage whose first linux-image Depends is the
	// kernel to use, when Kernel is empty. Debian's generic flavour
	// (linux-image-amd64) has kvm-amd and the 9p modules; the cloud flavour
	// lacks 9p.
	KernelMeta string
	// Kernel is a versioned kernel image package
	// (linux-image-6.1.0-57-amd64); empty means KernelMeta's.
	Kernel string
	// Busybox is the package holding a static /bin/busybox.
	Busybox string
}

// DefaultPackages are the packages of a Debian 12 host.
var DefaultPackages = Packages{KernelMeta: "linux-image-amd64", Busybox: "busybox-static"}

// Modules are the kernel modules the host loads, with their dependencies:
// KVM on AMD, the 9p file system over virtio-pci, what network tests need
// (tap devices, veth pairs, bridges), and loop devices (the block
// benchmark's disk: a file on the host's tmpfs, so that its I/O stays in
// the emulated host instead of crossing 9p).
var Modules = []string{"kvm_amd", "virtio_pci", "9pnet_virtio", "9p", "tun", "veth", "bridge", "loop"}

// imageFormat changes whenever the way an image is built changes, so
// that cached images made the old way are rebuilt.
const imageFormat = "2"

// Image is a built host: a kernel and its initramfs.
type Image struct {
	Kernel string // ELF vmlinux with a PVH note
	Initrd string // uncompressed newc archive: busybox, /init, modules
	Dir    string // the cache folder holding both
}

// aptTools are the programs Prepare runs; all are on every Debian or
// Ubuntu machine.
var aptTools = []string{"apt-cache", "apt-get", "dpkg-deb"}

// Prepare returns the host image for pk, building it into a folder of
// cacheDir named for its inputs (package versions, /init, the module list)
// unless that folder already has it. Progress goes to log.
func Prepare(ctx context.Context, cacheDir string, pk Packages, log io.Writer) (Image, error) {
	for _, t := range aptTools {
		if _, err := exec.LookPath(t); err != nil {
			return Image{}, fmt.Errorf("%s not found: the emulated host is built from Debian packages and needs apt and dpkg", t)
		}
	}
	// Asking apt costs about a second per question; the answers change
	// only when the package lists do. The key holds every other input of
	// the image too (/init, the modules), so that a new /init is a new
	// image even while apt's answers stand.
	stamp := aptStamp()
	key := fmt.Sprint(pk, imageFormat, Modules, sha256.Sum256(initScript))
	keyFile := filepath.Join(cacheDir, fmt.Sprintf("resolved-%x", sha256.Sum256([]byte(key))))
	if data, err := os.ReadFile(keyFile); err == nil && stamp != "" {
		if dir, ok := strings.CutPrefix(string(data), stamp+"\n"); ok {
			img := imageIn(filepath.Join(cacheDir, strings.TrimSpace(dir)))
			if exists(img.Kernel) && exists(img.Initrd) {
				return img, nil
			}
		}
	}
	kernel := pk.Kernel
	if kernel == "" {
		var err error
		if kernel, err = kernelPackage(ctx, pk.KernelMeta); err != nil {
			return Image{}, err
		}
	}
	kver, err := candidate(ctx, kernel)
	if err != nil {
		return Image{}, err
	}
	bver, err := candidate(ctx, pk.Busybox)
	if err != nil {
		return Image{}, err
	}
	inputs := fmt.Sprintf("format %s\nkernel %s %s\nbusybox %s %s\nmodules %s\ninit sha256 %x\n",
		imageFormat, kernel, kver, pk.Busybox, bver, strings.Join(Modules, ","), sha256.Sum256(initScript))
	sum := sha256.Sum256([]byte(inputs))
	img := imageIn(filepath.Join(cacheDir, "host-"+hex.EncodeToString(sum[:6])))
	remember := func() {
		if stamp != "" {
			os.WriteFile(keyFile, []byte(stamp+"\n"+filepath.Base(img.Dir)+"\n"), 0o644)
		}
	}
	if exists(img.Kernel) && exists(img.Initrd) {
		remember()
		return img, nil
	}

	fmt.Fprintf(log, "emuhost: building the emulated host from %s %s and %s %s into %s\n", kernel, kver, pk.Busybox, bver, img.Dir)
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return Image{}, err
	}
	tmp, err := os.MkdirTemp(cacheDir, ".build-")
	if err != nil {
		return Image{}, err
	}
	defer os.RemoveAll(tmp)
	root := filepath.Join(tmp, "root")
	for _, p := range [][2]string{{kernel, kver}, {pk.Busybox, bver}} {
		if err := unpack(ctx, tmp, root, p[0], p[1]); err != nil {
			return Image{}, err
		}
	}
	vmlinuz, modDir, err := findKernel(root, kernel)
	if err != nil {
		return Image{}, err
	}
	found, err := initramfs.FindModules(modDir)
	if err != nil {
		return Image{}, err
	}
	order, err := initramfs.WithDependencies(found, Modules)
	if err != nil {
		return Image{}, fmt.Errorf("%s: %w", kernel, err)
	}
	out := filepath.Join(tmp, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		return Image{}, err
	}
	initFile := filepath.Join(tmp, "init")
	if err := os.WriteFile(initFile, initScript, 0o755); err != nil {
		return Image{}, err
	}
	if _, err := initramfs.WriteFile(filepath.Join(out, "host.cpio"), initramfs.Spec{
		Init: initFile, Busybox: filepath.Join(root, "bin", "busybox"), ModulesDir: modDir, Modules: order,
	}); err != nil {
		return Image{}, fmt.Errorf("host initramfs: %w", err)
	}
	// QEMU enters the vmlinux through its PVH note: the bzImage's own
	// decompressor takes seconds under the software CPU, the host's
	// decompressor (package boot) a fraction of one.
	bz, err := os.ReadFile(vmlinuz)
	if err != nil {
		return Image{}, err
	}
	elf, err := boot.Extract(bz)
	if err != nil {
		return Image{}, fmt.Errorf("%s: %w", vmlinuz, err)
	}
	if err := os.WriteFile(filepath.Join(out, "vmlinux"), elf, 0o644); err != nil {
		return Image{}, err
	}
	if err := os.WriteFile(filepath.Join(out, "inputs.txt"), []byte(inputs), 0o644); err != nil {
		return Image{}, err
	}
	os.RemoveAll(img.Dir) // a half-built folder from an interrupted run
	if err := os.Rename(out, img.Dir); err != nil {
		return Image{}, err
	}
	remember()
	// Older images are of no more use: their inputs are gone from apt.
	if old, err := filepath.Glob(filepath.Join(cacheDir, "host-*")); err == nil {
		for _, dir := range old {
			if dir != img.Dir {
				os.RemoveAll(dir)
			}
		}
	}
	return img, nil
}

// imageIn is the image in cache folder dir.
func imageIn(dir string) Image {
	return Image{Dir: dir, Kernel: filepath.Join(dir, "vmlinux"), Initrd: filepath.Join(dir, "host.cpio")}
}

// aptLists are the files whose change means apt may answer differently:
// apt-get update rewrites the lists folder, and rebuilds its binary cache.
var aptLists = []string{"/var/lib/apt/lists", "/var/cache/apt/pkgcache.bin", "/etc/apt/sources.list", "/etc/apt/sources.list.d"}

// aptStamp identifies the state of apt's package lists, or is "" when
// they cannot be read.
func aptStamp() string {
	var b strings.Builder
	for _, name := range aptLists {
		fi, err := os.Stat(name)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				b.WriteString("-;")
				continue
			}
			return ""
		}
		fmt.Fprintf(&b, "%d.%d;", fi.ModTime().UnixNano(), fi.Size())
	}
	return b.String()
}

// kernelPackage returns the first linux-image package meta depends on.
func kernelPackage(ctx context.Context, meta string) (string, error) {
	if _, err := candidate(ctx, meta); err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, "apt-cache", "depends", meta).Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache depends %s: %w", meta, err)
	}
	if pkg := parseKernelDepends(out); pkg != "" {
		return pkg, nil
	}
	return "", fmt.Errorf("%s depends on no linux-image package", meta)
}

// parseKernelDepends returns the first "Depends: linux-image-..." of
// apt-cache depends output.
func parseKernelDepends(out []byte) string {
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
			return f[1]
		}
	}
	return ""
}

// candidate returns the version of pkg that apt would install.
func candidate(ctx context.Context, pkg string) (string, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", "policy", pkg).Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache policy %s: %w", pkg, err)
	}
	if v := parseCandidate(out); v != "" {
		return v, nil
	}
	return "", fmt.Errorf("package %s is not in apt's package lists: run apt-get update (as root)", pkg)
}

// parseCandidate returns the "Candidate:" version of apt-cache policy
// output, or "" when there is none.
func parseCandidate(out []byte) string {
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Candidate:"); ok {
			v = strings.TrimSpace(v)
			if v != "(none)" {
				return v
			}
		}
	}
	return ""
}

// unpack downloads pkg at version into dir and unpacks it under root.
func unpack(ctx context.Context, dir, root, pkg, version string) error {
	cmd := exec.CommandContext(ctx, "apt-get", "-q", "-o", "APT::Sandbox::User=root", "download", pkg+"="+version)
	if os.Geteuid() != 0 {
		cmd.Args = append(cmd.Args[:2], cmd.Args[4:]...)
	}
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get download %s=%s: %w: %s", pkg, version, err, lastLine(out))
	}
	debs, _ := filepath.Glob(filepath.Join(dir, pkg+"_*.deb"))
	if len(debs) != 1 {
		return fmt.Errorf("apt-get download %s: no single .deb in %s", pkg, dir)
	}
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[0], root).CombinedOutput(); err != nil {
		return fmt.Errorf("dpkg-deb -x %s: %w: %s", debs[0], err, lastLine(out))
	}
	return os.Remove(debs[0])
}

// findKernel returns the bzImage and the modules folder of an unpacked
// kernel image package.
func findKernel(root, pkg string) (vmlinuz, modDir string, err error) {
	release := strings.TrimPrefix(pkg, "linux-image-")
	vmlinuz = filepath.Join(root, "boot", "vmlinuz-"+release)
	modDir = filepath.Join(root, "lib", "modules", release)
	if !exists(vmlinuz) {
		return "", "", fmt.Errorf("%s has no boot/vmlinuz-%s", pkg, release)
	}
	if !exists(modDir) {
		return "", "", fmt.Errorf("%s has no lib/modules/%s", pkg, release)
	}
	return vmlinuz, modDir, nil
}

func exists(name string) bool {
	_, err := os.Stat(name)
	return err == nil
}

// lastLine is the last non-empty line of a command's output, for errors.
func lastLine(out []byte) string {
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	if len(lines) == 0 || len(lines[len(lines)-1]) == 0 {
		return "no output"
	}
	return string(lines[len(lines)-1])
}
