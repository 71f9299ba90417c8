package initramfs

import (
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	initOnce sync.Once
	initDir  string
	initBin  string
	initErr  error
	initMsg  []byte
)

func TestMain(m *testing.M) {
	code := m.Run()
	if initDir != "" {
		os.RemoveAll(initDir)
	}
	os.Exit(code)
}

// buildInit compiles guest/init/init.c with guest/init/build.sh, the same
// way guest.mk does (once per test binary), or skips the test without gcc.
func buildInit(t *testing.T) string {
	t.Helper()
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "gcc"
	}
	if _, err := exec.LookPath(cc); err != nil {
		t.Skipf("no C compiler (%s) to build guest/init/init.c: apt-get install gcc", cc)
	}
	initOnce.Do(func() {
		if initDir, initErr = os.MkdirTemp("", "gvmm-init-"); initErr != nil {
			return
		}
		initBin = filepath.Join(initDir, "init")
		initMsg, initErr = exec.Command("sh", "../init/build.sh", initBin).CombinedOutput()
	})
	require.NoError(t, initErr, "build.sh: %s", initMsg)
	assert.Empty(t, strings.TrimSpace(string(initMsg)), "compiler warnings")
	return initBin
}

func TestInitBinary(t *testing.T) {
	bin := buildInit(t)
	require.NoError(t, CheckStatic(bin))

	fi, err := os.Stat(bin)
	require.NoError(t, err)
	assert.Less(t, fi.Size(), int64(16<<10), "init should stay tiny: every page is a slow fault in the guest")

	f, err := elf.Open(bin)
	require.NoError(t, err)
	defer f.Close()
	assert.Equal(t, elf.ET_EXEC, f.Type, "not position independent: nothing to relocate")
	assert.Equal(t, elf.EM_X86_64, f.Machine)
	var loads int
	entryOK := false
	for _, p := range f.Progs {
		assert.NotEqual(t, elf.PT_INTERP, p.Type, "no dynamic loader")
		assert.NotEqual(t, elf.PT_DYNAMIC, p.Type, "no dynamic section")
		assert.NotEqual(t, elf.PT_TLS, p.Type, "no thread-local storage")
		if p.Type == elf.PT_LOAD {
			loads++
			if p.Flags&elf.PF_X != 0 && f.Entry >= p.Vaddr && f.Entry < p.Vaddr+p.Memsz {
				entryOK = true
			}
		}
	}
	assert.LessOrEqual(t, loads, 2, "code and data segments only")
	assert.True(t, entryOK, "entry point %#x in an executable segment", f.Entry)
	// Every page the guest touches costs a fault in emulated kernel code.
	var mem uint64
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD {
			mem += p.Memsz
		}
	}
	assert.Less(t, mem, uint64(4*4096), "loaded size")
}

// sandbox runs the compiled init in a chroot of host files, as a process
// with no privilege at all in the host's namespaces: as user nobody when the
// test runs as root, inside a new user namespace (unshare --user) with its
// own mount namespace. There, mount(2) of proc, sysfs and devtmpfs,
// finit_module(2), ioperm(2) and reboot(2) all fail with EPERM: the pid and
// network namespaces belong to the host's user namespace, in which the
// process has no capabilities. So init reads the fake /proc and /sys files
// of the chroot, reports every failure, and finally exits (reboot having
// returned) with its verdict as exit status. If unshare cannot create the
// namespace it fails before running init.
func sandbox(t *testing.T, root string, args ...string) (string, int) {
	t.Helper()
	for _, tool := range []string{"unshare", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s (util-linux)", tool)
		}
	}
	base := []string{"unshare", "--user", "--map-root-user", "--mount"}
	if os.Geteuid() == 0 {
		base = append([]string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--"}, base...)
	}
	probe := exec.Command(base[0], append(base[1:], "true")...)
	if msg, err := probe.CombinedOutput(); err != nil {
		t.Skipf("cannot create an unprivileged user namespace: %v %s", err, msg)
	}
	argv := append(append(base, "--root="+root, "/init"), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = "/"
	out, err := cmd.Output()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return string(out), code
}

// fakeRoot lays out a chroot with /init and the files init reads.
func fakeRoot(t *testing.T, bin string, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	require.NoError(t, os.Chmod(root, 0o755))
	data, err := os.ReadFile(bin)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(root, "init"), data, 0o755))
	for _, d := range Dirs {
		require.NoError(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	for name, content := range files {
		p := filepath.Join(root, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	}
	// t.TempDir parents are private to the test user; nobody must reach root.
	for d := root; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		require.NoError(t, os.Chmod(d, 0o755))
	}
	return root
}

func TestInitContract(t *testing.T) {
	bin := buildInit(t)
	release, err := os.ReadFile("/proc/sys/kernel/osrelease")
	require.NoError(t, err)
	cmdline := "console=ttyS0 noxsave test=blk,net initexit=testexit=7 quiet"
	root := fakeRoot(t, bin, map[string]string{
		"proc/cmdline":                  cmdline + "\n",
		"proc/meminfo":                  "MemTotal:         245572 kB\nMemFree:          200000 kB\n",
		"proc/uptime":                   "193.52 180.11\n",
		"sys/devices/system/cpu/online": "0-3,5\n",
		"lib/modules/load-order":        "virtio_ring.ko\n# a comment\n\nmissing.ko\n",
		"lib/modules/virtio_ring.ko":    "\x7fELF",
	})
	out, code := sandbox(t, root)
	t.Logf("init printed:\n%s", out)

	// Each line is a regular expression. Where the errno depends on the
	// host kernel, EPERM (1) and ENOSYS (38: no modules, no ioperm) both do.
	want := []string{
		"GUEST-PANIC mount /proc errno=1",
		"GUEST-PANIC mount /sys errno=1",
		"GUEST-PANIC mount /dev errno=1",
		"GUEST-BOOT-OK",
		"GUEST-INSMOD-FAIL virtio_ring.ko (1|38)",
		"GUEST-INSMOD-FAIL missing.ko 2", // ENOENT
		"GUEST-MODULES 0",
		"GUEST-KERNEL " + regexp.QuoteMeta(strings.TrimSpace(string(release))),
		"GUEST-NPROC 5",
		"GUEST-MEM MemTotal: 245572 kB",
		"GUEST-CMDLINE " + cmdline,
		"GUEST-UPTIME 193.52",
		// test= given, but this root has no busybox.
		"GUEST-PANIC exec /bin/busybox sh /test.sh errno=2",
		"GUEST-VERDICT 35", // mount 1 | module 2 | exec 32
		"GUEST-EXIT testexit=7",
		// No /dev/port in this root (not worth a line), and no ioperm.
		"GUEST-PANIC ioperm errno=(1|38)",
		"GUEST-PANIC testexit: port 0xf4 did not stop the VM",
		"GUEST-PANIC reboot returned",
	}
	got := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if assert.Len(t, got, len(want)) {
		for i, w := range want {
			assert.Regexp(t, "^"+w+"$", got[i])
		}
	}
	assert.Equal(t, 35, code, "init exits with its verdict once reboot has failed")
}

func TestInitExitStep(t *testing.T) {
	bin := buildInit(t)
	root := fakeRoot(t, bin, map[string]string{
		"proc/cmdline": "console=ttyS0 test=blk initexit=halt\n",
		"proc/uptime":  "501.07 400.00\n",
	})
	// What test.sh runs at its end.
	out, code := sandbox(t, root, "--exit", "8")
	assert.Equal(t, "GUEST-UPTIME 501.07\nGUEST-VERDICT 8\nGUEST-EXIT halt\nGUEST-PANIC reboot returned\n", out)
	assert.Equal(t, 8, code)

	root = fakeRoot(t, bin, map[string]string{
		"proc/cmdline": "initexit=sideways\n",
		"proc/uptime":  "1.00 1.00\n",
	})
	out, _ = sandbox(t, root, "--exit", "0")
	assert.Contains(t, out, "GUEST-EXIT sideways\nGUEST-PANIC unknown initexit=sideways, powering off\n")
}

func TestInitDefaults(t *testing.T) {
	bin := buildInit(t)
	root := fakeRoot(t, bin, map[string]string{
		"proc/cmdline":                  "console=ttyS0",
		"proc/meminfo":                  "MemTotal: 1 kB\n",
		"proc/uptime":                   "2.5 1.0\n",
		"sys/devices/system/cpu/online": "0\n",
	})
	out, _ := sandbox(t, root)
	assert.Contains(t, out, "\nGUEST-NPROC 1\nGUEST-MEM MemTotal: 1 kB\nGUEST-CMDLINE console=ttyS0\nGUEST-UPTIME 2.5\n")
	assert.Contains(t, out, "\nGUEST-EXIT poweroff\n", "poweroff is the default exit")
	assert.NotContains(t, out, "INSMOD", "no load-order, no modules")
	assert.Regexp(t, regexp.MustCompile(`GUEST-VERDICT 1\n`), out, "only the mounts failed")
}

// TestInitTestScript runs the whole slow path: /init execs busybox sh
// /test.sh, which hands back with /init --exit. It needs the static busybox
// that "make guest" leaves in the cache ($GUEST_DIR, default
// .cache/guest), and is skipped without it.
func TestInitTestScript(t *testing.T) {
	bin := buildInit(t)
	dir := os.Getenv("GUEST_DIR")
	if dir == "" {
		dir = "../../.cache/guest"
	}
	busybox := filepath.Join(dir, "busybox")
	if err := CheckStatic(busybox); err != nil {
		t.Skipf("no static busybox from 'make guest': %v", err)
	}
	bb, err := os.ReadFile(busybox)
	require.NoError(t, err)
	script, err := os.ReadFile("../init/test.sh")
	require.NoError(t, err)
	root := fakeRoot(t, bin, map[string]string{
		"proc/cmdline":                  "console=ttyS0 test=virtio,nope initexit=reboot\n",
		"proc/meminfo":                  "MemTotal: 1000 kB\n",
		"proc/uptime":                   "3.14 1.00\n",
		"sys/devices/system/cpu/online": "0-1\n",
		// A fake virtio device in the fake sysfs (no driver bound).
		"sys/bus/virtio/devices/virtio0/device": "0x0002\n",
		"sys/bus/virtio/devices/virtio0/vendor": "0x1af4\n",
		"test.sh":                               string(script),
	})
	require.NoError(t, os.WriteFile(filepath.Join(root, "bin/busybox"), bb, 0o755))
	// The applet links the script calls without the busybox prefix.
	for _, a := range []string{"bin/sh", "bin/readlink", "bin/sleep"} {
		require.NoError(t, os.Symlink("busybox", filepath.Join(root, a)))
	}

	out, code := sandbox(t, root)
	t.Logf("init printed:\n%s", out)
	assert.Contains(t, out, "GUEST-UPTIME 3.14\n"+
		"GUEST-VIRTIO virtio0 device=0x0002 vendor=0x1af4 driver=none\n"+
		"GUEST-TEST-UNKNOWN nope\n"+
		"GUEST-UPTIME 3.14\n"+
		"GUEST-VERDICT 17\n"+ // mounts 1 (from /init, via GUEST_VERDICT) | unknown test 16
		"GUEST-EXIT reboot\n"+
		"GUEST-PANIC reboot returned\n")
	assert.Equal(t, 17, code)
}
