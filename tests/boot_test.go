package tests

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gvmm/gvmm/kvm/kvmtest"
	"github.com/gvmm/gvmm/machine"
	"github.com/gvmm/gvmm/memory"
)

// bootCase is one Linux boot and what it must show.
type bootCase struct {
	name   string
	kernel string // file name in the guest directory
	initrd string
	cpus   int
	memory uint64
	// initexit picks the guest's last step: "poweroff" (gvmm exits 0) or
	// "testexit" (the verdict goes to port 0xF4; gvmm exits (v<<1)|1).
	initexit string
	// cli runs the gvmm binary instead of the machine package, to check
	// the command line, its exit status and its peak RSS.
	cli bool
	// shell boots to a busybox shell (test=shell) and types a command into
	// the console: input reaches the guest, and its answer comes back.
	shell bool
}

const (
	ciKernel     = "vmlinux-ci"
	debianKernel = "vmlinuz-debian-cloud"
)

// bootCases is the boot matrix: both kernels, 1, 2 and 4 vCPUs, RAM above
// 4 GiB, the busybox shell over the console, both ways of ending (ACPI
// power off, and the test-exit port with the guest's verdict), through the
// Go API and through the gvmm binary. In the emulated KVM host each boot
// takes seconds, so CI runs all of them (GVMM_BOOT_TESTS=ci or all).
// Longest first: go test runs as many parallel subtests as there are CPUs.
var bootCases = []bootCase{
	{name: "debian-2cpu-4608M-cli", kernel: debianKernel, initrd: "initramfs-debian-cloud.cpio", cpus: 2, memory: 4608 << 20,
		initexit: "poweroff", cli: true},
	{name: "debian-4cpu-2G", kernel: debianKernel, initrd: "initramfs-debian-cloud.cpio", cpus: 4, memory: 2 << 30,
		initexit: "testexit"},
	{name: "debian-1cpu-1G", kernel: debianKernel, initrd: "initramfs-debian-cloud.cpio", cpus: 1, memory: 1 << 30,
		initexit: "testexit"},
	{name: "debian-shell-1cpu-512M", kernel: debianKernel, initrd: "initramfs-debian-cloud.cpio", cpus: 1, memory: 512 << 20,
		initexit: "poweroff", shell: true},
	{name: "ci-4cpu-1G", kernel: ciKernel, initrd: "initramfs-min.cpio", cpus: 4, memory: 1 << 30,
		initexit: "testexit"},
	{name: "ci-2cpu-4608M", kernel: ciKernel, initrd: "initramfs-min.cpio", cpus: 2, memory: 4608 << 20,
		initexit: "poweroff"},
	{name: "ci-1cpu-256M-cli", kernel: ciKernel, initrd: "initramfs-min.cpio", cpus: 1, memory: 256 << 20,
		initexit: "testexit", cli: true},
	{name: "ci-shell-1cpu-256M", kernel: ciKernel, initrd: "initramfs.cpio", cpus: 1, memory: 256 << 20,
		initexit: "poweroff", shell: true},
}

// bootTimeout bounds one boot. Hosts that emulate guest kernel code
// (kvm_pvm) take 1.5 to 21 minutes per boot (docs/nested-kvm.md); hardware
// KVM and the emulated KVM host take seconds.
func bootTimeout(c bootCase) time.Duration {
	if _, err := os.Stat("/sys/module/kvm_pvm"); err == nil {
		if c.kernel == debianKernel {
			return 120 * time.Minute
		}
		return 40 * time.Minute
	}
	return 5 * time.Minute
}

func guestDir() string {
	if d := os.Getenv("GUEST_DIR"); d != "" {
		return d
	}
	return filepath.Join("..", ".cache", "guest")
}

// TestBoot boots the selected kernels to userspace. Each boot checks the
// console's GUEST-BOOT-OK, the CPU count, MemTotal against --memory (one
// size above 4 GiB), and how gvmm ended.
func TestBoot(t *testing.T) {
	set := os.Getenv("GVMM_BOOT_TESTS")
	if set != "ci" && set != "all" {
		t.Skip("boot tests skipped: set GVMM_BOOT_TESTS=ci or all (make test, make test-boot)")
	}
	kvmtest.SkipIfUnavailable(t)
	dir := guestDir()
	cases := bootCases
	if _, err := os.Stat(filepath.Join(dir, ciKernel)); err != nil && set == "ci" {
		cases = withoutCIKernel(t, dir)
	}
	gvmm := gvmmBinary(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			for _, f := range []string{c.kernel, c.initrd} {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Fatalf("%s missing from %s: run make guest", f, dir)
				}
			}
			runBoot(t, c, dir, gvmm)
		})
	}
}

var peakRSSLine = regexp.MustCompile(`gvmm: peak RSS (\d+) MiB`)

// withoutCIKernel is the CI set for a guest directory without the small
// kernel (no shared cache, no make guest-kernel): the small kernel's boots
// run Debian's kernel instead.
func withoutCIKernel(t *testing.T, dir string) []bootCase {
	t.Logf("%s not in %s: booting %s instead", ciKernel, dir, debianKernel)
	out := make([]bootCase, 0, len(bootCases))
	for _, c := range bootCases {
		if c.kernel == ciKernel {
			c.name = strings.Replace(c.name, "ci-", "debian-as-ci-", 1)
			c.kernel, c.initrd = debianKernel, "initramfs-debian-cloud.cpio"
		}
		out = append(out, c)
	}
	return out
}

// gvmmBinary is the gvmm command the CLI boots run: $GVMM_BIN (make test
// builds bin/gvmm outside the emulated KVM host, where compiling is 30
// times faster), or one built now.
func gvmmBinary(t *testing.T) string {
	if bin := os.Getenv("GVMM_BIN"); bin != "" {
		_, err := os.Stat(bin)
		require.NoError(t, err, "GVMM_BIN")
		return bin
	}
	bin := filepath.Join(t.TempDir(), "gvmm")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/gvmm").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

func runBoot(t *testing.T, c bootCase, dir, gvmm string) {
	logf, err := openLog(c.name)
	require.NoError(t, err)
	defer logf.Close()
	con := newConsole(logf)
	cmdline := "initexit=" + c.initexit
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout(c))
	defer cancel()
	start := time.Now()
	var input io.Reader
	if c.shell {
		cmdline += " test=shell"
		input = typist(ctx, con)
	}

	var status int
	var detail string
	if c.cli {
		cmd := exec.CommandContext(ctx, gvmm, "run", "-v",
			"--kernel", filepath.Join(dir, c.kernel), "--initrd", filepath.Join(dir, c.initrd),
			"--cpus", strconv.Itoa(c.cpus), "--memory", strconv.FormatUint(c.memory>>20, 10)+"M",
			"--cmdline", cmdline)
		cmd.Stdout = con
		cmd.Stdin = input
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			status = ee.ExitCode()
		default:
			t.Fatalf("gvmm: %v", err)
		}
		detail = stderr.String()
		// gvmm -v reports its peak RSS. Guest RAM is mapped, not
		// touched in advance: the gvmm process stays below its size.
		if m := peakRSSLine.FindStringSubmatch(detail); assert.NotNil(t, m, "gvmm -v prints its peak RSS") {
			mib, _ := strconv.ParseUint(m[1], 10, 64)
			t.Logf("%s: peak RSS %d MiB", c.name, mib)
			assert.Less(t, mib, c.memory>>20, "peak RSS below the guest's RAM: RAM is not pre-touched")
		}
	} else {
		m, err := machine.New(machine.Config{
			Kernel: filepath.Join(dir, c.kernel), Initrd: filepath.Join(dir, c.initrd),
			Cmdline: cmdline, CPUs: c.cpus, Memory: c.memory, Console: con, ConsoleIn: input,
		})
		require.NoError(t, err)
		defer m.Close()
		res, err := m.Run(ctx)
		require.NoError(t, err)
		detail = fmt.Sprintf("%s: %s; exits %v; fallbacks %v", res.Outcome, res.Detail, res.Exits, res.Fallbacks)
		// The status gvmm run would exit with (README, Exit status).
		switch res.Outcome {
		case machine.PowerOff:
			status = 0
		case machine.TestExit:
			status = int(res.TestExitValue)<<1 | 1
		default:
			status = -1
		}
	}
	t.Logf("%s: ended after %v: %s", c.name, time.Since(start).Round(time.Second), strings.TrimSpace(detail))
	out := con.String()
	v := values(out)

	if d, ok := con.when("GUEST-BOOT-OK"); ok {
		t.Logf("%s: GUEST-BOOT-OK after %v", c.name, d.Round(time.Second))
	}
	require.Contains(t, out, "GUEST-BOOT-OK", "no GUEST-BOOT-OK; console tail:\n%s\n%s", con.tail(30), detail)
	assert.Equal(t, strconv.Itoa(c.cpus), v["GUEST-NPROC"], "guest CPU count")
	assertMemTotal(t, v["GUEST-MEM"], c.memory)
	assert.Equal(t, "0", v["GUEST-VERDICT"], "the guest's own checks")
	if c.initrd == "initramfs-debian-cloud.cpio" {
		assert.NotContains(t, []string{"", "0"}, v["GUEST-MODULES"], "the virtio modules loaded")
	}
	if c.shell {
		assert.Contains(t, out, "typed-42", "a command typed on the console ran in the guest's shell")
	}
	switch c.initexit {
	case "poweroff":
		assert.Equal(t, 0, status, "gvmm ends with a guest power off: %s", detail)
	case "testexit":
		assert.Equal(t, 1, status, "gvmm exits with (verdict<<1)|1 = 1: %s", detail)
	}
}

// typist waits for the guest shell's prompt on the console, types a command
// whose output proves it ran ("typed-42"), then exits the shell.
func typist(ctx context.Context, con *console) io.Reader {
	r, w := io.Pipe()
	go func() {
		defer w.Close()
		waitFor := func(s string) bool {
			for !strings.Contains(con.String(), s) {
				select {
				case <-ctx.Done():
					return false
				case <-time.After(200 * time.Millisecond):
				}
			}
			return true
		}
		if !waitFor("/ # ") {
			return
		}
		io.WriteString(w, "echo typed-$((6*7))\n")
		if !waitFor("typed-42") {
			return
		}
		io.WriteString(w, "exit\n")
	}()
	return r
}

// kernelOwnRAM bounds the part of RAM a guest kernel keeps for itself that
// does not grow with RAM: its image and early allocations. Debian's cloud
// kernel, the larger of the two, keeps 38 MiB of a 256 MiB guest (MemTotal
// 218 MiB) and 183 MiB of 4608 MiB (MemTotal 4425 MiB, swiotlb included).
const kernelOwnRAM = 40 << 20

// swiotlbRAM is the bounce buffer an x86 kernel sets aside when RAM
// reaches above 4 GiB (arch/x86/kernel/pci-dma.c: swiotlb for 32-bit DMA
// without an IOMMU; 64 MiB by default). gvmm puts RAM that does not fit
// below the MMIO hole (memory.HoleStart) at 4 GiB.
const swiotlbRAM = 64 << 20

// assertMemTotal checks "MemTotal: N kB" against the RAM given: never more,
// and less only by what the kernel keeps for itself: a page struct per page
// (64 bytes per 4 KiB: 1/64 of RAM), tables sized by RAM such as the dentry
// and inode hashes (under 1/256), kernelOwnRAM and, with RAM above 4 GiB,
// swiotlbRAM. A larger gap means the guest missed RAM gvmm gave it (an e820
// range lost, say).
func assertMemTotal(t *testing.T, line string, ram uint64) {
	t.Helper()
	f := strings.Fields(line)
	require.Len(t, f, 3, "GUEST-MEM line %q", line)
	kb, err := strconv.ParseUint(f[1], 10, 64)
	require.NoError(t, err)
	got := kb << 10
	assert.LessOrEqual(t, got, ram, "MemTotal above --memory")
	kept := ram/64 + ram/256 + kernelOwnRAM
	if ram > memory.HoleStart {
		kept += swiotlbRAM
	}
	assert.GreaterOrEqual(t, got, ram-kept, "MemTotal %d MiB: more than the kernel's own %d MiB short of --memory %d MiB",
		got>>20, kept>>20, ram>>20)
}
