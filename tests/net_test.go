package tests

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// The network tests put the host end of every tap in a network namespace
// of its own (ip netns), so that nothing the guests send leaves the
// machine: the tap (or a bridge of taps) has 10.0.2.1/24 there, gvmm runs
// there, and the test's own sockets are made there.

// netns is a network namespace for one test.
type netns string

var nsCount struct {
	sync.Mutex
	n int
}

// newNetns creates a namespace with its loopback up, deleted at cleanup.
func newNetns(t testing.TB) netns {
	nsCount.Lock()
	nsCount.n++
	name := fmt.Sprintf("gvmmt%d-%d", os.Getpid(), nsCount.n)
	nsCount.Unlock()
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	ns := netns(name)
	ns.ip(t, "link", "set", "lo", "up")
	return ns
}

func run(t testing.TB, cmd string, args ...string) {
	t.Helper()
	out, err := exec.Command(cmd, args...).CombinedOutput()
	require.NoError(t, err, "%s %s: %s", cmd, strings.Join(args, " "), out)
}

// ip runs ip(8) in the namespace.
func (ns netns) ip(t testing.TB, args ...string) {
	t.Helper()
	run(t, "ip", append([]string{"-n", string(ns)}, args...)...)
}

// addTap creates a tap in the namespace, up, with addr if not empty.
func (ns netns) addTap(t testing.TB, name, addr string) {
	ns.ip(t, "tuntap", "add", name, "mode", "tap")
	if addr != "" {
		ns.ip(t, "addr", "add", addr, "dev", name)
	}
	ns.ip(t, "link", "set", name, "up")
}

// in runs f on a thread that has entered the namespace: sockets f makes
// belong to it for good (socket(2) takes the calling thread's namespace).
func (ns netns) in(f func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + string(ns))
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("setns %s: %w", ns, err)
	}
	ferr := f()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays in the namespace: let it die with the
		// goroutine rather than serve others.
		return fmt.Errorf("setns back: %w", err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// sink accepts one connection on a listener and hashes what arrives.
type sink struct {
	done  chan struct{}
	md5   string
	bytes int64
	err   error
	took  time.Duration
}

// listenSink listens on addr in the namespace and serves one connection.
func (ns netns) listenSink(t testing.TB, addr string) *sink {
	var l net.Listener
	require.NoError(t, ns.in(func() (err error) {
		l, err = net.Listen("tcp4", addr)
		return err
	}))
	s := &sink{done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer l.Close()
		c, err := l.Accept()
		if err != nil {
			s.err = err
			return
		}
		defer c.Close()
		start := time.Now()
		h := md5.New()
		s.bytes, s.err = io.Copy(h, c)
		s.took = time.Since(start)
		s.md5 = hex.EncodeToString(h.Sum(nil))
	}()
	t.Cleanup(func() { l.Close() })
	return s
}

// dial connects to addr from the namespace, retrying while the guest is
// not listening yet.
func (ns netns) dial(ctx context.Context, addr string) (*net.TCPConn, error) {
	for {
		var c net.Conn
		err := ns.in(func() (err error) {
			d := net.Dialer{Timeout: 5 * time.Second}
			c, err = d.DialContext(ctx, "tcp4", addr)
			return err
		})
		if err == nil {
			return c.(*net.TCPConn), nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("dial %s: %w (last: %v)", addr, ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// netGuests are the kernels the network tests boot: the small test kernel
// (virtio_net built in) and Debian's cloud kernel (virtio_net a module in
// its initramfs).
func netGuests(t *testing.T, dir string) []blkGuest { return blkGuests(t, dir) }

// netRun is one gvmm run with network interfaces, in a namespace.
type netRun struct {
	name    string
	guest   blkGuest
	ns      netns
	nets    []string // --net values
	cmdline string
	// onConsole, if set, is called once for the first console line with
	// this prefix, on its own goroutine.
	onConsole string
	then      func(ctx context.Context, line string) error
}

type netResult struct {
	con    *console
	status int
	stderr string
	err    error // then's
}

func (r netRun) start(t *testing.T, gvmm, dir string) func() netResult {
	logf, err := openLog(r.name)
	require.NoError(t, err)
	con := newConsole(logf)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	args := []string{"netns", "exec", string(r.ns), gvmm, "run", "-v",
		"--kernel", filepath.Join(dir, r.guest.kernel), "--initrd", filepath.Join(dir, r.guest.initrd),
		"--memory", "512M", "--cmdline", r.cmdline}
	for _, n := range r.nets {
		args = append(args, "--net", n)
	}
	// ip netns exec execs gvmm: the process is gvmm's.
	cmd := quitOnCancel(exec.CommandContext(ctx, "ip", args...))
	cmd.Stdout = con
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	thenErr := make(chan error, 1)
	if r.then != nil {
		go func() {
			for ctx.Err() == nil {
				if m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(r.onConsole) + `.*$`).FindString(con.String()); m != "" {
					thenErr <- r.then(ctx, m)
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
			thenErr <- ctx.Err()
		}()
	} else {
		thenErr <- nil
	}
	return func() netResult {
		defer cancel()
		defer logf.Close()
		err := cmd.Wait()
		res := netResult{con: con, stderr: stderr.String()}
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			res.status = ee.ExitCode()
		default:
			t.Fatalf("gvmm: %v", err)
		}
		select {
		case res.err = <-thenErr:
		case <-time.After(time.Minute):
			res.err = errors.New("the host side never finished")
		}
		t.Logf("%s: gvmm exit %d; stderr:\n%s", r.name, res.status, res.stderr)
		return res
	}
}

// quitOnCancel makes cmd, a gvmm run, end with SIGQUIT when its context
// ends: a Go program then prints every goroutine's stack on stderr, so a
// run that hangs says where (the workers waiting for a kick, for the tap,
// or a vCPU in KVM_RUN) before it is killed 30 s later.
func quitOnCancel(cmd *exec.Cmd) *exec.Cmd {
	cmd.Env = append(os.Environ(), "GOTRACEBACK=all")
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGQUIT) }
	cmd.WaitDelay = 30 * time.Second
	return cmd
}

// netStatsLine is gvmm -v's summary of a network device.
var netStatsLine = regexp.MustCompile(`gvmm: net 0: sent (\d+) frames \((\d+) bytes\), (\d+) malformed, (\d+) refused by the tap; received (\d+) frames \((\d+) bytes\), (\d+) dropped, (\d+) malformed`)

// TestNet boots each kernel on a tap whose host end is 10.0.2.1/24 in a
// namespace: the guest takes 10.0.2.15/24, pings the host, sends it 8 MiB
// over TCP and receives 8 MiB from it, and the MD5 sums match on both ends.
func TestNet(t *testing.T) {
	skipUnlessBoots(t)
	dir := guestDir()
	gvmm := gvmmBinary(t)
	const size = 8 << 20
	for _, g := range netGuests(t, dir) {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			ns := newNetns(t)
			ns.addTap(t, "tap0", "10.0.2.1/24")
			fromGuest := ns.listenSink(t, "10.0.2.1:5000")
			payload := make([]byte, size)
			rand.New(rand.NewSource(9)).Read(payload)
			wait := netRun{name: "net-" + g.name, guest: g, ns: ns,
				nets:      []string{"tap=tap0,mac=52:54:00:12:34:56"},
				cmdline:   "test=netup,ping,netsend,netrecv initexit=poweroff netip=10.0.2.15/24 netpeer=10.0.2.1 netport=5000 netsize=8",
				onConsole: "GUEST-NET-LISTEN",
				then: func(ctx context.Context, _ string) error {
					c, err := ns.dial(ctx, "10.0.2.15:5001")
					if err != nil {
						return err
					}
					defer c.Close()
					if _, err := c.Write(payload); err != nil {
						return fmt.Errorf("send to the guest: %w", err)
					}
					if err := c.CloseWrite(); err != nil {
						return err
					}
					// The guest's nc closes when it has read everything.
					_, err = io.Copy(io.Discard, c)
					return err
				}}.start(t, gvmm, dir)
			res := wait()
			require.Equal(t, 0, res.status, res.stderr)
			require.NoError(t, res.err, "host to guest")
			v := values(res.con.String())
			assert.Equal(t, "0", v["GUEST-VERDICT"], res.con.tail(30))
			assert.Equal(t, "52:54:00:12:34:56 10.0.2.15/24", v["GUEST-NET-UP"])
			assert.Equal(t, "10.0.2.1 ok", v["GUEST-NET-PING"])
			select {
			case <-fromGuest.done:
			case <-time.After(time.Minute):
				t.Fatal("the host never saw the guest's connection end")
			}
			require.NoError(t, fromGuest.err)
			assert.Equal(t, int64(size), fromGuest.bytes, "bytes from the guest")
			assert.Equal(t, v["GUEST-NET-SEND-SUM"], fromGuest.md5, "MD5 of what the guest sent, on both ends")
			assert.Equal(t, md5hex(payload)+" "+fmt.Sprint(size), v["GUEST-NET-RECV-SUM"], "MD5 of what the host sent, on both ends")
			m := netStatsLine.FindStringSubmatch(res.stderr)
			require.NotNil(t, m, "gvmm -v's network summary")
			assert.Equal(t, []string{"0", "0"}, []string{m[3], m[4]}, "no transmit frame malformed or refused")
			assert.Equal(t, []string{"0", "0"}, []string{m[7], m[8]}, "no received frame dropped or malformed")
			t.Logf("%s: guest to host %d bytes in %v", g.name, fromGuest.bytes, fromGuest.took)
		})
	}
}

// TestNetBridge puts two guests on one bridge, as libvirt does with br0:
// each pings the other. Each also waits until the other has pinged it
// (test=...,pinged) before it powers off: the first guest to reach the
// other would otherwise be gone before the other's ping, and the other's
// ping would fail for a reason that is not the network's.
func TestNetBridge(t *testing.T) {
	skipUnlessBoots(t)
	dir := guestDir()
	gvmm := gvmmBinary(t)
	g := netGuests(t, dir)[0]
	ns := newNetns(t)
	ns.ip(t, "link", "add", "br0", "type", "bridge")
	ns.ip(t, "addr", "add", "10.0.2.1/24", "dev", "br0")
	ns.ip(t, "link", "set", "br0", "up")
	for _, tap := range []string{"tap0", "tap1"} {
		ns.addTap(t, tap, "")
		ns.ip(t, "link", "set", tap, "master", "br0")
	}
	var waits []func() netResult
	for i, self := range []string{"10.0.2.15", "10.0.2.16"} {
		peer := []string{"10.0.2.16", "10.0.2.15"}[i]
		waits = append(waits, netRun{name: fmt.Sprintf("net-bridge-%d", i), guest: g, ns: ns,
			nets:    []string{fmt.Sprintf("tap=tap%d", i)},
			cmdline: fmt.Sprintf("test=netup,ping,pinged initexit=poweroff netip=%s/24 netpeer=%s", self, peer),
		}.start(t, gvmm, dir))
	}
	for i, wait := range waits {
		res := wait()
		assert.Equal(t, 0, res.status, res.stderr)
		v := values(res.con.String())
		assert.Equal(t, "0", v["GUEST-VERDICT"], res.con.tail(30))
		peer := []string{"10.0.2.16", "10.0.2.15"}[i]
		assert.Equal(t, peer+" ok", v["GUEST-NET-PING"], "guest %d reaches the other", i)
		assert.Equal(t, "ok", v["GUEST-NET-PINGED"], "guest %d is reached by the other", i)
	}
}

// TestNetBadInput checks gvmm's one-line refusals of a bad --net: a tap
// in use, a tap it may not open or create, a bad MAC, an unknown option.
// Taps are checked before KVM, so this runs wherever tun works (as root).
func TestNetBadInput(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for taps and namespaces")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("no /dev/net/tun")
	}
	gvmm := gvmmBinary(t)
	dir := guestDir()
	kernel := filepath.Join(dir, debianKernel)
	if _, err := os.Stat(kernel); err != nil {
		t.Fatalf("%s missing: run make guest", kernel)
	}
	ns := newNetns(t)
	ns.addTap(t, "busy0", "")
	ns.addTap(t, "free0", "")
	ns.ip(t, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1")
	// Hold busy0 as another VMM would.
	hold := holdTap(t, ns, "busy0")
	defer hold()

	cases := []struct {
		name, net string
		user      bool
		want      string
	}{
		{"busy", "tap=busy0", false, "gvmm: tap busy0: in use by another process"},
		{"not-a-tap", "tap=veth0", false, "gvmm: tap veth0: exists and is not a tap device"},
		{"no-permission", "tap=new0", true, "gvmm: tap new0: open /dev/net/tun: permission denied"},
		{"bad-mac", "tap=free0,mac=52:54:00:12:34", false, `gvmm: --net tap=free0,mac=52:54:00:12:34: bad MAC address "52:54:00:12:34"`},
		{"multicast-mac", "tap=free0,mac=01:00:5e:00:00:01", false, "gvmm: --net tap=free0,mac=01:00:5e:00:00:01: MAC address 01:00:5e:00:00:01 is a multicast address"},
		{"unknown-option", "tap=free0,queues=4", false, `gvmm: --net tap=free0,queues=4: unknown option "queues=4"`},
		{"no-tap", "mac=52:54:00:12:34:56", false, "gvmm: --net mac=52:54:00:12:34:56: no tap=NAME"},
		{"twice", "tap=free0", false, "gvmm: --net tap=free0: given twice"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := []string{"netns", "exec", string(ns), gvmm, "run", "--kernel", kernel, "--net", c.net}
			if c.name == "twice" {
				args = append(args, "--net", c.net)
			}
			cmd := exec.Command("ip", args...)
			if c.user {
				// nobody: no CAP_NET_ADMIN, no access to /dev/net/tun.
				cmd = exec.Command("ip", "netns", "exec", string(ns), "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", gvmm, "run", "--kernel", kernel, "--net", c.net)
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			require.True(t, errors.As(err, &ee), "gvmm must fail: %v", err)
			assert.Equal(t, 2, ee.ExitCode())
			lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
			assert.Len(t, lines, 1, "one line: %q", stderr.String())
			assert.True(t, strings.HasPrefix(lines[0], c.want), "got %q, want it to start with %q", lines[0], c.want)
		})
	}
}

// holdTap keeps a tap attached in the namespace, as a running VMM would,
// until the returned function is called.
func holdTap(t *testing.T, ns netns, name string) func() {
	var fd int
	require.NoError(t, ns.in(func() error {
		var err error
		fd, err = unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			return err
		}
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
		return unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
	}))
	return func() { syscall.Close(fd) }
}
