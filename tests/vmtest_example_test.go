package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gvmm/gvmm/kvm/kvmtest"
	"github.com/gvmm/gvmm/vmtest"
	"github.com/gvmm/gvmm/vmtest/initramfs"
)

// These tests use package vmtest as a CI job would: a shell script in a
// guest, a Go package's tests in a guest, and several VMs at once. They
// need KVM and a kernel (GVMM_KERNEL, or make guest); go test -run
// TestVMTest runs them.

// TestVMTestShellScript runs a shell script as the guest's test: its exit
// status is the verdict.
func TestVMTestShellScript(t *testing.T) {
	tests := []struct {
		name    string
		script  string
		verdict uint32
		expect  string
	}{
		{"passes", "echo \"script says $(echo hi | tr a-z A-Z)\"\ngrep -q console=ttyS0 /proc/cmdline\n", 0, "script says HI"},
		{"fails with 3", "echo about to fail\nexit 3\n", 3, "about to fail"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			img := filepath.Join(t.TempDir(), "initramfs.cpio")
			err := initramfs.Image{
				Busybox: "/bin/busybox",
				Files:   []initramfs.File{{Name: "test.sh", Data: []byte("set -e\n" + tt.script), Mode: 0o755}},
				Run:     []string{"/bin/sh", "/test.sh"},
			}.Build(t.Context(), img)
			require.NoError(t, err)
			start := time.Now()
			vm := vmtest.Start(t, vmtest.WithInitramfs(img), vmtest.WithCmdline("quiet"), vmtest.WithTimeout(5*time.Minute))
			_, err = vm.Console.ExpectString(tt.expect)
			require.NoError(t, err)
			v, err := vm.Wait()
			require.NoError(t, err)
			assert.Equal(t, tt.verdict, v, "the script's exit status")
			if d, ok := vm.Console.InitAfter(); ok {
				t.Logf("/init ran %v after Start; verdict %d after %v", d.Round(time.Millisecond), v, time.Since(start).Round(time.Millisecond))
			}
		})
	}
}

// TestVMTestGoPackage runs the tests of ./vmtestguest in a guest, with a
// u-root command and a program of the package in the image, and brings
// their coverage back.
func TestVMTestGoPackage(t *testing.T) {
	cover := os.Getenv(vmtest.EnvCoverDir)
	if cover == "" {
		cover = t.TempDir()
	}
	vmtest.RunGoTests(t, "./vmtestguest",
		vmtest.WithTestArgs("-test.skip=TestFailsOnPurpose"),
		vmtest.WithImage(initramfs.Image{Commands: []string{
			"github.com/u-root/u-root/cmds/core/ls",
			"./vmtestguest/hello",
		}}),
		vmtest.WithCoverDir(cover, "github.com/gvmm/gvmm/vmtest/guest"),
		vmtest.WithVMOptions(vmtest.WithTimeout(10*time.Minute)),
	)
	if t.Failed() {
		return
	}
	files, err := os.ReadDir(cover)
	require.NoError(t, err)
	var kinds []string
	for _, f := range files {
		kind, _, _ := strings.Cut(f.Name(), ".")
		kinds = append(kinds, kind)
	}
	assert.Contains(t, kinds, "covmeta", "the guest's coverage metadata came back")
	assert.Contains(t, kinds, "covcounters", "the guest's coverage counters came back")
}

// TestVMTestDisk attaches two disks, one read-only, and checks from a
// shell script in the guest that it reads what the host wrote and that
// the read-only one refuses writes; the host then reads what the guest
// wrote.
func TestVMTestDisk(t *testing.T) {
	dir := t.TempDir()
	rw, ro := filepath.Join(dir, "rw.img"), filepath.Join(dir, "ro.img")
	data := make([]byte, 1<<20)
	copy(data[512:], "written by the host")
	require.NoError(t, os.WriteFile(rw, data, 0o644))
	require.NoError(t, os.WriteFile(ro, data[:64<<10], 0o644))
	script := `set -e
test "$(cat /sys/block/vda/size)" = 2048 # 512-byte sectors
test "$(cat /sys/block/vdb/size)" = 128
test "$(cat /sys/block/vdb/ro)" = 1
got=$(dd if=/dev/vda bs=512 skip=1 count=1 2>/dev/null | head -c 19)
test "$got" = "written by the host"
printf 'written by the guest' | dd of=/dev/vda bs=512 seek=2 conv=notrunc 2>/dev/null
sync
if printf x | dd of=/dev/vdb bs=512 conv=notrunc 2>/dev/null; then echo "vdb took a write"; exit 1; fi
echo disks-ok
`
	img := filepath.Join(t.TempDir(), "initramfs.cpio")
	err := initramfs.Image{
		Busybox:    "/bin/busybox",
		ModulesDir: vmtest.GuestFromEnv().Modules, // Debian's kernel has virtio-blk as a module
		Files:      []initramfs.File{{Name: "test.sh", Data: []byte(script), Mode: 0o755}},
		Run:        []string{"/bin/sh", "/test.sh"},
	}.Build(t.Context(), img)
	require.NoError(t, err)
	vm := vmtest.Start(t, vmtest.WithInitramfs(img), vmtest.WithCmdline("quiet"), vmtest.WithTimeout(5*time.Minute),
		vmtest.WithDisk(vmtest.Disk{Path: rw}), vmtest.WithDisk(vmtest.Disk{Path: ro, ReadOnly: true}))
	_, err = vm.Console.ExpectString("disks-ok")
	require.NoError(t, err)
	v, err := vm.Wait()
	require.NoError(t, err)
	require.Zero(t, v, "the script's exit status")
	got, err := os.ReadFile(rw)
	require.NoError(t, err)
	assert.Equal(t, "written by the guest", string(got[1024:1044]))
	after, err := os.ReadFile(ro)
	require.NoError(t, err)
	assert.Equal(t, data[:64<<10], after, "the read-only disk is unchanged")
}

// envChild makes TestChildGuestFailure run: TestVMTestGuestFailure sets it
// for the copy of this test binary it starts.
const envChild = "GVMM_VMTEST_EXAMPLE_CHILD"

// TestVMTestGuestFailure checks that a guest test that fails is reported
// as a failure: a failing test cannot be run in this process without
// failing this test, so it runs TestChildGuestFailure in a copy of the
// test binary and reads its verdict.
func TestVMTestGuestFailure(t *testing.T) {
	if vmtest.GuestFromEnv().Kernel == "" {
		t.Skipf("%s set %s or run `make guest`", vmtest.SkipNoKernel, vmtest.EnvKernel)
	}
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestChildGuestFailure$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), envChild+"=1")
	if os.Getenv(vmtest.EnvPrebuild) == "1" {
		// Only build the child's guest image, for a later run with KVM.
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		t.Skipf("%s the child's image is built", vmtest.SkipPrebuild)
	}
	kvmtest.SkipIfUnavailable(t)
	out, err := cmd.CombinedOutput()
	text := string(out)
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "the child test binary must fail:\n%s", text)
	assert.Equal(t, 1, ee.ExitCode())
	for _, want := range []string{
		"--- FAIL: TestChildGuestFailure/TestFailsOnPurpose",
		"failing on purpose: 1 != 2",
		"about to fail on purpose",
		"--- PASS: TestChildGuestFailure/TestInGuest",
		"--- FAIL: TestChildGuestFailure ",
	} {
		assert.Contains(t, text, want)
	}
	assert.NotContains(t, text, "did not finish")
	assert.NotContains(t, text, "though", "the verdict agrees with the results")
	if t.Failed() {
		t.Logf("child output:\n%s", text)
	}
}

// TestChildGuestFailure runs a guest test that fails. It does something
// only in the child process TestVMTestGuestFailure starts (and passes
// trivially elsewhere, so that go test ./... stays green).
func TestChildGuestFailure(t *testing.T) {
	if os.Getenv(envChild) != "1" {
		return
	}
	vmtest.RunGoTests(t, "./vmtestguest", vmtest.WithTestArgs("-test.run=^(TestInGuest|TestFailsOnPurpose)$"))
}

// TestVMTestParallel boots several VMs in one test process at once
// (GVMM_VMTEST_PARALLEL, default 8); go test's -test.parallel bounds how
// many run together (GOMAXPROCS by default).
func TestVMTestParallel(t *testing.T) {
	n := 8
	if s := os.Getenv("GVMM_VMTEST_PARALLEL"); s != "" {
		_, err := fmt.Sscan(s, &n)
		require.NoError(t, err, "GVMM_VMTEST_PARALLEL")
	}
	opts := []vmtest.Option{vmtest.WithCmdline("initexit=testexit", "quiet"), vmtest.WithTimeout(10 * time.Minute)}
	if g := vmtest.GuestFromEnv(); g.Initramfs != "" && g.Modules == "" {
		if min := filepath.Join(filepath.Dir(g.Initramfs), "initramfs-min.cpio"); fileExists(min) {
			opts = append(opts, vmtest.WithInitramfs(min))
		}
	}
	start := time.Now()
	var mu sync.Mutex
	var times []string
	t.Cleanup(func() {
		t.Logf("%d VMs in %v (-test.parallel %s): %s", n, time.Since(start).Round(time.Millisecond),
			lookupFlag("test.parallel"), strings.Join(times, ", "))
	})
	for i := 0; i < n; i++ {
		t.Run(fmt.Sprint("vm", i), func(t *testing.T) {
			t.Parallel()
			vm := vmtest.Start(t, opts...)
			_, err := vm.Console.ExpectString("GUEST-BOOT-OK")
			require.NoError(t, err)
			v, err := vm.Wait()
			require.NoError(t, err)
			assert.Zero(t, v)
			mu.Lock()
			times = append(times, time.Since(start).Round(time.Millisecond).String())
			mu.Unlock()
		})
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func lookupFlag(name string) string {
	for i, a := range os.Args {
		if strings.HasPrefix(a, "-"+name+"=") {
			return strings.TrimPrefix(a, "-"+name+"=")
		}
		if a == "-"+name && i+1 < len(os.Args) {
			return os.Args[i+1]
		}
	}
	return "default"
}
