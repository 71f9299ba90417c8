package vmtest

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gvmm/gvmm/kvm/kvmtest"
	"github.com/gvmm/gvmm/machine"
)

// The guests of these tests are `make guest`'s: /init (guest/init/init.c)
// prints GUEST- lines and ends as initexit= says; test=shell gives a
// busybox shell first.

// minimal returns the options for the smallest guest: /init alone, when
// make guest built it next to the kernel.
func minimal() []Option {
	g := GuestFromEnv()
	if g.Initramfs == "" {
		return nil
	}
	min := filepath.Join(filepath.Dir(g.Initramfs), "initramfs-min.cpio")
	if _, err := os.Stat(min); err != nil || g.Modules != "" {
		return nil
	}
	return []Option{WithInitramfs(min)}
}

func TestBootVerdict(t *testing.T) {
	t.Parallel()
	vm := Start(t, append(minimal(), WithCmdline("initexit=testexit=7"), WithTimeout(5*time.Minute))...)
	before, err := vm.Console.ExpectString("GUEST-BOOT-OK")
	require.NoError(t, err)
	assert.Contains(t, before, "Linux version", "the kernel's log comes before /init's first line")
	m, err := vm.Console.ExpectRegexp(regexp.MustCompile(`GUEST-NPROC (\d+)`))
	require.NoError(t, err)
	assert.Equal(t, "1", m.Groups[1])
	v, err := vm.Wait()
	require.NoError(t, err)
	assert.Equal(t, uint32(7), v, "the value /init wrote to the test-exit port")
	res := vm.Result()
	require.NotNil(t, res)
	assert.Equal(t, machine.TestExit, res.Outcome)
	t.Logf("boot to verdict: %v", res.Ended.Sub(vm.started).Round(time.Millisecond))
}

func TestShellOverConsole(t *testing.T) {
	t.Parallel()
	vm := Start(t, WithCmdline("initexit=testexit", "test=shell"), WithTimeout(5*time.Minute))
	_, err := vm.Console.ExpectString("/ # ")
	require.NoError(t, err)
	_, err = fmt.Fprintf(vm.Console, "echo sum=$((40+2))\n")
	require.NoError(t, err)
	m, err := vm.Console.ExpectRegexp(regexp.MustCompile(`sum=(\d+)\r?\n`))
	require.NoError(t, err)
	assert.Equal(t, "42", m.Groups[1])
	_, err = fmt.Fprintf(vm.Console, "exit\n")
	require.NoError(t, err)
	v, err := vm.Wait()
	require.NoError(t, err)
	assert.Zero(t, v)
	_, err = vm.Console.Write([]byte("late\n"))
	assert.Error(t, err, "writing to an ended VM")
}

func TestKill(t *testing.T) {
	t.Parallel()
	vm := Start(t, WithCmdline("test=shell"))
	_, err := vm.Console.ExpectString("/ # ")
	require.NoError(t, err)
	start := time.Now()
	vm.Kill()
	assert.Less(t, time.Since(start), 30*time.Second)
	_, err = vm.Wait()
	var ee *ExitError
	require.ErrorAs(t, err, &ee)
	assert.ErrorIs(t, err, ErrKilled)
	assert.Equal(t, machine.Stopped, ee.Outcome)
	assert.Contains(t, err.Error(), "the VM was stopped: killed")
	vm.Kill() // twice is fine
}

// TestBadInput checks that each kind of bad input or bad guest fails the
// test with a clear message (and the console in the log), never a hang.
func TestBadInput(t *testing.T) {
	kvmtest.SkipIfUnavailable(t)
	if GuestFromEnv().Kernel == "" {
		t.Skipf("%s set %s or run `make guest`", SkipNoKernel, EnvKernel)
	}
	notKernel := filepath.Join(t.TempDir(), "vmlinux")
	require.NoError(t, os.WriteFile(notKernel, []byte("not a kernel"), 0o644))
	tests := []struct {
		name      string
		opts      []Option
		run       func(tb testing.TB, vm *VM)
		wantFatal string // in the Fatalf message
		wantErr   string // in the error the run reported
		logged    bool   // the console went to the log
		shell     bool   // needs the image with busybox
	}{
		{name: "missing kernel", opts: []Option{WithKernel("/nonexistent/vmlinux")},
			wantFatal: "kernel: stat /nonexistent/vmlinux: no such file or directory (set GVMM_KERNEL"},
		{name: "missing initramfs", opts: []Option{WithInitramfs("/nonexistent/initramfs.cpio")},
			wantFatal: "initramfs: stat /nonexistent/initramfs.cpio: no such file or directory"},
		{name: "not a kernel", opts: []Option{WithKernel(notKernel)}, wantFatal: "kernel " + notKernel},
		{name: "missing disk", opts: []Option{WithDisk(Disk{Path: "/nonexistent/disk.img"})}, wantFatal: "/nonexistent/disk.img"},
		{name: "expected string never comes", opts: []Option{WithCmdline("test=shell"), WithExpectTimeout(3 * time.Second)}, shell: true,
			run: func(tb testing.TB, vm *VM) {
				if _, err := vm.Console.ExpectStringTimeout("/ # ", 5*time.Minute); err != nil {
					tb.Fatal(err)
				}
				if _, err := vm.Console.ExpectString("never printed"); err != nil {
					tb.Error(err)
				}
			},
			wantErr: `"never printed" not on the console after 3s; last lines:`, logged: true},
		{name: "guest runs past the timeout", opts: []Option{WithCmdline("test=shell"), WithTimeout(20 * time.Second)}, shell: true,
			run:     waitErr,
			wantErr: "the VM timed out after 20s", logged: true},
		{name: "kernel panics", opts: []Option{WithCmdline("rdinit=/nonexistent")}, run: waitErr,
			wantErr: "the guest kernel panicked (Kernel panic - not syncing: VFS: Unable to mount root fs", logged: true},
		{name: "guest resets", opts: []Option{WithCmdline("initexit=reboot")}, run: waitErr,
			wantErr: "the guest reset (", logged: true},
		{name: "guest powers off", opts: []Option{WithCmdline("initexit=poweroff")}, run: waitErr,
			wantErr: "the guest powered off (ACPI S5) without a verdict", logged: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := record(t, func(tb testing.TB) {
				opts := tt.opts
				if !tt.shell {
					opts = append(minimal(), opts...)
				}
				vm := Start(tb, opts...)
				if tt.run != nil {
					tt.run(tb, vm)
				}
			})
			assert.True(t, r.failed, "the test failed")
			if tt.wantFatal != "" {
				assert.Contains(t, r.fatal, tt.wantFatal)
			}
			if tt.wantErr != "" {
				require.Len(t, r.errs, 1, "fatal: %s", r.fatal)
				if !assert.Contains(t, r.errs[0], tt.wantErr) {
					t.Log(r.log())
				}
			}
			if tt.logged {
				assert.Contains(t, r.log(), "serial console (ended: ", "the whole console is logged")
				assert.Contains(t, r.log(), "Linux version", "the whole console is logged")
			}
		})
	}
}

// waitErr reports Wait's error; a verdict is not expected.
func waitErr(tb testing.TB, vm *VM) {
	v, err := vm.Wait()
	if err == nil {
		tb.Fatalf("verdict %d, want an error", v)
	}
	tb.Error(err)
}

func TestNoKernelSkips(t *testing.T) {
	kvmtest.SkipIfUnavailable(t)
	t.Setenv(EnvKernel, "")
	t.Setenv(EnvGuestDir, "")
	t.Chdir(t.TempDir())
	r := record(t, func(tb testing.TB) { Start(tb) })
	assert.False(t, r.failed)
	assert.Equal(t, "vmtest: no kernel: set GVMM_KERNEL (and GVMM_INITRAMFS, GVMM_CMDLINE) or run `make guest`", r.skip)
}
