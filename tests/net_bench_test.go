package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gvmm/gvmm/kvm/kvmtest"
)

// BenchmarkTCPvsQEMU measures guest-to-host TCP throughput through a tap
// with gvmm and with QEMU's virtio-net-pci (vhost=off, the same userspace
// path), on the same host, interleaved: the small test kernel sends
// NETSIZE MiB of zeros (GVMM_NET_MIB, 64 by default) with busybox nc to a
// listener on the tap's host end, in a network namespace. The time is the
// host's, from the connection's accept to its end. It reports both rates,
// their ratio (gvmm over QEMU: above 1 is faster) and gvmm's exits to
// userspace per MiB during the transfer (from its --stats-socket).
// GVMM_NET_ROUNDS sets the number of rounds (2 by default). Run with
// -test.benchtime=1x: each round boots two guests.
func BenchmarkTCPvsQEMU(b *testing.B) {
	if set := os.Getenv("GVMM_BOOT_TESTS"); set != "ci" && set != "all" {
		b.Skip("boot benchmarks skipped: set GVMM_BOOT_TESTS=ci or all")
	}
	kvmtest.SkipIfUnavailable(b)
	qemu, err := exec.LookPath("qemu-system-x86_64")
	require.NoError(b, err, "QEMU is needed for the comparison")
	dir := guestDir()
	for _, f := range []string{ciKernel, "bzImage-ci", "initramfs.cpio"} {
		_, err := os.Stat(filepath.Join(dir, f))
		require.NoError(b, err, "run make guest")
	}
	gvmm := os.Getenv("GVMM_BIN")
	if gvmm == "" {
		gvmm = filepath.Join(b.TempDir(), "gvmm")
		out, err := exec.Command("go", "build", "-o", gvmm, "../cmd/gvmm").CombinedOutput()
		require.NoError(b, err, "go build: %s", out)
	}
	mib := 64
	if s := os.Getenv("GVMM_NET_MIB"); s != "" {
		mib, err = strconv.Atoi(s)
		require.NoError(b, err, "GVMM_NET_MIB")
	}
	rounds := 2
	if s := os.Getenv("GVMM_NET_ROUNDS"); s != "" {
		rounds, err = strconv.Atoi(s)
		require.NoError(b, err, "GVMM_NET_ROUNDS")
	}
	cmdline := fmt.Sprintf("test=netup,netbench initexit=poweroff netip=10.0.2.15/24 netpeer=10.0.2.1 netport=5000 netsize=%d", mib)
	var gTime, qTime time.Duration
	var exits uint64
	for i := range b.N * rounds {
		for _, who := range []string{"gvmm", "qemu"} {
			if i%2 == 1 {
				// Alternate which goes first.
				who = map[string]string{"gvmm": "qemu", "qemu": "gvmm"}[who]
			}
			ns := newNetns(b)
			ns.addTap(b, "tap0", "10.0.2.1/24")
			var args []string
			sock := filepath.Join(os.TempDir(), fmt.Sprintf("gvmm-netbench-%d.sock", os.Getpid()))
			if who == "gvmm" {
				args = []string{gvmm, "run", "--kernel", filepath.Join(dir, ciKernel),
					"--initrd", filepath.Join(dir, "initramfs.cpio"), "--memory", "512M",
					"--cmdline", cmdline, "--net", "tap=tap0,mac=52:54:00:12:34:56", "--stats-socket", sock}
			} else {
				args = []string{qemu, "-accel", "kvm", "-cpu", "EPYC", "-m", "512M", "-smp", "1",
					"-nographic", "-nodefaults", "-no-reboot", "-serial", "stdio",
					"-kernel", filepath.Join(dir, "bzImage-ci"), "-initrd", filepath.Join(dir, "initramfs.cpio"),
					"-append", "console=ttyS0 panic=-1 " + cmdline,
					"-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no,vhost=off",
					"-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56"}
			}
			took, n := benchOne(b, ns, who, i, args, sock, mib)
			if who == "gvmm" {
				gTime += took
				exits += n
			} else {
				qTime += took
			}
		}
	}
	total := float64(mib * b.N * rounds)
	b.ReportMetric(total/gTime.Seconds(), "gvmm-MiB/s")
	b.ReportMetric(total/qTime.Seconds(), "qemu-MiB/s")
	b.ReportMetric(qTime.Seconds()/gTime.Seconds(), "x-qemu")
	b.ReportMetric(float64(exits)/total, "exits/MiB")
}

// benchOne runs one guest in ns and returns how long the host took to
// receive its data, and for gvmm the exits to userspace meanwhile.
func benchOne(b *testing.B, ns netns, who string, round int, args []string, sock string, mib int) (time.Duration, uint64) {
	var l net.Listener
	require.NoError(b, ns.in(func() (err error) {
		l, err = net.Listen("tcp4", "10.0.2.1:5000")
		return err
	}))
	defer l.Close()
	logf, err := openLog(fmt.Sprintf("netbench-%s-%d", who, round))
	require.NoError(b, err)
	defer logf.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", string(ns)}, args...)...)
	con := newConsole(logf)
	cmd.Stdout = con
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(b, cmd.Start())
	type result struct {
		took  time.Duration
		exits uint64
		bytes int64
		err   error
	}
	done := make(chan result, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		var before uint64
		if who == "gvmm" {
			before, _ = exitCount(sock)
		}
		start := time.Now()
		n, err := io.Copy(io.Discard, c)
		took := time.Since(start)
		var after uint64
		if who == "gvmm" {
			after, _ = exitCount(sock)
		}
		done <- result{took: took, exits: after - before, bytes: n, err: err}
	}()
	werr := cmd.Wait()
	require.NoError(b, werr, "%s: %s\n%s", who, stderr.String(), con.tail(20))
	var r result
	select {
	case r = <-done:
	case <-time.After(time.Minute):
		b.Fatalf("%s: no transfer:\n%s", who, con.tail(20))
	}
	require.NoError(b, r.err)
	require.Equal(b, int64(mib)<<20, r.bytes, "%s: bytes received", who)
	require.Contains(b, con.String(), "GUEST-NET-BENCH-DONE")
	b.Logf("%s round %d: %d MiB in %v (%.2f MiB/s), %d exits to userspace", who, round, mib, r.took.Round(time.Millisecond),
		float64(mib)/r.took.Seconds(), r.exits)
	return r.took, r.exits
}

// exitCount asks gvmm's --stats-socket for its exits to userspace so far.
func exitCount(sock string) (uint64, error) {
	c, err := net.Dial("unix", sock)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	var rep struct {
		Exits uint64 `json:"exits"`
	}
	err = json.NewDecoder(c).Decode(&rep)
	return rep.Exits, err
}
