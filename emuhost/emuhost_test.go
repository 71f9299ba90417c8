package emuhost

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMain lets this test binary be the emulated host's VM holder
// (Config.Holder) in TestRunInEmulatedHost: "emuhost.test hold-vm READY"
// runs HoldVM.
func TestMain(m *testing.M) {
	if len(os.Args) == 3 && os.Args[1] == "hold-vm" {
		err := HoldVM(os.Args[2])
		fmt.Fprintf(os.Stderr, "emuhost.test: %v\n", err)
		os.Exit(125)
	}
	os.Exit(m.Run())
}

func TestMode(t *testing.T) {
	tests := []struct {
		in                 string
		want               Mode
		withKVM, withoutIt bool
		err                bool
	}{
		{in: "", want: Auto, withKVM: false, withoutIt: true},
		{in: "auto", want: Auto, withKVM: false, withoutIt: true},
		{in: " Always", want: Always, withKVM: true, withoutIt: true},
		{in: "never", want: Never, withKVM: false, withoutIt: false},
		{in: "sometimes", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			m, err := ParseMode(tt.in)
			if tt.err {
				assert.ErrorContains(t, err, "GVMM_EMULATED_HOST=\"sometimes\": want always, never or auto")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, m)
			assert.Equal(t, tt.withKVM, m.Emulate(true), "with a usable /dev/kvm")
			assert.Equal(t, tt.withoutIt, m.Emulate(false), "without /dev/kvm")
		})
	}
}

func TestScript(t *testing.T) {
	env := []string{"HOME=/root", "WEIRD=it's $x", "1BAD=x", "PWD=/elsewhere", "TMPDIR=/var/tmp",
		"GVMM_EMULATED_HOST=always", "noequals", "A-B=dash"}
	s := Script("/src/my repo", env, []string{"go", "test", "-run", "Test'X"}, nil)
	assert.Contains(t, s, "cd '/src/my repo' || exit 125\n")
	assert.Contains(t, s, "export WEIRD='it'\\''s $x'\n")
	assert.Contains(t, s, "export HOME='/root'\n")
	assert.Contains(t, s, "export TMPDIR='/var/tmp'\n", "a caller's TMPDIR is kept")
	assert.Contains(t, s, "export GOTMPDIR='/run/emuhost-tmp'\n", "temporary files default to the host's tmpfs")
	assert.Contains(t, s, "export GVMM_EMULATED_HOST='never'\n", "the host never starts another host")
	assert.NotContains(t, s, "1BAD")
	assert.NotContains(t, s, "A-B")
	assert.NotContains(t, s, "/elsewhere")
	assert.Contains(t, s, "stty -F /dev/ttyS0 raw -echo opost -onlcr\n")
	assert.True(t, strings.HasSuffix(s, "exec 'go' 'test' '-run' 'Test'\\''X'\n"), s)

	s = Script("/", nil, []string{"gvmm"}, &terminalSize{rows: 50, cols: 132})
	assert.Contains(t, s, "exec </dev/ttyS0 >/dev/ttyS0 2>&1\nstty sane rows 50 cols 132\n")
	assert.True(t, strings.HasSuffix(s, "exec setsid --ctty --wait -- 'gvmm'\n"), s)

	// The script is valid shell that runs the command with its arguments
	// intact (the terminal setup is left out: there is no ttyS0 here).
	var body []string
	for _, l := range strings.Split(Script(t.TempDir(), []string{"X=a'b"}, []string{"sh", "-c", `printf '%s|' "$X" "$0" "$1"`, "it's", "two words"}, nil), "\n") {
		if !strings.HasPrefix(l, "exec <") && !strings.HasPrefix(l, "stty") {
			body = append(body, l)
		}
	}
	out, err := exec.Command("sh", "-c", strings.Join(body, "\n")).Output()
	require.NoError(t, err)
	assert.Equal(t, "a'b|it's|two words|", string(out))
}

func TestParseApt(t *testing.T) {
	policy := "linux-image-amd64:\n  Installed: (none)\n  Candidate: 6.1.192-3\n  Version table:\n     6.1.192-3 500\n"
	assert.Equal(t, "6.1.192-3", parseCandidate([]byte(policy)))
	assert.Equal(t, "", parseCandidate([]byte("foo:\n  Installed: (none)\n  Candidate: (none)\n")))
	assert.Equal(t, "", parseCandidate(nil))
	depends := "linux-image-amd64\n  Depends: linux-image-6.1.0-57-amd64\n  Depends: <linux-image-x>\n"
	assert.Equal(t, "linux-image-6.1.0-57-amd64", parseKernelDepends([]byte(depends)))
	assert.Equal(t, "", parseKernelDepends([]byte("x\n  Depends: libc6\n")))
}

func TestLineFilter(t *testing.T) {
	var out bytes.Buffer
	f := &lineFilter{w: &out, drop: qemuNoise}
	f.Write([]byte("qemu-system-x86_64: warning: TCG doesn't support requested feature: CPUID.8000000AH:EDX.nrip-save [bit 3]\nreal "))
	f.Write([]byte("error\nqemu: warning: TCG doesn't support requested feature: x\nlast"))
	f.Flush()
	assert.Equal(t, "real error\nlast", out.String())
}

func TestQEMUArgs(t *testing.T) {
	args := strings.Join(qemuArgs(Image{Kernel: "/k", Initrd: "/i"}, Config{CPUs: 3, Memory: "2G", Append: "foo=1"}, "/r", false), " ")
	for _, want := range []string{"-accel tcg,thread=multi", "-cpu EPYC,+svm,+npt", "-smp 3", "-m 2G", "-kernel /k", "-initrd /i",
		"emuhost.dir=/r", "kvm_amd.npt=0", "clocksource=tsc tsc=reliable", "quiet loglevel=1 foo=1", "stdio,id=console,signal=on", "path=/,mount_tag=host",
		"-monitor unix:/r/monitor,server=on,wait=off", "file,id=heartbeat,path=/r/heartbeat -serial chardev:heartbeat"} {
		assert.Contains(t, args, want)
	}
	long := "/" + strings.Repeat("d", 100)
	assert.NotContains(t, strings.Join(qemuArgs(Image{}, Config{}, long, false), " "), "-monitor",
		"no monitor where its socket's path would not fit")
	args = strings.Join(qemuArgs(Image{}, Config{}, "/r", true), " ")
	assert.Contains(t, args, "-m "+DefaultMemory)
	assert.Contains(t, args, "signal=off", "an interactive console sends Ctrl-C to the command")
}

func TestRunMissingQEMU(t *testing.T) {
	_, err := Run(context.Background(), Image{}, Config{QEMU: "no-such-qemu-here"}, []string{"true"})
	assert.EqualError(t, err, "no-such-qemu-here not found: install Debian's qemu-system-x86 (apt-get install --no-install-recommends qemu-system-x86)")
}

// TestRunInEmulatedHost boots the real host: its command's output and
// status come back, with the working folder and environment it was given.
func TestRunInEmulatedHost(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skipf("emulated host tests skipped: no qemu-system-x86_64 (apt-get install %s)", QEMUPackage)
	}
	cache := os.Getenv("GVMM_EMULATED_HOST_CACHE")
	if cache == "" {
		cache = filepath.Join("..", ".cache", "emuhost")
	}
	cache, err := filepath.Abs(cache)
	require.NoError(t, err)
	var log bytes.Buffer
	img, err := Prepare(context.Background(), cache, DefaultPackages, &log)
	require.NoError(t, err, log.String())
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "in"), []byte("from outside"), 0o644))
	self, err := os.Executable()
	require.NoError(t, err)
	var out bytes.Buffer
	status, err := Run(context.Background(), img, Config{
		Dir: dir, Env: []string{"PATH=/usr/bin:/bin:/usr/sbin:/sbin", "GREETING=hello 'host'"},
		RunDir: filepath.Join(cache, "runs"), Stdout: &out, Stderr: &out,
		// A module option on the host's command line reaches insmod;
		// kvm-amd runs without nested paging by default, and the host
		// keeps time with the TSC (qemuArgs).
		Append: "kvm_amd.nested=0",
		// This test binary holds a VM open (TestMain), as emuhost
		// --hold-vm does: one process has a kvm-vm descriptor.
		Holder: []string{self, "hold-vm"},
	}, []string{"sh", "-c", `echo "$GREETING"; cat in; echo; test -c /dev/kvm && echo kvm; ` +
		`cat /sys/module/kvm_amd/parameters/nested /sys/module/kvm_amd/parameters/npt; ` +
		`cat /sys/devices/system/clocksource/clocksource0/current_clocksource; ` +
		`ls -l /proc/[0-9]*/fd 2>/dev/null | grep -c 'anon_inode:kvm-vm'; echo inside > out; exit 7`})
	require.NoError(t, err, out.String())
	assert.Equal(t, 7, status)
	assert.Equal(t, "hello 'host'\nfrom outside\nkvm\n0\nN\ntsc\n1\n", out.String())
	got, err := os.ReadFile(filepath.Join(dir, "out"))
	require.NoError(t, err)
	assert.Equal(t, "inside\n", string(got), "the command writes this machine's files")
}

func TestHostStoppedError(t *testing.T) {
	long := strings.Repeat("boot line\n", 100) + "Kernel panic - not syncing: Out of memory\n"
	for _, tc := range []struct {
		name    string
		writes  []string
		want    []string
		notWant []string
	}{
		{"silent", nil, []string{"before the command finished (its console was silent)"}, nil},
		{"panic at the end", []string{long},
			[]string{"last lines:\n", "Kernel panic - not syncing: Out of memory"}, nil},
		{"only the last lines", []string{"first\n", long},
			[]string{"Kernel panic"}, []string{"first"}},
		{"carriage returns dropped", []string{"a\r\nb\r\n"}, []string{"last lines:\na\nb"}, []string{"\r"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tail := &consoleTail{max: consoleTailBytes}
			for _, w := range tc.writes {
				n, err := tail.Write([]byte(w))
				require.NoError(t, err)
				require.Equal(t, len(w), n)
			}
			assert.LessOrEqual(t, len(tail.buf), consoleTailBytes)
			msg := (&HostStoppedError{Console: tail.String()}).Error()
			for _, s := range tc.want {
				assert.Contains(t, msg, s)
			}
			for _, s := range tc.notWant {
				assert.NotContains(t, msg, s)
			}
			assert.LessOrEqual(t, strings.Count(msg, "\n"), consoleTailLines)
		})
	}

	t.Run("bounded", func(t *testing.T) {
		tail := &consoleTail{max: 16}
		tail.Write([]byte("0123456789"))
		tail.Write([]byte("abcdefghij"))
		assert.Equal(t, "456789abcdefghij", tail.String())
	})
}

// TestRunHostLockup runs a fake QEMU that reports a lockup the way the
// host's watchdog does and then hangs, as a locked-up host would.
func TestRunHostLockup(t *testing.T) {
	poll, grace := lockupPoll, lockupGrace
	lockupPoll, lockupGrace = 50*time.Millisecond, 200*time.Millisecond
	t.Cleanup(func() { lockupPoll, lockupGrace = poll, grace })

	for _, tc := range []struct {
		name, script string
	}{
		{"powers off", `echo "host cpu1 made no progress" > "$dir/lockup"; exit 0`},
		{"hangs", `echo "host cpu1 made no progress" > "$dir/lockup"; exec sleep 60`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			qemu := filepath.Join(t.TempDir(), "qemu")
			script := "#!/bin/sh\nfor a; do case $a in *emuhost.dir=*) dir=${a##*emuhost.dir=}; dir=${dir%% *} ;; esac; done\n" + tc.script + "\n"
			require.NoError(t, os.WriteFile(qemu, []byte(script), 0o755))
			start := time.Now()
			_, err := Run(context.Background(), Image{Kernel: "k", Initrd: "i"}, Config{QEMU: qemu, RunDir: t.TempDir()}, []string{"true"})
			var le *HostLockupError
			require.ErrorAs(t, err, &le)
			assert.Equal(t, "the emulated host locked up: host cpu1 made no progress", err.Error())
			assert.Less(t, time.Since(start), 10*time.Second, "a hung QEMU is stopped")
		})
	}
}

func TestHoldScript(t *testing.T) {
	assert.Equal(t, "# written by emuhost: keep a KVM VM open in the emulated host\n"+
		"exec </dev/null >/dev/ttyS0 2>&1\nexec '/bin/emuhost' '--hold-vm' '/r/held'\n",
		HoldScript([]string{"/bin/emuhost", "--hold-vm"}, "/r/held"))
}

// TestRunHostHang: a host whose heartbeat stops is stopped, and the error
// says so, with where its CPUs were when QEMU's monitor answers.
func TestRunHostHang(t *testing.T) {
	poll, silence := lockupPoll, hangSilence
	lockupPoll, hangSilence = 50*time.Millisecond, 500*time.Millisecond
	t.Cleanup(func() { lockupPoll, hangSilence = poll, silence })

	for _, tc := range []struct {
		name, script, want string
	}{
		// The heartbeat beats, then stops for good: a hung host.
		{"stops", `echo 1.0 > "$beat"; sleep 0.3; echo 2.0 >> "$beat"; exec sleep 60`,
			"the emulated host locked up: its kernel made no progress for 500ms (no heartbeat): " +
				"QEMU's software CPU is stuck; QEMU's monitor did not answer: "},
		// No heartbeat at all (a host without a second serial port) is
		// not taken for a hang: the command's status comes back.
		{"never beats", `sleep 1; echo 0 > "$dir/status"`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			qemu := filepath.Join(t.TempDir(), "qemu")
			script := "#!/bin/sh\nfor a; do case $a in *emuhost.dir=*) dir=${a##*emuhost.dir=}; dir=${dir%% *} ;;\n" +
				"*id=heartbeat,path=*) beat=${a##*path=} ;; esac; done\n" + tc.script + "\n"
			require.NoError(t, os.WriteFile(qemu, []byte(script), 0o755))
			// A run folder too long for the monitor's socket: no monitor.
			runDir := filepath.Join(t.TempDir(), strings.Repeat("d", 100))
			start := time.Now()
			status, err := Run(context.Background(), Image{Kernel: "k", Initrd: "i"}, Config{QEMU: qemu, RunDir: runDir}, []string{"true"})
			if tc.want == "" {
				require.NoError(t, err)
				assert.Equal(t, 0, status)
				return
			}
			var le *HostLockupError
			require.ErrorAs(t, err, &le)
			assert.Contains(t, err.Error(), tc.want)
			assert.Less(t, time.Since(start), 10*time.Second, "a hung QEMU is stopped")
		})
	}
}

// TestCPUState reads the CPUs' RIP and flags from a monitor's answer.
func TestCPUState(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "m")
	l, err := net.Listen("unix", sock)
	require.NoError(t, err)
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 64)
		c.Read(buf)
		io.WriteString(c, "QEMU 7.2 monitor\r\n(qemu) info registers -a\r\n\r\nCPU#0\r\n"+
			"RAX=0 RBX=0\r\nRIP=ffffffff81a5267b RFL=00000046 [---Z-P-] CPL=0\r\n\r\nCPU#1\r\n"+
			"RIP=ffffffff81c00ba0 RFL=00000002 [-------] CPL=0\r\n(qemu) ")
		time.Sleep(5 * time.Second) // the monitor keeps the connection
	}()
	assert.Equal(t, "its CPUs were at CPU#0 RIP=ffffffff81a5267b RFL=00000046, CPU#1 RIP=ffffffff81c00ba0 RFL=00000002",
		cpuState(sock))
	assert.Contains(t, cpuState(filepath.Join(t.TempDir(), "none")), "QEMU's monitor did not answer: ")
}

// TestRunRetries: a host that crashes under the command is booted again
// and the command runs again, as often as Retries allows; a command that
// fails is never run again.
func TestRunRetries(t *testing.T) {
	for _, tc := range []struct {
		name    string
		crashes int // the first runs in which the host crashes
		retries int
		runs    int // how many times QEMU started
		status  int
		err     string
		stderr  string
	}{
		{name: "crash, then the status", crashes: 1, retries: 1, runs: 2, status: 3,
			stderr: "emuhost: the emulated host failed, not the command: running it again in a new host (attempt 2 of 2)"},
		{name: "crashes every time", crashes: 5, retries: 1, runs: 2,
			err: "the emulated host stopped before the command finished; the console's last lines:\nKernel panic"},
		{name: "no retries", crashes: 1, retries: 0, runs: 1, err: "Kernel panic"},
		{name: "a failing command runs once", crashes: 0, retries: 2, runs: 1, status: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			count := filepath.Join(tmp, "count")
			qemu := filepath.Join(tmp, "qemu")
			script := fmt.Sprintf("#!/bin/sh\nfor a; do case $a in *emuhost.dir=*) dir=${a##*emuhost.dir=}; dir=${dir%%%% *} ;; esac; done\n"+
				"echo run >> %s\nn=$(wc -l < %s)\n"+
				"if [ $n -le %d ]; then echo 'Kernel panic - not syncing: Fatal exception'; exit 0; fi\n"+
				"echo 3 > \"$dir/status\"\n", count, count, tc.crashes)
			require.NoError(t, os.WriteFile(qemu, []byte(script), 0o755))
			var stdout, stderr bytes.Buffer
			status, err := Run(context.Background(), Image{Kernel: "k", Initrd: "i"},
				Config{QEMU: qemu, RunDir: tmp, Retries: tc.retries, Stdout: &stdout, Stderr: &stderr}, []string{"true"})
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
			} else {
				require.NoError(t, err)
				assert.Equal(t, tc.status, status)
			}
			assert.Contains(t, stderr.String(), tc.stderr)
			runs, err := os.ReadFile(count)
			require.NoError(t, err)
			assert.Equal(t, tc.runs, strings.Count(string(runs), "run"))
		})
	}
}
