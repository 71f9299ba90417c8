package initramfs

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"
	"github.com/ulikunitz/xz"
)

// moduleSuffixes are the file name endings of kernel modules, compressed or
// not, as distributions ship them.
var moduleSuffixes = []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"}

// moduleName returns "virtio_blk" for "virtio_blk.ko.xz", or false.
func moduleName(file string) (string, bool) {
	for _, s := range moduleSuffixes {
		if strings.HasSuffix(file, s) && len(file) > len(s) {
			return strings.TrimSuffix(file, s), true
		}
	}
	return "", false
}

// FindModules walks dir (which may be a symlink) and maps each module name
// to its file. When a name occurs twice, the first path in lexical order
// wins.
func FindModules(dir string) (map[string]string, error) {
	found := map[string]string{}
	dir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, fmt.Errorf("initramfs: modules: %w", err)
	}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if name, ok := moduleName(d.Name()); ok {
			if _, seen := found[name]; !seen {
				found[name] = p
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("initramfs: modules: %w", err)
	}
	return found, nil
}

// ReadModule returns the module in file, decompressed according to its
// name, and checks that it is an ELF object.
func ReadModule(file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	defer f.Close()
	var r io.Reader = f
	switch {
	case strings.HasSuffix(file, ".xz"):
		if r, err = xz.NewReader(f); err != nil {
			return nil, fmt.Errorf("initramfs: %s: %w", file, err)
		}
	case strings.HasSuffix(file, ".zst"):
		d, err := zstd.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("initramfs: %s: %w", file, err)
		}
		defer d.Close()
		r = d
	case strings.HasSuffix(file, ".gz"):
		z, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("initramfs: %s: %w", file, err)
		}
		r = z
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("initramfs: %s: %w", file, err)
	}
	if !bytes.HasPrefix(data, []byte(elfMagic)) {
		return nil, fmt.Errorf("initramfs: %s: not an ELF module", file)
	}
	return data, nil
}

const elfMagic = "\x7fELF"

// Depends returns the modules a module needs loaded first, from its
// "depends=" modinfo string (module names, with underscores).
func Depends(module []byte) []string {
	i := bytes.Index(module, []byte("\x00depends="))
	if i < 0 {
		return nil
	}
	v := module[i+len("\x00depends="):]
	if j := bytes.IndexByte(v, 0); j >= 0 {
		v = v[:j]
	}
	if len(v) == 0 {
		return nil
	}
	return strings.Split(string(v), ",")
}

// modname is the kernel's name for a module file name: dashes become
// underscores ("virtio-rng" is module virtio_rng).
func modname(name string) string { return strings.ReplaceAll(name, "-", "_") }

// Vermagic returns the kernel release a module was built for, from its
// "vermagic=" modinfo string, or "".
func Vermagic(module []byte) string {
	i := bytes.Index(module, []byte("\x00vermagic="))
	if i < 0 {
		return ""
	}
	v := module[i+len("\x00vermagic="):]
	if j := bytes.IndexAny(v, " \x00"); j >= 0 {
		v = v[:j]
	}
	return string(v)
}

// ExtractModules copies every kernel module (*.ko) stored in the newc
// archive src into the folder dir, flat, and returns their file names and
// the kernel release of the first one. It lets an existing image (such as
// the shared cache's initramfs-debian-cloud.cpio) stand in for the kernel
// package its modules came from.
func ExtractModules(src, dir string) (files []string, release string, err error) {
	f, err := os.Open(src)
	if err != nil {
		return nil, "", fmt.Errorf("initramfs: %w", err)
	}
	defer f.Close()
	rr, err := cpio.Newc.NewFileReader(f)
	if err != nil {
		return nil, "", fmt.Errorf("initramfs: %s: %w", src, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", err
	}
	err = cpio.ForEachRecord(rr, func(r cpio.Record) error {
		base := path.Base(r.Name)
		if r.Mode&cpio.S_IFMT != cpio.S_IFREG || !strings.HasSuffix(base, ".ko") {
			return nil
		}
		data, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
		if err != nil {
			return err
		}
		if !bytes.HasPrefix(data, []byte(elfMagic)) {
			return fmt.Errorf("%s: not an ELF module", r.Name)
		}
		if release == "" {
			release = Vermagic(data)
		}
		files = append(files, base)
		return os.WriteFile(filepath.Join(dir, base), data, 0o644)
	})
	if err != nil {
		return nil, "", fmt.Errorf("initramfs: %s: %w", src, err)
	}
	sort.Strings(files)
	return files, release, nil
}

// WithDependencies returns the modules named in names (with dashes or
// underscores) and every module they need, transitively, in an order that
// loads each after its dependencies: the order Spec.Modules wants. found
// maps module file names to files, as FindModules returns it. A module that
// is not in found is an error naming who needed it.
func WithDependencies(found map[string]string, names []string) ([]string, error) {
	byName := make(map[string]string, len(found)) // kernel name -> file name
	for file := range found {
		byName[modname(file)] = file
	}
	var order []string
	state := map[string]int{} // 1: visiting, 2: done
	var visit func(name, neededBy string) error
	visit = func(name, neededBy string) error {
		file, ok := byName[modname(name)]
		if !ok {
			if neededBy != "" {
				return fmt.Errorf("initramfs: module %s (needed by %s) not found", name, neededBy)
			}
			return fmt.Errorf("initramfs: module %s not found", name)
		}
		switch state[file] {
		case 1:
			return fmt.Errorf("initramfs: modules depend on each other in a cycle through %s", file)
		case 2:
			return nil
		}
		state[file] = 1
		data, err := ReadModule(found[file])
		if err != nil {
			return err
		}
		for _, dep := range Depends(data) {
			if err := visit(dep, file); err != nil {
				return err
			}
		}
		state[file] = 2
		order = append(order, file)
		return nil
	}
	for _, n := range names {
		if err := visit(n, ""); err != nil {
			return nil, err
		}
	}
	return order, nil
}
