// Package initramfs builds the small, reproducible initramfs images that
// gvmm's integration tests boot: an uncompressed newc cpio archive holding
// a static /init (guest/init/init.c), optionally busybox with its applet
// links and the /test.sh script, and optionally kernel modules with the
// order /init loads them in.
//
// The archive is uncompressed on purpose: on a kvm_pvm host (the nested KVM
// backend the development machines used to have), a gzip initramfs takes
// over 15 minutes to inflate in the guest. It is reproducible (fixed mtimes, sorted entries, uid/gid 0,
// inode numbers by position) and needs no root: device nodes are written as
// cpio records, never created on the host.
package initramfs

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/u-root/u-root/pkg/cpio"
)

// Dirs are the directories every image has. /lib and /usr are the parents
// that Linux's cpio unpacker needs to exist before their children.
var Dirs = []string{
	"bin", "dev", "etc", "lib", "lib/modules", "proc", "sbin", "sys", "tmp",
	"usr", "usr/bin", "usr/sbin",
}

// VirtioModules are the virtio drivers of a modular kernel (Debian's), in
// the order they must be loaded: each one after those it depends on.
var VirtioModules = []string{
	"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev",
	"virtio_pci", "virtio_mmio", "virtio_blk", "failover", "net_failover",
	"virtio_net", "virtio_console", "virtio_balloon", "virtio-rng",
}

// LoadOrder is where the image lists its modules for /init, one file name
// (relative to /lib/modules) per line.
const LoadOrder = "lib/modules/load-order"

// Spec says what goes into an image. Paths are host paths.
type Spec struct {
	// Init is the program stored as /init (required).
	Init string
	// Busybox is a static busybox stored as /bin/busybox; empty for none.
	Busybox string
	// Applets are the applet paths of Busybox as "busybox --list-full"
	// prints them ("bin/sh", "usr/bin/md5sum"); each becomes a relative
	// symlink to /bin/busybox. Nil means: run Busybox --list-full.
	Applets []string
	// TestScript is stored as /test.sh; empty for none.
	TestScript string
	// ModulesDir is searched (recursively) for the kernel modules named in
	// Modules: a kernel's lib/modules/<release> or any folder of .ko files.
	// Modules may be .ko, .ko.xz, .ko.zst or .ko.gz; they are stored
	// decompressed so the guest needs no decompressor. Empty for none.
	ModulesDir string
	// Modules are module names in load order ("virtio_blk"). Names not
	// found in ModulesDir are skipped and reported. Nil means VirtioModules.
	Modules []string
	// KeepSignatures stores the modules as they are; by default their
	// appended signatures are removed (see StripSignature).
	KeepSignatures bool
	// MTime is the modification time of every entry (seconds since 1970).
	MTime uint64
	// Files are more regular files for the image, such as the programs
	// and configuration of a vmtest guest. Their parent directories are
	// created as needed.
	Files []File
}

// File is one more file of an image.
type File struct {
	// Name is the path in the image, relative and slash separated
	// ("bin/hello").
	Name string
	// Host is the host file to store; Data is used when Host is empty.
	Host string
	Data []byte
	// Mode holds the permission bits (0644 when zero).
	Mode uint64
}

// Result describes a built image.
type Result struct {
	Entries  int      // records in the archive, without the trailer
	Applets  int      // busybox applet links
	Modules  []string // module file names stored, in load order
	Missing  []string // module names not found in ModulesDir
	Release  string   // kernel release the modules were built for ("vermagic"), if any
	Unsigned int      // modules whose signature was removed
}

// Build writes the image described by s to w.
func Build(w io.Writer, s Spec) (Result, error) {
	var res Result
	if s.Init == "" {
		return res, errors.New("initramfs: no init program")
	}
	recs := map[string]cpio.Record{}
	add := func(r cpio.Record) error {
		if _, dup := recs[r.Name]; dup {
			return fmt.Errorf("initramfs: %s added twice", r.Name)
		}
		recs[r.Name] = r
		return nil
	}
	for _, d := range Dirs {
		mode := uint64(0o755)
		if d == "tmp" {
			mode = 0o1777
		}
		if err := add(cpio.Directory(d, mode)); err != nil {
			return res, err
		}
	}
	// /init needs a console before devtmpfs is mounted: the kernel opens
	// /dev/console for it.
	if err := add(cpio.CharDev("dev/console", 0o600, 5, 1)); err != nil {
		return res, err
	}
	if err := add(cpio.CharDev("dev/null", 0o666, 1, 3)); err != nil {
		return res, err
	}
	if err := addFile(add, "init", s.Init, 0o755); err != nil {
		return res, err
	}

	if s.Busybox != "" {
		if err := addFile(add, "bin/busybox", s.Busybox, 0o755); err != nil {
			return res, err
		}
		applets := s.Applets
		if applets == nil {
			var err error
			if applets, err = ListApplets(s.Busybox); err != nil {
				return res, err
			}
		}
		for _, a := range applets {
			target, ok := appletTarget(a)
			if !ok {
				continue
			}
			if err := add(cpio.Symlink(a, target)); err != nil {
				return res, err
			}
			res.Applets++
		}
	}

	if s.TestScript != "" {
		if err := addFile(add, "test.sh", s.TestScript, 0o755); err != nil {
			return res, err
		}
	}

	if s.ModulesDir != "" {
		names := s.Modules
		if names == nil {
			names = VirtioModules
		}
		found, err := FindModules(s.ModulesDir)
		if err != nil {
			return res, err
		}
		var order bytes.Buffer
		loaded := map[string]bool{}
		for _, name := range names {
			src, ok := found[name]
			if !ok {
				res.Missing = append(res.Missing, name)
				continue
			}
			data, err := ReadModule(src)
			if err != nil {
				return res, err
			}
			if res.Release == "" {
				res.Release = Vermagic(data)
			}
			if !s.KeepSignatures {
				stripped, ok, err := StripSignature(data)
				if err != nil {
					return res, fmt.Errorf("initramfs: %s: %w", src, err)
				}
				data = stripped
				if ok {
					res.Unsigned++
				}
			}
			// /init loads in list order and has no modprobe: a module
			// whose dependency is not loaded before it would fail in the
			// guest, minutes into a boot. Fail here instead.
			for _, dep := range Depends(data) {
				if !loaded[modname(dep)] {
					return res, fmt.Errorf("initramfs: module %s needs %s, which is not stored before it", name, dep)
				}
			}
			loaded[modname(name)] = true
			file := name + ".ko"
			if err := add(cpio.StaticRecord(data, cpio.Info{
				Name: "lib/modules/" + file, Mode: cpio.S_IFREG | 0o644,
			})); err != nil {
				return res, err
			}
			order.WriteString(file + "\n")
			res.Modules = append(res.Modules, file)
		}
		if err := add(cpio.StaticRecord(order.Bytes(), cpio.Info{
			Name: LoadOrder, Mode: cpio.S_IFREG | 0o644,
		})); err != nil {
			return res, err
		}
	}

	for _, f := range s.Files {
		if err := addExtra(recs, add, f); err != nil {
			return res, err
		}
	}

	// Sorted by name, every directory comes before what it contains (a
	// parent's name is a prefix of its children's), as the kernel needs.
	names := make([]string, 0, len(recs))
	for n := range recs {
		names = append(names, n)
	}
	sort.Strings(names)
	bw := bufio.NewWriterSize(w, 1<<16)
	cw := cpio.Newc.Writer(bw)
	for i, n := range names {
		r := recs[n]
		r.Ino = uint64(i + 1) // unique: no entry is taken for a hard link
		r.NLink = 1
		if r.Mode&cpio.S_IFMT == cpio.S_IFDIR {
			r.NLink = 2
		}
		r.MTime = s.MTime
		r.UID, r.GID = 0, 0
		if err := cw.WriteRecord(r); err != nil {
			return res, fmt.Errorf("initramfs: %s: %w", n, err)
		}
	}
	if err := cpio.WriteTrailer(cw); err != nil {
		return res, err
	}
	res.Entries = len(names)
	return res, bw.Flush()
}

// WriteFile builds the image into the file name, replacing it atomically.
func WriteFile(name string, s Spec) (Result, error) {
	tmp, err := os.CreateTemp(filepath.Dir(name), ".initramfs-*")
	if err != nil {
		return Result{}, err
	}
	defer os.Remove(tmp.Name())
	res, err := Build(tmp, s)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), name)
	}
	return res, err
}

func addFile(add func(cpio.Record) error, name, host string, perm uint64) error {
	data, err := os.ReadFile(host)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return add(cpio.StaticRecord(data, cpio.Info{Name: name, Mode: cpio.S_IFREG | perm}))
}

// appletTarget returns the relative link target for an applet path printed
// by busybox --list-full, and false for paths outside the usual bin
// directories (such as busybox's "linuxrc").
func appletTarget(applet string) (string, bool) {
	dir := path.Dir(applet)
	if applet != path.Clean(applet) || applet == "bin/busybox" || omittedApplets[applet] {
		return "", false
	}
	switch dir {
	case "bin":
		return "busybox", true
	case "sbin":
		return "../bin/busybox", true
	case "usr/bin", "usr/sbin":
		return "../../bin/busybox", true
	}
	return "", false
}

// omittedApplets are left out on purpose. /sbin/modprobe is the kernel's
// CONFIG_MODPROBE_PATH: with it there, every request_module() in a modular
// kernel (Debian's asks for crypto templates while it loads its X.509
// certificates, for filesystems, for network protocols) forks and execs
// busybox, which takes tens of seconds of emulated kernel code on a nested
// host, before init even runs. /init loads the modules the tests need
// itself, with finit_module(2); without the link, request_module() fails at
// once.
var omittedApplets = map[string]bool{"sbin/modprobe": true}

// ListApplets runs busybox --list-full and returns its lines.
func ListApplets(busybox string) ([]string, error) {
	out, err := exec.Command(busybox, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("initramfs: %s --list-full: %w", busybox, err)
	}
	applets := strings.Fields(string(out))
	if len(applets) == 0 {
		return nil, fmt.Errorf("initramfs: %s --list-full printed nothing", busybox)
	}
	return applets, nil
}

// CheckStatic returns an error unless name is an x86-64 ELF executable that
// needs no dynamic loader: inside the guest there is none.
func CheckStatic(name string) error {
	f, err := elf.Open(name)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("%s: machine %v, want x86-64", name, f.Machine)
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("%s: ELF type %v is not an executable", name, f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s: dynamically linked (has an interpreter)", name)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		return fmt.Errorf("%s: needs shared libraries %v", name, libs)
	}
	return nil
}

// addExtra stores one of Spec.Files, creating its missing parent
// directories.
func addExtra(recs map[string]cpio.Record, add func(cpio.Record) error, f File) error {
	name := path.Clean(f.Name)
	if f.Name == "" || path.IsAbs(name) || name == "." || name == ".." || strings.HasPrefix(name, "../") {
		return fmt.Errorf("initramfs: file name %q is not a relative path inside the image", f.Name)
	}
	for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
		r, ok := recs[dir]
		if !ok {
			if err := add(cpio.Directory(dir, 0o755)); err != nil {
				return err
			}
			continue
		}
		if r.Mode&cpio.S_IFMT != cpio.S_IFDIR {
			return fmt.Errorf("initramfs: %s: parent %s is not a directory", name, dir)
		}
	}
	mode := f.Mode &^ cpio.S_IFMT
	if mode == 0 {
		mode = 0o644
	}
	if f.Host != "" {
		return addFile(add, name, f.Host, mode)
	}
	return add(cpio.StaticRecord(f.Data, cpio.Info{Name: name, Mode: cpio.S_IFREG | mode}))
}
