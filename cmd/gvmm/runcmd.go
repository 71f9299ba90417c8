package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/gvmm/gvmm/boot"
	"github.com/gvmm/gvmm/machine"
)

// processStart approximates when the process started, for the "first
// KVM_RUN after" figure: package initialization runs before main.
var processStart = time.Now()

type runFlags struct {
	kernel, initrd, cmdline string
	cpus                    int
	memory                  string
	entry                   string
	noDefaultCmdline        bool
	noFallback              bool
	verbose                 bool
	stats                   bool
	statsJSON               string
	trace                   string
	statsSocket             string
	kvmDevice               string
	profile                 string
	profileHz               int
	disks                   []string
	nets                    []string
}

func runCommand(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var f runFlags
	fs := pflag.NewFlagSet("gvmm run", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVarP(&f.kernel, "kernel", "k", "", "kernel to boot: a bzImage or an ELF vmlinux (required)")
	fs.StringVarP(&f.initrd, "initrd", "i", "", "initramfs or initrd to load")
	fs.StringVarP(&f.cmdline, "cmdline", "p", "", "kernel command line, appended to the default ("+machine.DefaultCmdline+")")
	fs.IntVarP(&f.cpus, "cpus", "c", 1, "number of vCPUs")
	fs.StringVarP(&f.memory, "memory", "m", "512M", "guest RAM, with a K, M, G or T suffix")
	fs.StringVar(&f.entry, "entry", "auto", "kernel entry: auto, linux64 (host-decompressed 64-bit entry), pvh, or protocol (the bzImage decompresses itself)")
	fs.BoolVar(&f.noDefaultCmdline, "no-default-cmdline", false, "do not prepend the default kernel command line")
	fs.BoolVar(&f.noFallback, "no-fallback", false, "disable the instruction fallback for hosts whose KVM cannot emulate some instructions")
	fs.BoolVarP(&f.verbose, "verbose", "v", false, "print gvmm's own notes (host adaptations, timings) on stderr")
	fs.BoolVar(&f.stats, "stats", false, "print per-exit statistics when the VM ends")
	fs.StringVar(&f.statsJSON, "stats-json", "", "write per-exit statistics as JSON to `FILE` when the VM ends")
	fs.StringVar(&f.trace, "trace", "", "stream every exit to `FILE` (read it with gvmm trace)")
	fs.StringVar(&f.statsSocket, "stats-socket", "", "serve live statistics as JSON on a unix socket at `PATH`")
	fs.StringVar(&f.profile, "profile", "", "sample the guest RIP of every vCPU and write the counts to `FILE` (read it with gvmm profile)")
	fs.IntVar(&f.profileHz, "profile-hz", 50, "samples per second per vCPU for --profile")
	fs.StringVar(&f.kvmDevice, "kvm-device", "/dev/kvm", "KVM device node")
	fs.StringArrayVar(&f.disks, "disk", nil, diskUsage)
	fs.StringArrayVar(&f.nets, "net", nil, netUsage)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: gvmm run --kernel FILE [flags]\n\nFlags:\n%s\nWith a terminal on stdin, Ctrl-A x quits and Ctrl-A h lists the other keys.\nSIGUSR1 prints live statistics on stderr when --stats is on.\n", fs.FlagUsages())
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "gvmm: %v\n", err)
		return statusUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "gvmm: unexpected argument %q (flags only; see gvmm run --help)\n", fs.Arg(0))
		return statusUsage
	}
	if f.kernel == "" {
		fmt.Fprintln(stderr, "gvmm: --kernel is required (a bzImage or an ELF vmlinux)")
		return statusUsage
	}
	mem, err := parseSize(f.memory)
	if err != nil {
		fmt.Fprintf(stderr, "gvmm: --memory: %v\n", err)
		return statusUsage
	}
	entry, err := boot.ParseEntryMode(f.entry)
	if err != nil {
		fmt.Fprintf(stderr, "gvmm: --entry: %v\n", err)
		return statusUsage
	}

	disks, err := parseDisks(f.disks)
	if err != nil {
		fmt.Fprintf(stderr, "gvmm: %v\n", err)
		return statusUsage
	}

	nets, err := parseNets(f.nets)
	if err != nil {
		fmt.Fprintf(stderr, "gvmm: %v\n", err)
		return statusUsage
	}

	var log io.Writer
	if f.verbose {
		log = stderr
	}
	con := newConsole(stdin, stdout)
	m, err := machine.New(machine.Config{
		Kernel: f.kernel, Initrd: f.initrd, Cmdline: f.cmdline, NoDefaultCmdline: f.noDefaultCmdline,
		CPUs: f.cpus, Memory: mem, Entry: entry,
		Console: con.out, ConsoleIn: con.in, Log: log, NoFallback: f.noFallback, KVMDevice: f.kvmDevice,
		Disks: disks, Nets: nets,
	})
	if err != nil {
		fmt.Fprintf(stderr, "gvmm: %s%v%s%s\n", flagOf(err), oneLine(err), diskHint(err), netHint(err))
		return statusUsage
	}
	defer m.Close()

	obs, err := newObservers(m, f, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "gvmm: %v\n", oneLine(err))
		return statusUsage
	}

	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	go func() {
		select {
		case s := <-sigs:
			cancel(fmt.Errorf("signal %v", s))
		case <-ctx.Done():
		}
	}()

	// Raw mode last, so every error above leaves the terminal alone; the
	// deferred restore covers every return below, and signals end up here
	// through the context.
	restore, err := con.start(func() { cancel(errors.New("Ctrl-A x")) })
	if err != nil {
		fmt.Fprintf(stderr, "gvmm: terminal: %v\n", err)
		return statusUsage
	}
	defer restore()

	if log != nil {
		fmt.Fprintf(log, "gvmm: set up in %v; entering the guest\n", time.Since(processStart).Round(time.Microsecond))
	}
	res, err := m.Run(ctx)
	restore()
	if err != nil {
		fmt.Fprintf(stderr, "gvmm: %v\n", oneLine(err))
		return statusFailed
	}
	if log != nil {
		fmt.Fprintf(log, "gvmm: first KVM_RUN %v after process start; ran %v\n",
			res.Started.Sub(processStart).Round(time.Microsecond), res.Ended.Sub(res.Started).Round(time.Millisecond))
		fmt.Fprintf(log, "gvmm: exits to userspace by kind: %v\n", res.Exits)
		fmt.Fprintf(log, "gvmm: instruction fallbacks: %v\n", res.Fallbacks)
		total, failed := m.BlockRequests()
		for i := range total {
			fmt.Fprintf(log, "gvmm: disk vd%c: %d requests, %d failed\n", 'a'+i, total[i], failed[i])
		}
		for i, s := range m.NetStats() {
			fmt.Fprintf(log, "gvmm: net %d: sent %d frames (%d bytes), %d malformed, %d refused by the tap; received %d frames (%d bytes), %d dropped, %d malformed\n",
				i, s.TXFrames, s.TXBytes, s.TXMalformed, s.TXErrors, s.RXFrames, s.RXBytes, s.RXDropped, s.RXMalformed)
		}
		if kb, err := peakRSS(); err == nil {
			fmt.Fprintf(log, "gvmm: peak RSS %d MiB\n", kb>>10)
		}
	}
	if err := obs.finish(res, stderr); err != nil {
		fmt.Fprintf(stderr, "gvmm: %v\n", oneLine(err))
	}
	return report(res, stderr)
}

// report prints the outcome where it needs saying and returns the status.
func report(res *machine.Result, stderr io.Writer) int {
	switch res.Outcome {
	case machine.PowerOff:
	case machine.TestExit:
	case machine.Reset:
		fmt.Fprintf(stderr, "gvmm: the guest reset (%s)\n", res.Detail)
	case machine.Stopped:
		fmt.Fprintf(stderr, "gvmm: %s\n", res.Detail)
	case machine.Failed:
		fmt.Fprintf(stderr, "gvmm: %v\n", oneLine(res.Err))
		var d interface{ Details() string }
		if errors.As(res.Err, &d) {
			fmt.Fprint(stderr, d.Details())
		}
	}
	if res.Err != nil && res.Outcome != machine.Failed {
		fmt.Fprintf(stderr, "gvmm: %v\n", oneLine(res.Err))
	}
	return exitStatus(res)
}

// peakRSS returns the process's peak resident set in KiB: VmHWM of
// /proc/self/status (proc(5)). Not getrusage's ru_maxrss: execve folds the
// RSS of the address space it replaces into that, and Go starts commands
// with CLONE_VM, so a gvmm started by a large process (a go test binary
// booting guests itself) would report its parent's peak.
func peakRSS() (uint64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return 0, errors.New("no VmHWM in /proc/self/status")
}

// configFlags names the flag behind each machine.Config field that
// machine.New can refuse.
var configFlags = map[string]string{"CPUs": "--cpus", "Memory": "--memory"}

// flagOf returns "--flag: " for an error in a value that came from a flag.
func flagOf(err error) string {
	var ce *machine.ConfigError
	if errors.As(err, &ce) && configFlags[ce.Field] != "" {
		return configFlags[ce.Field] + ": "
	}
	return ""
}

// oneLine keeps an error message to one line.
func oneLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}
