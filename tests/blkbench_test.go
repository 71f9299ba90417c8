package tests

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/u-root/u-root/pkg/cpio"
)

// blkBenchSpec is what the guest measures: 256 MiB sequential O_DIRECT
// reads and writes, 1 MiB at a time, and 4 KiB random reads.
const blkBenchSpec = "seqread:256,seqwrite:256,randread:4000"

// blkBenchBaseSpec is the same measurements with one request each: the
// baseline for exits per request.
const blkBenchBaseSpec = "seqread:1,seqwrite:1,randread:1"

var benchLine = regexp.MustCompile(`GUEST-BENCH (\S+) bytes=(\d+) ns=(\d+)`)
var exitsLine = regexp.MustCompile(`gvmm: exits to userspace by kind: map\[(.*)\]`)
var requestsLine = regexp.MustCompile(`gvmm: disk vdb: (\d+) requests`)

// TestBlkBenchQEMU runs the in-guest block benchmark (guest/blkbench) with
// gvmm and with QEMU's virtio-blk-pci (cache=none, the same image, kernel
// and initramfs), interleaved, and prints each measurement's throughput
// and the ratio gvmm/QEMU (above 1: gvmm faster). It also prints gvmm's
// exits to userspace per 1,000 guest requests. It runs only with
// GVMM_BLK_BENCH=1 (make bench-blk), where KVM works.
func TestBlkBenchQEMU(t *testing.T) {
	if os.Getenv("GVMM_BLK_BENCH") != "1" {
		t.Skip("the block benchmark runs with GVMM_BLK_BENCH=1 (make bench-blk)")
	}
	skipUnlessBootsBench(t)
	qemu, err := exec.LookPath("qemu-system-x86_64")
	require.NoError(t, err, "QEMU (qemu-system-x86)")
	dir := guestDir()
	gvmm := gvmmBinary(t)
	s := scratchDir(t)
	initrd := benchInitrd(t, dir, s)
	small := filepath.Join(s, "small.img")
	writeImage(t, small, 1<<20, 0)
	img, backing := benchDisk(t, s, 256<<20)
	rounds := 2
	if r, err := strconv.Atoi(os.Getenv("GVMM_BLK_BENCH_ROUNDS")); err == nil && r > 0 {
		rounds = r
	}
	cmdline := "test=blkbench blkbench=" + blkBenchSpec + " initexit=poweroff"
	results := map[string]map[string][]float64{"gvmm": {}, "qemu": {}}
	var exits, requests []float64
	var exitKinds []map[string]float64
	for round := 0; round < rounds; round++ {
		// Each goes first every other round, so that neither always
		// finds the disk as the other left it, or always runs later.
		order := []string{"gvmm", "qemu"}
		if round%2 == 1 {
			order = []string{"qemu", "gvmm"}
		}
		for _, vmm := range order {
			var cmd *exec.Cmd
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
			if vmm == "gvmm" {
				cmd = exec.CommandContext(ctx, gvmm, "run", "-v", "--kernel", filepath.Join(dir, ciKernel),
					"--initrd", initrd, "--memory", "512M", "--cmdline", cmdline,
					"--disk", small+",readonly", "--disk", img+",cache=none")
			} else {
				cmd = exec.CommandContext(ctx, qemu, "-accel", "kvm", "-M", "pc", "-cpu", "host", "-m", "512M", "-smp", "1",
					"-kernel", filepath.Join(dir, "bzImage-ci"), "-initrd", initrd,
					"-append", "console=ttyS0 panic=-1 "+cmdline,
					"-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
					"-drive", "file="+small+",if=none,id=d0,format=raw,readonly=on", "-device", "virtio-blk-pci,drive=d0",
					"-drive", "file="+img+",if=none,id=d1,format=raw,cache=none", "-device", "virtio-blk-pci,drive=d1")
			}
			var out, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &stderr
			start := time.Now()
			err := cmd.Run()
			cancel()
			require.NoError(t, err, "%s: %s\n%s", vmm, stderr.String(), tail(out.String(), 30))
			ms := benchLine.FindAllStringSubmatch(out.String(), -1)
			require.Len(t, ms, 3, "%s: GUEST-BENCH lines:\n%s", vmm, tail(out.String(), 30))
			line := fmt.Sprintf("round %d %-4s %3.0fs:", round, vmm, time.Since(start).Seconds())
			for _, m := range ms {
				bytes, _ := strconv.ParseFloat(m[2], 64)
				ns, _ := strconv.ParseFloat(m[3], 64)
				results[vmm][m[1]] = append(results[vmm][m[1]], bytes/ns*1e3) // MB/s
				line += fmt.Sprintf(" %s %.2f MB/s", m[1], bytes/ns*1e3)
			}
			t.Log(line)
			if vmm == "gvmm" {
				if m := exitsLine.FindStringSubmatch(stderr.String()); m != nil {
					exits = append(exits, sumExits(m[1]))
					exitKinds = append(exitKinds, kindExits(m[1]))
				}
				if m := requestsLine.FindStringSubmatch(stderr.String()); m != nil {
					n, _ := strconv.ParseFloat(m[1], 64)
					requests = append(requests, n)
				}
			}
		}
	}
	// Exits per request: a gvmm run that boots the same way and runs the
	// same three measurements with one request each (so that the guest
	// prints the same lines on the serial console, whose port I/O exits
	// to userspace) is the baseline; the difference is what the
	// benchmark's requests cost.
	base := exec.Command(gvmm, "run", "-v", "--kernel", filepath.Join(dir, ciKernel),
		"--initrd", initrd, "--memory", "512M", "--cmdline", "test=blkbench blkbench="+blkBenchBaseSpec+" initexit=poweroff",
		"--disk", small+",readonly", "--disk", img+",cache=none")
	var baseErr bytes.Buffer
	base.Stderr = &baseErr
	require.NoError(t, base.Run(), baseErr.String())
	var baseExits, baseRequests float64
	var baseKinds map[string]float64
	if m := exitsLine.FindStringSubmatch(baseErr.String()); m != nil {
		baseExits = sumExits(m[1])
		baseKinds = kindExits(m[1])
	}
	if m := requestsLine.FindStringSubmatch(baseErr.String()); m != nil {
		baseRequests, _ = strconv.ParseFloat(m[1], 64)
	}

	var report strings.Builder
	fmt.Fprintf(&report, "block benchmark on %s, %d rounds, median MB/s (gvmm/QEMU > 1: gvmm faster;\n"+
		"per round: the median of the rounds' own ratios, each of two runs next to each other)\n", backing, rounds)
	for _, name := range []string{"seqread", "seqwrite", "randread"} {
		g, q := results["gvmm"][name], results["qemu"][name]
		var ratios []float64
		for i := range g {
			ratios = append(ratios, g[i]/q[i])
		}
		fmt.Fprintf(&report, "  %-9s gvmm %8.2f MB/s  QEMU %8.2f MB/s  gvmm/QEMU %.3f  per round %.3f\n",
			name, median(g), median(q), median(g)/median(q), median(ratios))
	}
	t.Log(report.String())
	fmt.Print(report.String())
	if len(exits) > 0 && len(requests) > 0 {
		e, r := median(exits)-baseExits, median(requests)-baseRequests
		line := fmt.Sprintf("  gvmm: %.1f exits to userspace per 1,000 requests (%.0f exits for %.0f requests beyond a baseline run of one request per measurement, %.0f exits)\n",
			1000*e/r, e, r, baseExits)
		t.Log(line)
		fmt.Print(line)
		// By kind, for the last gvmm run: eintr are gvmm's own kicks
		// (its watchdog looks at each vCPU once a quiet second), io the
		// serial console.
		last := exitKinds[len(exitKinds)-1]
		var kinds []string
		for k, v := range last {
			kinds = append(kinds, fmt.Sprintf("%s %+.0f", k, v-baseKinds[k]))
		}
		sort.Strings(kinds)
		line = fmt.Sprintf("  gvmm: exits beyond the baseline by kind: %s\n", strings.Join(kinds, ", "))
		t.Log(line)
		fmt.Print(line)
	}
}

// benchDisk returns the disk the benchmark measures, of size random bytes,
// and what it is. By default it is a loop device over a file on the host's
// tmpfs (/dev/shm), so that the I/O stays in the emulated host: a file in
// the shared folder goes over 9p to the machine outside, where other work
// makes the same run vary tenfold and more from one round to the next.
// GVMM_BLK_BENCH_BACKING=share uses such a file all the same.
func benchDisk(t *testing.T, scratch string, size int) (path, what string) {
	switch b := os.Getenv("GVMM_BLK_BENCH_BACKING"); b {
	case "", "loop":
		f, err := os.CreateTemp("/dev/shm", "gvmm-blkbench-*.img")
		require.NoError(t, err)
		require.NoError(t, f.Close())
		t.Cleanup(func() { os.Remove(f.Name()) })
		writeImage(t, f.Name(), size, 5)
		out, err := exec.Command("losetup", "--find", "--show", f.Name()).CombinedOutput()
		require.NoError(t, err, "losetup (the emulated host loads the loop module): %s", out)
		dev := strings.TrimSpace(string(out))
		t.Cleanup(func() {
			if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
				t.Errorf("losetup -d %s: %v: %s", dev, err, out)
			}
		})
		return dev, "a loop device over a file on tmpfs"
	case "share":
		img := filepath.Join(scratch, "bench.img")
		writeImage(t, img, size, 5)
		return img, "a file in the shared folder (9p)"
	default:
		t.Fatalf("GVMM_BLK_BENCH_BACKING=%q: want loop or share", b)
		return "", ""
	}
}

func sumExits(m string) float64 {
	var n float64
	for _, kv := range strings.Fields(m) {
		if _, v, ok := strings.Cut(kv, ":"); ok {
			x, _ := strconv.ParseFloat(v, 64)
			n += x
		}
	}
	return n
}

func kindExits(m string) map[string]float64 {
	out := map[string]float64{}
	for _, kv := range strings.Fields(m) {
		if k, v, ok := strings.Cut(kv, ":"); ok {
			out[k], _ = strconv.ParseFloat(v, 64)
		}
	}
	return out
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func tail(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// skipUnlessBootsBench skips where KVM does not work.
func skipUnlessBootsBench(t *testing.T) {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		t.Skip("no /dev/kvm: run it in the emulated host (make bench-blk)")
	}
}

// benchInitrd returns initramfs.cpio with /bin/blkbench added: the kernel
// unpacks concatenated newc archives one after the other.
func benchInitrd(t *testing.T, dir, scratch string) string {
	bin := filepath.Join(scratch, "blkbench")
	out, err := exec.Command("sh", "../guest/blkbench/build.sh", bin).CombinedOutput()
	require.NoError(t, err, "building blkbench: %s", out)
	base, err := os.ReadFile(filepath.Join(dir, "initramfs.cpio"))
	require.NoError(t, err)
	prog, err := os.ReadFile(bin)
	require.NoError(t, err)
	var extra bytes.Buffer
	w := cpio.Newc.Writer(&extra)
	rec := cpio.StaticFile("bin/blkbench", string(prog), 0o755)
	require.NoError(t, cpio.WriteRecordsAndDirs(w, []cpio.Record{rec}))
	require.NoError(t, cpio.WriteTrailer(w))
	path := filepath.Join(scratch, "initramfs-bench.cpio")
	require.NoError(t, os.WriteFile(path, append(base, extra.Bytes()...), 0o644))
	return path
}
