package emuhost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// QEMUPackage is the Debian package that has QEMU's x86-64 system emulator.
const QEMUPackage = "qemu-system-x86"

// FindQEMU returns the path of the emulator name (empty:
// qemu-system-x86_64), or an error that says which package to install.
func FindQEMU(name string) (string, error) {
	if name == "" {
		name = "qemu-system-x86_64"
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found: install Debian's %s (apt-get install --no-install-recommends %s)", name, QEMUPackage, QEMUPackage)
	}
	return path, nil
}

// Config describes one run of a command in the emulated host.
type Config struct {
	// QEMU is the emulator; empty means qemu-system-x86_64 on PATH.
	QEMU string
	// CPUs is the host's CPU count; 0 means this machine's.
	CPUs int
	// Memory is the host's RAM in QEMU's syntax ("12G"); empty means
	// DefaultMemory. QEMU allocates it lazily, as the host touches it.
	Memory string
	// Append is added to the host kernel's command line.
	Append string
	// Dir is the command's working folder; empty means this process's.
	Dir string
	// Env is the command's environment; nil means this process's.
	Env []string
	// RunDir is where the run's script and status are kept while it runs
	// (a fresh folder is made in it); empty means os.TempDir(). It must be
	// outside the folders the host mounts afresh (/run, /dev, /proc, /sys).
	RunDir string
	// Stdin, Stdout and Stderr are the host's serial console. When Stdin
	// is a terminal, the console is interactive: QEMU passes every key
	// (Ctrl-C included) to the command, which gets the serial port as its
	// controlling terminal with this terminal's size. Otherwise the command's
	// stdin is /dev/null.
	Stdin          *os.File
	Stdout, Stderr io.Writer
	// Verbose shows the QEMU command and the host kernel's messages.
	Verbose bool
	// Retries is how many times Run may run argv again, from the start
	// and in a new host, after the host crashed or locked up under it
	// (see Run). The command must be able to start over.
	Retries int
	// Holder, when set, is a command the host starts before argv and
	// keeps running for its whole life, with the path of a file to
	// create once it holds a KVM VM open as its last argument; the host
	// waits up to a minute for that file. cmd/emuhost gives itself with
	// --hold-vm (see HoldVM for why).
	Holder []string
}

// DefaultMemory is the host's RAM: room for a few guests of several GiB
// at once, on a 24 GiB machine.
const DefaultMemory = "12G"

// Run runs argv in the emulated host booted from img and returns its exit
// status. An error means the host itself failed: QEMU is missing, could not
// start, or the host stopped before the command ended. When the host
// crashes or locks up (a HostStoppedError or HostLockupError) and
// cfg.Retries allows, Run says so on cfg.Stderr and runs argv again from
// the start in a freshly booted host.
func Run(ctx context.Context, img Image, cfg Config, argv []string) (int, error) {
	for attempt := 1; ; attempt++ {
		status, err := runOnce(ctx, img, cfg, argv)
		if err == nil || !hostFault(err) || attempt > cfg.Retries || ctx.Err() != nil {
			return status, err
		}
		if cfg.Stderr != nil {
			fmt.Fprintf(cfg.Stderr, "emuhost: %v\nemuhost: the emulated host failed, not the command: running it again in a new host (attempt %d of %d)\n",
				err, attempt+1, cfg.Retries+1)
		}
	}
}

// hostFault reports whether err says that the host's kernel crashed or
// locked up under the command. A command cannot do that by itself:
// whatever it did, a kernel that panics or hangs under it is a fault of the
// host (or of QEMU's software CPU beneath it).
func hostFault(err error) bool {
	var stopped *HostStoppedError
	var lockup *HostLockupError
	return errors.As(err, &stopped) || errors.As(err, &lockup)
}

func runOnce(ctx context.Context, img Image, cfg Config, argv []string) (int, error) {
	if len(argv) == 0 {
		return 0, fmt.Errorf("no command to run")
	}
	qemu, err := FindQEMU(cfg.QEMU)
	if err != nil {
		return 0, err
	}
	if cfg.Dir == "" {
		if cfg.Dir, err = os.Getwd(); err != nil {
			return 0, err
		}
	}
	if cfg.Env == nil {
		cfg.Env = os.Environ()
	}
	if cfg.Stdout == nil {
		cfg.Stdout = io.Discard
	}
	if cfg.Stderr == nil {
		cfg.Stderr = io.Discard
	}
	if cfg.RunDir != "" {
		if err := os.MkdirAll(cfg.RunDir, 0o755); err != nil {
			return 0, err
		}
	}
	runDir, err := os.MkdirTemp(cfg.RunDir, "emuhost-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(runDir)
	if runDir, err = filepath.Abs(runDir); err != nil {
		return 0, err
	}
	if strings.ContainsAny(runDir, " \t\n'\"\\") {
		return 0, fmt.Errorf("run folder %q: the host's command line cannot carry its name", runDir)
	}

	var tty *terminalSize
	if cfg.Stdin != nil {
		tty = sizeOf(cfg.Stdin)
	}
	script := Script(cfg.Dir, cfg.Env, argv, tty)
	if err := os.WriteFile(filepath.Join(runDir, "run.sh"), []byte(script), 0o644); err != nil {
		return 0, err
	}
	if len(cfg.Holder) > 0 {
		hold := HoldScript(cfg.Holder, filepath.Join(runDir, "held"))
		if err := os.WriteFile(filepath.Join(runDir, "hold.sh"), []byte(hold), 0o644); err != nil {
			return 0, err
		}
	}

	args := qemuArgs(img, cfg, runDir, tty != nil)
	if cfg.Verbose {
		fmt.Fprintf(cfg.Stderr, "emuhost: %s %s\n", qemu, strings.Join(args, " "))
	}
	cmd := exec.CommandContext(ctx, qemu, args...)
	// QEMU restores the terminal on SIGTERM, not on SIGKILL.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if cfg.Stdin != nil { // not a nil *os.File in the io.Reader
		cmd.Stdin = cfg.Stdin
	}
	// The console's last lines go into the error when the host stops
	// early: they hold the host kernel's panic or the command's last words
	// even when Stdout is discarded (make test sends it to a log).
	tail := &consoleTail{max: consoleTailBytes}
	cmd.Stdout = io.MultiWriter(cfg.Stdout, tail)
	stderr := &lineFilter{w: cfg.Stderr, drop: qemuNoise}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("%s: %w", qemu, err)
	}
	// Two watchdogs. The host's own (its /init) powers it off when one of
	// its CPUs locks up; should the power off itself hang on that CPU,
	// QEMU is stopped here. And here: the host's /init writes a heartbeat
	// to its second serial port every few seconds, into RUNDIR/heartbeat;
	// when it stops, every CPU of the host is stuck (no watchdog inside
	// can run), and QEMU is stopped after saying where its CPUs were.
	done, watched := make(chan struct{}), make(chan struct{})
	poll, grace, silence := lockupPoll, lockupGrace, hangSilence
	go func() {
		defer close(watched)
		tick := time.NewTicker(poll)
		defer tick.Stop()
		beat := filepath.Join(runDir, "heartbeat")
		var size int64
		var last time.Time
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			if exists(filepath.Join(runDir, "lockup")) {
				select {
				case <-done:
				case <-time.After(grace):
					cmd.Process.Signal(syscall.SIGTERM)
				}
				return
			}
			if fi, err := os.Stat(beat); err == nil && fi.Size() != size {
				size, last = fi.Size(), time.Now()
				continue
			}
			// Only a heartbeat that started and stopped counts: a
			// host without one (no ttyS1) is not taken for hung.
			if size == 0 || time.Since(last) < silence {
				continue
			}
			msg := fmt.Sprintf("its kernel made no progress for %v (no heartbeat): QEMU's software CPU is stuck; %s",
				silence, cpuState(filepath.Join(runDir, "monitor")))
			if err := os.WriteFile(filepath.Join(runDir, "lockup"), []byte(msg), 0o644); err != nil {
				fmt.Fprintf(cfg.Stderr, "emuhost: %v\n", err)
			}
			cmd.Process.Signal(syscall.SIGTERM)
			return
		}
	}()
	runErr := cmd.Wait()
	close(done)
	<-watched
	stderr.Flush()

	if msg, err := os.ReadFile(filepath.Join(runDir, "lockup")); err == nil {
		return 0, &HostLockupError{Reason: strings.TrimSpace(string(msg))}
	}
	data, err := os.ReadFile(filepath.Join(runDir, "status"))
	if err != nil {
		if ctx.Err() != nil {
			return 0, fmt.Errorf("emulated host stopped: %w", ctx.Err())
		}
		if runErr != nil {
			return 0, fmt.Errorf("%s: %w", qemu, runErr)
		}
		return 0, &HostStoppedError{Console: tail.String()}
	}
	status, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || status < 0 || status > 255 {
		return 0, fmt.Errorf("the emulated host wrote a bad status %q", data)
	}
	return status, nil
}

// qemuArgs is QEMU's command line for a run. The CPU is an AMD EPYC with
// SVM and nested paging (NPT): QEMU's TCG emulates AMD-V but not Intel
// VMX, and kvm-amd needs NPT for guests that run at a usable speed.
func qemuArgs(img Image, cfg Config, runDir string, interactive bool) []string {
	cpus := cfg.CPUs
	if cpus <= 0 {
		cpus = runtime.NumCPU()
	}
	mem := cfg.Memory
	if mem == "" {
		mem = DefaultMemory
	}
	// loglevel=1: only the host kernel's alerts reach the console, so the
	// command's output stays its own. panic=-1 and -no-reboot turn a host
	// panic into QEMU's exit instead of a hang.
	//
	// kvm_amd.npt=0: kvm-amd gives its guests shadow page tables rather
	// than nested paging. With nested paging, QEMU 7.2's TCG (Debian 12's)
	// corrupts the host kernel now and then while guests start and stop:
	// the stack of a thread in KVM_RUN holds garbage after #VMEXIT, and the
	// host oopses in __svm_vcpu_run or locks up a CPU. It hit in the first
	// ten boots of two loops of short VMs, and in about one run in three of
	// the vmtest tests; with shadow paging, 20 boots and the vmtest runs
	// passed (docs/testing.md). Append kvm_amd.npt=1 to bring it back.
	// Holding a VM open (see HoldVM) makes them much rarer: with it, nested
	// paging ran 12 runs of machine.test and 12 boots in a row without a
	// fault. It does not explain them all (the same stack overflow came
	// back once under shadow paging, docs/testing.md), and shadow paging
	// stays until nested paging has a history in CI.
	//
	// clocksource=tsc tsc=reliable: the host's kernel otherwise finds
	// TCG's TSC unstable and keeps time with the HPET, whose every read
	// is an MMIO access that QEMU emulates. clock_gettime then leaves the
	// vDSO for a system call: a Go time.Now in the host took 2.58 µs with
	// the HPET and 0.28 µs with the TSC, and the Go runtime (gvmm's, the
	// tests') reads the clock on every goroutine switch. TCG's TSC is this
	// machine's own, read through, so it runs at one rate on every CPU.
	// A host CPU was once seen spinning in read_hpet with interrupts off
	// (docs/testing.md).
	cmdline := "console=ttyS0 panic=-1 mitigations=off kvm_amd.npt=0 clocksource=tsc tsc=reliable emuhost.dir=" + runDir
	if cfg.Verbose {
		cmdline += " loglevel=7"
	} else {
		cmdline += " quiet loglevel=1"
	}
	if cfg.Append != "" {
		cmdline += " " + cfg.Append
	}
	signal := "on"
	if interactive {
		signal = "off" // Ctrl-C goes to the command, not to QEMU
	}
	args := []string{
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-accel", "tcg,thread=multi",
		"-cpu", "EPYC,+svm,+npt",
		"-smp", strconv.Itoa(cpus), "-m", mem,
		"-kernel", img.Kernel, "-initrd", img.Initrd, "-append", cmdline,
		"-chardev", "stdio,id=console,signal=" + signal, "-serial", "chardev:console",
		// The second serial port (ttyS1) carries /init's heartbeat.
		"-chardev", "file,id=heartbeat,path=" + filepath.Join(runDir, "heartbeat"), "-serial", "chardev:heartbeat",
		// This machine's whole file system, mounted by /init on /host.
		"-virtfs", "local,path=/,mount_tag=host,security_model=none,multidevs=remap",
	}
	// QEMU's monitor, for a host that seems stuck: `echo 'info registers
	// -a' | socat - UNIX-CONNECT:RUNDIR/monitor` shows where its CPUs are.
	// A unix socket's path has room for 107 bytes (unix(7)).
	if mon := filepath.Join(runDir, "monitor"); len(mon) < 108 {
		args = append(args, "-monitor", "unix:"+mon+",server=on,wait=off")
	}
	return args
}

// qemuNoise matches QEMU's warnings about CPUID bits TCG does not
// emulate (nrip-save, xsavec, ...): expected with an EPYC model, harmless.
var qemuNoise = regexp.MustCompile(`TCG doesn't support requested feature`)

// terminalSize is a terminal's rows and columns.
type terminalSize struct{ rows, cols int }

// Script is the shell script the host runs (in a chroot of this machine's
// file system) for argv in folder dir with environment env. tty is the
// caller's terminal size when the console is interactive, or nil.
func Script(dir string, env, argv []string, tty *terminalSize) string {
	var b strings.Builder
	b.WriteString("# written by emuhost: run in the emulated KVM host\n")
	if tty != nil {
		// The serial port becomes the command's controlling terminal, with
		// the caller's size, so that full-screen programs and Ctrl-C work.
		b.WriteString("exec </dev/ttyS0 >/dev/ttyS0 2>&1\n")
		fmt.Fprintf(&b, "stty sane rows %d cols %d\n", tty.rows, tty.cols)
	} else {
		// Output byte for byte, without the tty's \n -> \r\n.
		b.WriteString("exec </dev/null >/dev/ttyS0 2>&1\nstty -F /dev/ttyS0 raw -echo opost -onlcr\n")
	}
	fmt.Fprintf(&b, "cd %s || exit 125\n", quote(dir))
	for _, kv := range hostEnv(env) {
		fmt.Fprintf(&b, "export %s\n", kv)
	}
	if tty != nil {
		b.WriteString("exec setsid --ctty --wait --")
	} else {
		b.WriteString("exec")
	}
	for _, a := range argv {
		b.WriteString(" " + quote(a))
	}
	b.WriteString("\n")
	return b.String()
}

// insideEnv is set for the command: it runs inside the emulated host,
// which must never start another one (GVMM_EMULATED_HOST=always would
// otherwise recurse).
var insideEnv = map[string]string{
	ModeEnv:                     "never",
	"GVMM_INSIDE_EMULATED_HOST": "1",
}

// tmpDefaults apply unless the caller set them: temporary files go to a
// tmpfs of the host (/run/emuhost-tmp, made by /init), because the 9p
// export cannot mmap files (the Go linker maps its output) and is slow.
var tmpDefaults = map[string]string{
	"TMPDIR":   "/run/emuhost-tmp",
	"GOTMPDIR": "/run/emuhost-tmp",
}

// hostEnv returns env as quoted NAME=VALUE assignments for the host's
// shell, sorted, with insideEnv and tmpDefaults applied and the shell's
// own variables dropped.
func hostEnv(env []string) []string {
	vars := map[string]string{}
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !validName(k) {
			continue
		}
		switch k {
		case "PWD", "OLDPWD", "SHLVL", "_":
			continue
		}
		vars[k] = v
	}
	for k, v := range tmpDefaults {
		if _, set := vars[k]; !set {
			vars[k] = v
		}
	}
	for k, v := range insideEnv {
		vars[k] = v
	}
	out := make([]string, 0, len(vars))
	for k, v := range vars {
		out = append(out, k+"="+quote(v))
	}
	sort.Strings(out)
	return out
}

// validName reports whether s is a shell variable name.
func validName(s string) bool {
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for _, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// quote quotes s for a POSIX shell.
func quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// lineFilter writes the lines written to it to w, except those drop
// matches.
type lineFilter struct {
	w    io.Writer
	drop *regexp.Regexp
	buf  []byte
}

func (f *lineFilter) Write(p []byte) (int, error) {
	f.buf = append(f.buf, p...)
	for {
		i := bytes.IndexByte(f.buf, '\n')
		if i < 0 {
			break
		}
		line := f.buf[:i+1]
		if !f.drop.Match(line) {
			if _, err := f.w.Write(line); err != nil {
				return len(p), err
			}
		}
		f.buf = f.buf[i+1:]
	}
	return len(p), nil
}

// Flush writes a last unterminated line.
func (f *lineFilter) Flush() {
	if len(f.buf) > 0 && !f.drop.Match(f.buf) {
		f.w.Write(f.buf)
	}
	f.buf = nil
}

// consoleTailBytes is how much of the console's end a HostStoppedError
// keeps: enough for a kernel oops's whole report.
const consoleTailBytes = 16 << 10

// HostStoppedError says the host ended without the command's exit status:
// it panicked, ran out of memory, or its command killed it.
type HostStoppedError struct {
	// Console is the end of the host's serial console (at most
	// consoleTailBytes).
	Console string
}

func (e *HostStoppedError) Error() string {
	msg := "the emulated host stopped before the command finished"
	lines := strings.Split(strings.TrimRight(e.Console, "\n"), "\n")
	if len(lines) > consoleTailLines {
		lines = lines[len(lines)-consoleTailLines:]
	}
	if strings.TrimSpace(strings.Join(lines, "")) == "" {
		return msg + " (its console was silent)"
	}
	return msg + "; the console's last lines:\n" + strings.Join(lines, "\n")
}

// consoleTailLines is how many console lines a HostStoppedError shows.
const consoleTailLines = 100

// consoleTail keeps the last max bytes written to it.
type consoleTail struct {
	max int
	buf []byte
}

func (t *consoleTail) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *consoleTail) String() string { return strings.ReplaceAll(string(t.buf), "\r", "") }

// lockupPoll is how often Run looks for the host watchdog's lockup report
// and the host's heartbeat, lockupGrace how long the host then has to power
// itself off, and hangSilence how long the heartbeat may stay silent
// (variables for the tests). /init beats every 10 s from early in its
// boot; the host boots in well under a minute even on a loaded machine,
// and a busy host still runs a shell loop within seconds, so four minutes
// of silence is a hung host, never a slow one.
var (
	lockupPoll  = 2 * time.Second
	lockupGrace = 15 * time.Second
	hangSilence = 4 * time.Minute
)

// HostLockupError says the host's watchdog (its /init) found one of the
// host's CPUs stopped for good: a lockup of QEMU's software CPU, not a fault
// of the command, whose output so far is genuine but incomplete.
type HostLockupError struct {
	// Reason is the watchdog's report.
	Reason string
}

func (e *HostLockupError) Error() string { return "the emulated host locked up: " + e.Reason }

// HoldScript is the shell script the host runs (in a chroot of this
// machine's file system, in the background, before the command) for the
// holder argv, which creates the file ready once it holds its VM. Its
// output, an error at most, goes to the console.
func HoldScript(argv []string, ready string) string {
	var b strings.Builder
	b.WriteString("# written by emuhost: keep a KVM VM open in the emulated host\n")
	b.WriteString("exec </dev/null >/dev/ttyS0 2>&1\nexec")
	for _, a := range append(append([]string(nil), argv...), ready) {
		b.WriteString(" " + quote(a))
	}
	b.WriteString("\n")
	return b.String()
}

// cpuState asks QEMU's monitor, listening on the unix socket monitor, where
// the host's CPUs are, for the report on a hung host: one "CPU#N RIP=...
// RFL=..." per CPU (RFL bit 9 is IF). Look the addresses up in a
// /proc/kallsyms of the same host kernel.
func cpuState(monitor string) string {
	c, err := net.DialTimeout("unix", monitor, 2*time.Second)
	if err != nil {
		return "QEMU's monitor did not answer: " + err.Error()
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, "info registers -a\n"); err != nil {
		return "QEMU's monitor did not answer: " + err.Error()
	}
	// The monitor never closes the connection: read until its prompt
	// follows the registers, or the deadline.
	var out []byte
	buf := make([]byte, 4096)
	for !(bytes.Contains(out, []byte("RIP=")) && bytes.HasSuffix(bytes.TrimSpace(out), []byte("(qemu)"))) {
		n, err := c.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			break
		}
	}
	var cpus []string
	for _, line := range strings.Split(strings.ReplaceAll(string(out), "\r", ""), "\n") {
		switch {
		case strings.HasPrefix(line, "CPU#"):
			cpus = append(cpus, strings.TrimSpace(line))
		case strings.HasPrefix(line, "RIP=") && len(cpus) > 0:
			f := strings.Fields(line)
			if len(f) >= 2 {
				cpus[len(cpus)-1] += " " + f[0] + " " + f[1]
			}
		}
	}
	if len(cpus) == 0 {
		return "QEMU's monitor showed no CPU"
	}
	return "its CPUs were at " + strings.Join(cpus, ", ")
}
