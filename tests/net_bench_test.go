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

// BenchmarkTCPvsQEMU measures TCP throughput through a tap in both
// directions with gvmm and with QEMU's virtio-net-pci (vhost=off, the same
// userspace path), on the same host, interleaved: the small test kernel
// sends NETSIZE MiB of zeros (GVMM_NET_MIB, 64 by default) with busybox nc
// to a listener on the tap's host end, in a network namespace, then
// listens and takes as much from the host. Guest to host is timed by the
// host from the connection's accept to its end; host to guest from the
// connection to the guest closing it, when it has read everything. It
// reports both rates in each direction, their ratios (gvmm over QEMU:
// above 1 is faster) over all rounds and the median of each round's ratio
// (the emulated KVM host's speed swings with the load of the machine, and
// the two VMMs of one round run minutes apart at most), and gvmm's exits
// to userspace per MiB during each transfer (from its --stats-socket), and
// each VMM's CPU time outside the guest per MiB (from /proc).
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
	cmdline := fmt.Sprintf("test=netup,netbench,netbenchrecv initexit=poweroff netip=10.0.2.15/24 netpeer=10.0.2.1 netport=5000 netsize=%d", mib)
	var gvmmRes, qemuRes benchResult
	var txRatios, rxRatios []float64
	for i := range b.N * rounds {
		var round [2]benchResult // gvmm, qemu
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
				args = []string{gvmm, "run", "-v", "--kernel", filepath.Join(dir, ciKernel),
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
			r := benchOne(b, ns, who, i, args, sock, mib)
			if who == "gvmm" {
				gvmmRes.add(r)
				round[0] = r
			} else {
				qemuRes.add(r)
				round[1] = r
			}
		}
		txRatios = append(txRatios, round[1].send.Seconds()/round[0].send.Seconds())
		rxRatios = append(rxRatios, round[1].recv.Seconds()/round[0].recv.Seconds())
		b.Logf("round %d: gvmm/QEMU speed guest to host %.2f, host to guest %.2f", i, txRatios[i], rxRatios[i])
	}
	total := float64(mib * b.N * rounds)
	b.ReportMetric(total/gvmmRes.send.Seconds(), "gvmm-tx-MiB/s")
	b.ReportMetric(total/qemuRes.send.Seconds(), "qemu-tx-MiB/s")
	b.ReportMetric(qemuRes.send.Seconds()/gvmmRes.send.Seconds(), "x-qemu-tx")
	b.ReportMetric(median(txRatios), "x-qemu-tx-median")
	b.ReportMetric(total/gvmmRes.recv.Seconds(), "gvmm-rx-MiB/s")
	b.ReportMetric(total/qemuRes.recv.Seconds(), "qemu-rx-MiB/s")
	b.ReportMetric(qemuRes.recv.Seconds()/gvmmRes.recv.Seconds(), "x-qemu-rx")
	b.ReportMetric(median(rxRatios), "x-qemu-rx-median")
	b.ReportMetric(float64(gvmmRes.sendExits)/total, "tx-exits/MiB")
	b.ReportMetric(float64(gvmmRes.recvExits)/total, "rx-exits/MiB")
	// CPU outside the guest, per MiB, in milliseconds, where every run
	// could be measured.
	for _, m := range []struct {
		name string
		c    vmmCPU
	}{{"gvmm-tx", gvmmRes.sendCPU}, {"qemu-tx", qemuRes.sendCPU}, {"gvmm-rx", gvmmRes.recvCPU}, {"qemu-rx", qemuRes.recvCPU}} {
		if m.c.ok {
			b.ReportMetric(float64((m.c.vCPU+m.c.devices).Milliseconds())/total, m.name+"-cpu-ms/MiB")
		}
	}
}

// benchResult is one VMM's transfers: guest to host (send) and host to
// guest (recv), with the exits to userspace during each (gvmm only).
type benchResult struct {
	send, recv           time.Duration
	sendExits, recvExits uint64
	// sendCPU and recvCPU are the CPU time the VMM's threads spent
	// outside the guest during each transfer.
	sendCPU, recvCPU vmmCPU
	// n counts the results added up.
	n int
}

func (r *benchResult) add(o benchResult) {
	r.send += o.send
	r.recv += o.recv
	r.sendExits += o.sendExits
	r.recvExits += o.recvExits
	if r.n == 0 {
		r.sendCPU, r.recvCPU = o.sendCPU, o.recvCPU
	} else {
		r.sendCPU, r.recvCPU = r.sendCPU.plus(o.sendCPU), r.recvCPU.plus(o.recvCPU)
	}
	r.n++
}

// vmmCPU is the CPU time a VMM's threads have spent outside their guest
// so far: vCPU is that of the threads that ran the guest (KVM's handling
// of exits, in the host kernel), devices that of the others (device
// emulation, the tap, the host's network stack on their behalf).
type vmmCPU struct {
	ok            bool
	vCPU, devices time.Duration
}

// readVMMCPU reads process pid's threads' CPU time outside their guest:
// utime + stime - guest_time (proc(5), /proc/PID/task/TID/stat fields 14,
// 15 and 43, in clock ticks of 1/100 s). ok is false once the process is
// gone. A rough figure: Linux scales utime and stime to the thread's
// runtime but counts guest_time in raw ticks, so the difference of two
// readings can even be negative over a short interval.
func readVMMCPU(pid int) vmmCPU {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return vmmCPU{}
	}
	c := vmmCPU{ok: true}
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, t.Name()))
		if err != nil {
			return vmmCPU{}
		}
		// The command name (field 2) is in parentheses and may hold
		// spaces: count fields from the last ')'.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			return vmmCPU{}
		}
		f := strings.Fields(string(b[i+1:])) // f[0] is field 3
		if len(f) < 41 {
			return vmmCPU{}
		}
		utime, _ := strconv.ParseInt(f[11], 10, 64)
		stime, _ := strconv.ParseInt(f[12], 10, 64)
		guest, _ := strconv.ParseInt(f[40], 10, 64)
		d := time.Duration(utime+stime-guest) * 10 * time.Millisecond
		if guest > 0 {
			c.vCPU += d
		} else {
			c.devices += d
		}
	}
	return c
}

// since returns the CPU time spent from before to c, with ok false if
// either is unknown.
func (c vmmCPU) since(before vmmCPU) vmmCPU {
	if !c.ok || !before.ok {
		return vmmCPU{}
	}
	return vmmCPU{ok: true, vCPU: c.vCPU - before.vCPU, devices: c.devices - before.devices}
}

// plus adds o to c; the sum is unknown if either is.
func (c vmmCPU) plus(o vmmCPU) vmmCPU {
	if !c.ok || !o.ok {
		return vmmCPU{}
	}
	return vmmCPU{ok: true, vCPU: c.vCPU + o.vCPU, devices: c.devices + o.devices}
}

func (c vmmCPU) String() string {
	if !c.ok {
		return "unknown CPU time (the VMM had ended)"
	}
	return fmt.Sprintf("CPU outside the guest %v in vCPU threads, %v in the others", c.vCPU, c.devices)
}

// benchOne runs one guest in ns and returns how long its transfers took,
// and for gvmm the exits to userspace meanwhile.
func benchOne(b *testing.B, ns netns, who string, round int, args []string, sock string, mib int) benchResult {
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
	if who == "gvmm" {
		cmd = quitOnCancel(cmd)
	}
	con := newConsole(logf)
	cmd.Stdout = con
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(b, cmd.Start())
	exits := func() uint64 {
		if who != "gvmm" {
			return 0
		}
		n, _ := exitCount(sock)
		return n
	}
	type result struct {
		res        benchResult
		sent, recv int64
		err        error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		defer func() { done <- r }()
		// Guest to host.
		c, err := l.Accept()
		if err != nil {
			r.err = err
			return
		}
		before, cpu := exits(), readVMMCPU(cmd.Process.Pid)
		start := time.Now()
		r.sent, err = io.Copy(io.Discard, c)
		r.res.send = time.Since(start)
		r.res.sendExits = exits() - before
		r.res.sendCPU = readVMMCPU(cmd.Process.Pid).since(cpu)
		c.Close()
		if err != nil {
			r.err = fmt.Errorf("guest to host: %w", err)
			return
		}
		// Host to guest, once the guest listens.
		conn, err := ns.dial(ctx, "10.0.2.15:5001")
		if err != nil {
			r.err = err
			return
		}
		defer conn.Close()
		before, cpu = exits(), readVMMCPU(cmd.Process.Pid)
		start = time.Now()
		zeros := make([]byte, 1<<20)
		for range mib {
			n, err := conn.Write(zeros)
			r.recv += int64(n)
			if err != nil {
				r.err = fmt.Errorf("host to guest: %w", err)
				return
			}
		}
		if err := conn.CloseWrite(); err != nil {
			r.err = err
			return
		}
		// The guest's nc closes when it has read everything.
		if _, err := io.Copy(io.Discard, conn); err != nil {
			r.err = fmt.Errorf("host to guest: %w", err)
			return
		}
		r.res.recv = time.Since(start)
		r.res.recvExits = exits() - before
		r.res.recvCPU = readVMMCPU(cmd.Process.Pid).since(cpu)
	}()
	werr := cmd.Wait()
	require.NoError(b, werr, "%s: %s\n%s", who, stderr.String(), con.tail(20))
	var r result
	select {
	case r = <-done:
	case <-time.After(time.Minute):
		b.Fatalf("%s: the transfers did not end:\n%s", who, con.tail(20))
	}
	require.NoError(b, r.err)
	require.Equal(b, int64(mib)<<20, r.sent, "%s: bytes from the guest", who)
	require.Equal(b, int64(mib)<<20, r.recv, "%s: bytes to the guest", who)
	require.Contains(b, con.String(), "GUEST-NET-BENCH-DONE")
	require.Contains(b, con.String(), "GUEST-NET-BENCH-RECV-DONE")
	for _, d := range []struct {
		name  string
		took  time.Duration
		exits uint64
		cpu   vmmCPU
	}{{"guest to host", r.res.send, r.res.sendExits, r.res.sendCPU}, {"host to guest", r.res.recv, r.res.recvExits, r.res.recvCPU}} {
		b.Logf("%s round %d: %s %d MiB in %v (%.2f MiB/s), %d exits to userspace, %v", who, round, d.name, mib,
			d.took.Round(time.Millisecond), float64(mib)/d.took.Seconds(), d.exits, d.cpu)
	}
	// What the guest saw: frames, features, interrupts.
	for _, line := range strings.Split(con.String(), "\n") {
		if strings.HasPrefix(line, "GUEST-NET-COUNTERS") || strings.HasPrefix(line, "GUEST-NET-FEATURES") ||
			strings.HasPrefix(line, "GUEST-NET-IRQ") {
			b.Logf("%s round %d: %s", who, round, strings.TrimSpace(line))
		}
	}
	if who == "gvmm" {
		b.Logf("gvmm round %d: %s", round, strings.TrimSpace(stderr.String()))
	}
	return r.res
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
