package initramfs

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/u-root/u-root/pkg/cpio"
	"github.com/ulikunitz/xz"
)

// fakeModule is enough of a module for the builder: ELF magic and a
// vermagic string.
func fakeModule(name string, depends ...string) []byte {
	return []byte(elfMagic + "\x02\x01\x01 " + name + "\x00depends=" + strings.Join(depends, ",") +
		"\x00vermagic=6.1.0-99-test SMP mod_unload\x00")
}

// fixture is a set of host files for Spec, in a temp dir.
type fixture struct {
	dir     string
	spec    Spec
	modules map[string][]byte // name -> uncompressed content
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{dir: dir, modules: map[string][]byte{}}
	write := func(rel string, data []byte, mode os.FileMode) string {
		p := filepath.Join(dir, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, data, mode))
		return p
	}
	f.spec.Init = write("init", []byte("\x7fELF fake init"), 0o700)
	// A stand-in busybox that answers --list-full like the real one.
	f.spec.Busybox = write("busybox", []byte("#!/bin/sh\n"+
		"printf 'bin/busybox\\nbin/sh\\nbin/ls\\nsbin/poweroff\\nusr/bin/md5sum\\nusr/bin/[[\\nusr/sbin/chroot\\nlinuxrc\\n'\n"), 0o755)
	f.spec.TestScript = write("test.sh", []byte("echo GUEST-TEST\n"), 0o644)

	mods := "lib/modules/6.1.0-99-test/kernel"
	// Through a symlink, as debian-kernel.sh leaves it.
	f.spec.ModulesDir = filepath.Join(dir, "modules")
	require.NoError(t, os.Symlink(filepath.Dir(mods), f.spec.ModulesDir))
	plain := func(name, rel string, depends ...string) {
		f.modules[name] = fakeModule(name, depends...)
		write(filepath.Join(mods, rel), f.modules[name], 0o644)
	}
	compressed := func(name, rel string, wrap func(io.Writer) io.WriteCloser, depends ...string) {
		f.modules[name] = fakeModule(name, depends...)
		var b bytes.Buffer
		w := wrap(&b)
		_, err := w.Write(f.modules[name])
		require.NoError(t, err)
		require.NoError(t, w.Close())
		write(filepath.Join(mods, rel), b.Bytes(), 0o644)
	}
	plain("virtio_ring", "drivers/virtio/virtio_ring.ko")
	// (virtio_ring and virtio precede their users in VirtioModules.)
	compressed("virtio", "drivers/virtio/virtio.ko.xz", func(w io.Writer) io.WriteCloser {
		x, err := xz.NewWriter(w)
		require.NoError(t, err)
		return x
	})
	compressed("virtio_blk", "drivers/block/virtio_blk.ko.zst", func(w io.Writer) io.WriteCloser {
		z, err := zstd.NewWriter(w)
		require.NoError(t, err)
		return z
	}, "virtio", "virtio_ring")
	compressed("failover", "net/core/failover.ko.gz", func(w io.Writer) io.WriteCloser {
		return gzip.NewWriter(w)
	})
	// Signed as Debian's are: stored without its signature by default.
	f.modules["virtio-rng"] = fakeModule("virtio-rng", "virtio", "virtio_ring")
	write(filepath.Join(mods, "drivers/char/hw_random/virtio-rng.ko"), signed(f.modules["virtio-rng"], 512), 0o644)
	plain("unrelated", "fs/unrelated.ko") // not asked for: must not be stored
	write(filepath.Join(mods, "modules.dep"), []byte("ignored\n"), 0o644)
	return f
}

func buildBytes(t *testing.T, s Spec) ([]byte, Result) {
	t.Helper()
	var b bytes.Buffer
	res, err := Build(&b, s)
	require.NoError(t, err)
	return b.Bytes(), res
}

func readBack(t *testing.T, archive []byte) []cpio.Record {
	t.Helper()
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(archive)))
	require.NoError(t, err)
	return recs
}

func content(t *testing.T, r cpio.Record) []byte {
	t.Helper()
	data, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
	require.NoError(t, err)
	return data
}

func TestBuildReadBack(t *testing.T) {
	f := newFixture(t)
	archive, res := buildBytes(t, f.spec)
	assert.Zero(t, len(archive)%4, "newc archives are 4-byte aligned")
	assert.Equal(t, "070701", string(archive[:6]), "newc magic")

	recs := readBack(t, archive)
	byName := map[string]cpio.Record{}
	var names []string
	inos := map[uint64]bool{}
	for _, r := range recs {
		names = append(names, r.Name)
		byName[r.Name] = r
		assert.Zero(t, r.UID, r.Name)
		assert.Zero(t, r.GID, r.Name)
		assert.Zero(t, r.MTime, r.Name)
		assert.False(t, inos[r.Ino], "inode %d of %s reused", r.Ino, r.Name)
		inos[r.Ino] = true
	}
	assert.True(t, sort.StringsAreSorted(names), "entries sorted: %v", names)
	assert.Equal(t, res.Entries, len(recs))

	for _, d := range Dirs {
		r, ok := byName[d]
		if assert.True(t, ok, "directory %s", d) {
			assert.Equal(t, uint64(cpio.S_IFDIR), r.Mode&cpio.S_IFMT, d)
		}
	}
	assert.Equal(t, uint64(cpio.S_IFDIR|0o1777), byName["tmp"].Mode)
	assert.Equal(t, uint64(cpio.S_IFDIR|0o755), byName["bin"].Mode)

	con := byName["dev/console"]
	assert.Equal(t, uint64(cpio.S_IFCHR|0o600), con.Mode)
	assert.Equal(t, [2]uint64{5, 1}, [2]uint64{con.Rmajor, con.Rminor})
	null := byName["dev/null"]
	assert.Equal(t, uint64(cpio.S_IFCHR|0o666), null.Mode)
	assert.Equal(t, [2]uint64{1, 3}, [2]uint64{null.Rmajor, null.Rminor})

	ini := byName["init"]
	assert.Equal(t, uint64(cpio.S_IFREG|0o755), ini.Mode, "init is executable whatever its host mode")
	assert.Equal(t, "\x7fELF fake init", string(content(t, ini)))
	bb := byName["bin/busybox"]
	assert.Equal(t, uint64(cpio.S_IFREG|0o755), bb.Mode)
	ts := byName["test.sh"]
	assert.Equal(t, uint64(cpio.S_IFREG|0o755), ts.Mode)
	assert.Equal(t, "echo GUEST-TEST\n", string(content(t, ts)))

	links := map[string]string{
		"bin/sh":          "busybox",
		"bin/ls":          "busybox",
		"sbin/poweroff":   "../bin/busybox",
		"usr/bin/md5sum":  "../../bin/busybox",
		"usr/bin/[[":      "../../bin/busybox",
		"usr/sbin/chroot": "../../bin/busybox",
	}
	for name, target := range links {
		r, ok := byName[name]
		if assert.True(t, ok, name) {
			assert.Equal(t, uint64(cpio.S_IFLNK|0o777), r.Mode, name)
			assert.Equal(t, target, string(content(t, r)), name)
		}
	}
	assert.Equal(t, len(links), res.Applets)
	assert.NotContains(t, byName, "linuxrc")

	// Modules: decompressed, in VirtioModules order, missing ones skipped.
	wantOrder := []string{"virtio_ring.ko", "virtio.ko", "virtio_blk.ko", "failover.ko", "virtio-rng.ko"}
	assert.Equal(t, wantOrder, res.Modules)
	assert.Equal(t, "6.1.0-99-test", res.Release)
	assert.Contains(t, res.Missing, "virtio_net")
	assert.NotContains(t, byName, "lib/modules/unrelated.ko")
	for _, file := range wantOrder {
		r, ok := byName["lib/modules/"+file]
		if assert.True(t, ok, file) {
			assert.Equal(t, uint64(cpio.S_IFREG|0o644), r.Mode, file)
			name := file[:len(file)-3]
			assert.Equal(t, f.modules[name], content(t, r), file)
		}
	}
	assert.Equal(t, "virtio_ring.ko\nvirtio.ko\nvirtio_blk.ko\nfailover.ko\nvirtio-rng.ko\n",
		string(content(t, byName[LoadOrder])))
	assert.Equal(t, 1, res.Unsigned, "virtio-rng's signature removed")

	s := f.spec
	s.KeepSignatures = true
	archive, res = buildBytes(t, s)
	assert.Zero(t, res.Unsigned)
	for _, r := range readBack(t, archive) {
		if r.Name == "lib/modules/virtio-rng.ko" {
			assert.Equal(t, signed(f.modules["virtio-rng"], 512), content(t, r), "kept signed")
		}
	}
}

func TestBuildMinimal(t *testing.T) {
	f := newFixture(t)
	archive, res := buildBytes(t, Spec{Init: f.spec.Init, MTime: 1700000000})
	recs := readBack(t, archive)
	var names []string
	for _, r := range recs {
		names = append(names, r.Name)
		assert.Equal(t, uint64(1700000000), r.MTime)
	}
	want := append([]string{"dev/console", "dev/null", "init"}, Dirs...)
	sort.Strings(want)
	assert.Equal(t, want, names)
	assert.Zero(t, res.Applets)
	assert.Empty(t, res.Modules)
}

func TestBuildExplicitModulesAndApplets(t *testing.T) {
	f := newFixture(t)
	s := f.spec
	s.Applets = []string{"bin/sh"}
	s.Modules = []string{"virtio_ring", "nonexistent", "virtio"}
	archive, res := buildBytes(t, s)
	assert.Equal(t, []string{"virtio_ring.ko", "virtio.ko"}, res.Modules)
	assert.Equal(t, []string{"nonexistent"}, res.Missing)
	assert.Equal(t, 1, res.Applets)
	n := 0
	for _, r := range readBack(t, archive) {
		if r.Mode&cpio.S_IFMT == cpio.S_IFLNK {
			n++
		}
	}
	assert.Equal(t, 1, n)
}

func TestReproducible(t *testing.T) {
	f := newFixture(t)
	first, _ := buildBytes(t, f.spec)

	// Host timestamps and permissions must not leak into the archive.
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	require.NoError(t, os.Chtimes(f.spec.Init, old, old))
	require.NoError(t, os.Chmod(f.spec.TestScript, 0o600))

	out := filepath.Join(t.TempDir(), "initramfs.cpio")
	_, err := WriteFile(out, f.spec)
	require.NoError(t, err)
	second, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(first, second), "two builds differ")
	fi, err := os.Stat(out)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), fi.Mode().Perm())
}

func TestBuildErrors(t *testing.T) {
	f := newFixture(t)
	_, err := Build(io.Discard, Spec{})
	assert.Error(t, err, "no init")

	s := f.spec
	s.Init = filepath.Join(f.dir, "missing")
	_, err = Build(io.Discard, s)
	assert.Error(t, err)

	s = f.spec
	s.Applets = []string{"bin/sh", "bin/sh"}
	_, err = Build(io.Discard, s)
	assert.Error(t, err, "duplicate entry")

	s = f.spec
	bad := filepath.Join(f.dir, "lib/modules/6.1.0-99-test/kernel/virtio_net.ko")
	require.NoError(t, os.WriteFile(bad, []byte("not elf"), 0o644))
	_, err = Build(io.Discard, s)
	assert.ErrorContains(t, err, "not an ELF module")
}

func TestExtractModules(t *testing.T) {
	f := newFixture(t)
	img := filepath.Join(t.TempDir(), "img.cpio")
	_, err := WriteFile(img, f.spec)
	require.NoError(t, err)

	dir := filepath.Join(t.TempDir(), "mods")
	files, release, err := ExtractModules(img, dir)
	require.NoError(t, err)
	assert.Equal(t, "6.1.0-99-test", release)
	assert.Equal(t, []string{"failover.ko", "virtio-rng.ko", "virtio.ko", "virtio_blk.ko", "virtio_ring.ko"}, files)
	for _, file := range files {
		data, err := os.ReadFile(filepath.Join(dir, file))
		require.NoError(t, err)
		assert.Equal(t, f.modules[file[:len(file)-3]], data)
	}

	// The extracted folder is a module source for the next build.
	s := f.spec
	s.ModulesDir = dir
	_, res := buildBytes(t, s)
	assert.Equal(t, []string{"virtio_ring.ko", "virtio.ko", "virtio_blk.ko", "failover.ko", "virtio-rng.ko"}, res.Modules)
}

func TestDependencyOrder(t *testing.T) {
	f := newFixture(t)
	s := f.spec
	s.Modules = []string{"virtio_ring", "virtio_blk", "virtio"} // virtio_blk needs virtio
	_, err := Build(io.Discard, s)
	assert.ErrorContains(t, err, "module virtio_blk needs virtio")

	s.Modules = []string{"virtio", "virtio_ring", "virtio-rng"}
	_, err = Build(io.Discard, s)
	assert.NoError(t, err)

	assert.Equal(t, []string{"virtio", "virtio_ring"}, Depends([]byte("x\x00depends=virtio,virtio_ring\x00y")))
	assert.Nil(t, Depends([]byte("x\x00depends=\x00y")))
	assert.Nil(t, Depends([]byte("nothing")))
}

func TestVermagic(t *testing.T) {
	assert.Equal(t, "6.1.0-56-cloud-amd64", Vermagic([]byte("x\x00vermagic=6.1.0-56-cloud-amd64 SMP preempt mod_unload modversions \x00y")))
	assert.Equal(t, "", Vermagic([]byte("no modinfo here")))
}

func TestAppletTarget(t *testing.T) {
	for applet, want := range map[string]string{
		"bin/sh": "busybox", "sbin/init": "../bin/busybox",
		"usr/bin/env": "../../bin/busybox", "usr/sbin/ntpd": "../../bin/busybox",
		"linuxrc": "", "bin/busybox": "", "etc/x": "", "bin/../x": "",
	} {
		got, ok := appletTarget(applet)
		assert.Equal(t, want != "", ok, applet)
		assert.Equal(t, want, got, applet)
	}
}

func TestCheckStatic(t *testing.T) {
	f := newFixture(t)
	assert.Error(t, CheckStatic(f.spec.Busybox), "a shell script is not an ELF program")
	assert.Error(t, CheckStatic(filepath.Join(f.dir, "missing")))
	if _, err := os.Stat("/bin/sh"); err == nil {
		// Distributions link /bin/sh dynamically.
		assert.ErrorContains(t, CheckStatic("/bin/sh"), "dynamically linked")
	}
}

func TestBuildFiles(t *testing.T) {
	f := newFixture(t)
	host := filepath.Join(f.dir, "hello")
	require.NoError(t, os.WriteFile(host, []byte("hello program"), 0o700))
	archive, _ := buildBytes(t, Spec{Init: f.spec.Init, Files: []File{
		{Name: "vmtest/bin/hello", Host: host, Mode: 0o755},
		{Name: "vmtest/config.json", Data: []byte(`{"args":["/vmtest/bin/hello"]}`)},
		{Name: "bin/tool", Data: []byte("x"), Mode: 0o755}, // bin exists already
	}})
	got := map[string]cpio.Record{}
	for _, r := range readBack(t, archive) {
		got[r.Name] = r
	}
	tests := []struct {
		name string
		mode uint64
		data string
	}{
		{"vmtest", cpio.S_IFDIR | 0o755, ""},
		{"vmtest/bin", cpio.S_IFDIR | 0o755, ""},
		{"vmtest/bin/hello", cpio.S_IFREG | 0o755, "hello program"},
		{"vmtest/config.json", cpio.S_IFREG | 0o644, `{"args":["/vmtest/bin/hello"]}`},
		{"bin/tool", cpio.S_IFREG | 0o755, "x"},
	}
	for _, tt := range tests {
		r, ok := got[tt.name]
		if !assert.True(t, ok, "%s missing", tt.name) {
			continue
		}
		assert.Equal(t, tt.mode, r.Mode, tt.name)
		if tt.data != "" {
			assert.Equal(t, tt.data, string(content(t, r)), tt.name)
		}
	}
}

func TestBuildFilesErrors(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name string
		file File
		want string
	}{
		{"absolute", File{Name: "/etc/passwd", Data: []byte("x")}, "not a relative path"},
		{"escapes", File{Name: "a/../../x", Data: []byte("x")}, "not a relative path"},
		{"empty", File{Data: []byte("x")}, "not a relative path"},
		{"duplicate", File{Name: "init", Data: []byte("x")}, "added twice"},
		{"parent is a file", File{Name: "init/x", Data: []byte("x")}, "not a directory"},
		{"missing host file", File{Name: "x", Host: filepath.Join(f.dir, "missing")}, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(io.Discard, Spec{Init: f.spec.Init, Files: []File{tt.file}})
			assert.ErrorContains(t, err, tt.want)
		})
	}
}

func TestWithDependencies(t *testing.T) {
	dir := t.TempDir()
	mods := map[string][]string{
		"kvm-amd": {"kvm", "ccp"}, "kvm": {"irqbypass"}, "irqbypass": nil, "ccp": nil,
		"9p": {"9pnet", "netfs"}, "9pnet": nil, "netfs": nil, "loop-a": {"loop_b"}, "loop_b": {"loop-a"},
		"needs-missing": {"absent"},
	}
	found := map[string]string{}
	for name, deps := range mods {
		p := filepath.Join(dir, name+".ko")
		require.NoError(t, os.WriteFile(p, fakeModule(name, deps...), 0o644))
		found[name] = p
	}
	tests := []struct {
		names []string
		want  []string
		err   string
	}{
		{names: []string{"kvm_amd"}, want: []string{"irqbypass", "kvm", "ccp", "kvm-amd"}},
		{names: []string{"kvm_amd", "9p", "kvm"}, want: []string{"irqbypass", "kvm", "ccp", "kvm-amd", "9pnet", "netfs", "9p"}},
		{names: []string{"nope"}, err: "module nope not found"},
		{names: []string{"needs-missing"}, err: "module absent (needed by needs-missing) not found"},
		{names: []string{"loop-a"}, err: "cycle"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.names, ","), func(t *testing.T) {
			got, err := WithDependencies(found, tt.names)
			if tt.err != "" {
				assert.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}
