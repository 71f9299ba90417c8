// Command emuhost runs a command where KVM works: directly when this
// machine's /dev/kvm is usable, otherwise inside an emulated KVM host
// (QEMU's software CPU with AMD SVM, Debian's kernel with kvm-amd; see
// package emuhost and docs/testing.md).
//
//	emuhost [flags] [--] COMMAND [ARG...]
//	emuhost --prepare
//
// It exits with the command's status, or 125 when the emulated host itself
// fails (one line on stderr says why).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/gvmm/gvmm/emuhost"
	"github.com/gvmm/gvmm/kvm"
)

// statusFailed is the exit status when emuhost itself fails, as env(1)
// and chroot(1) use it: 126 and 127 stay the command's "cannot run" and
// "not found".
const statusFailed = 125

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

const usage = `emuhost - run a command where KVM works: directly with a usable /dev/kvm,
otherwise inside an emulated KVM host (QEMU TCG with AMD SVM and kvm-amd)

Usage: emuhost [flags] [--] COMMAND [ARG...]
       emuhost --prepare

The command runs with the same working folder, environment and file paths.
Its output streams to stdout; emuhost exits with its status (125: the
emulated host failed). Flags default to the environment variables shown.

`

func run(args []string, stdin *os.File, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("emuhost", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SetInterspersed(false)
	var (
		mode     = fs.String("mode", os.Getenv(emuhost.ModeEnv), "always, never or auto: when to use the emulated host ("+emuhost.ModeEnv+")")
		cpus     = fs.Int("cpus", envInt("GVMM_EMULATED_HOST_CPUS", runtime.NumCPU()), "the host's CPUs (GVMM_EMULATED_HOST_CPUS)")
		memory   = fs.String("memory", envOr("GVMM_EMULATED_HOST_MEMORY", emuhost.DefaultMemory), "the host's RAM, as QEMU's -m (GVMM_EMULATED_HOST_MEMORY)")
		appendCL = fs.String("append", os.Getenv("GVMM_EMULATED_HOST_APPEND"), "added to the host kernel's command line (GVMM_EMULATED_HOST_APPEND)")
		cache    = fs.String("cache", os.Getenv("GVMM_EMULATED_HOST_CACHE"), "folder for the host's kernel and initramfs (GVMM_EMULATED_HOST_CACHE; default .cache/emuhost of the gvmm repository, or the user cache)")
		kernel   = fs.String("kernel-package", os.Getenv("GVMM_EMULATED_HOST_KERNEL"), "Debian kernel image package of the host (GVMM_EMULATED_HOST_KERNEL; default: what "+emuhost.DefaultPackages.KernelMeta+" depends on)")
		timeout  = fs.Duration("timeout", 0, "stop the host after this long (0: never)")
		retries  = fs.Int("retries", 0, "run the command again from the start, in a new host, up to this many times when the host crashes or locks up under it")
		prepare  = fs.Bool("prepare", false, "only build the host's kernel and initramfs, and print their folder")
		quiet    = fs.BoolP("quiet", "q", false, "do not say that the emulated host is used")
		verbose  = fs.BoolP("verbose", "v", false, "show the QEMU command and the host kernel's messages")
		holdVM   = fs.String("hold-vm", "", "inside the emulated host: hold a KVM VM open for its life, creating FILE once done (see emuhost.HoldVM)")
	)
	fs.MarkHidden("hold-vm")
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "emuhost: %v (try emuhost --help)\n", err)
		return statusFailed
	}
	if *holdVM != "" {
		err := emuhost.HoldVM(*holdVM) // returns only on failure
		fmt.Fprintf(stderr, "emuhost: %v\n", err)
		return statusFailed
	}
	m, err := emuhost.ParseMode(*mode)
	if err != nil {
		fmt.Fprintf(stderr, "emuhost: %v\n", err)
		return statusFailed
	}
	argv := fs.Args()
	if len(argv) == 0 && !*prepare {
		fmt.Fprintln(stderr, "emuhost: no command (try emuhost --help)")
		return statusFailed
	}

	usable, why := kvm.Available()
	if !*prepare && !m.Emulate(usable) {
		return direct(argv, stderr)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	if !*prepare {
		if _, err := emuhost.FindQEMU(""); err != nil {
			fmt.Fprintf(stderr, "emuhost: %v\n", err)
			return statusFailed
		}
	}
	if *cache == "" {
		*cache = defaultCache()
	}
	pk := emuhost.DefaultPackages
	pk.Kernel = *kernel
	img, err := emuhost.Prepare(ctx, *cache, pk, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "emuhost: %v\n", err)
		return statusFailed
	}
	if *prepare {
		fmt.Fprintln(stdout, img.Dir)
		return 0
	}
	if !*quiet {
		reason := "GVMM_EMULATED_HOST=always"
		if !usable {
			reason = "no usable /dev/kvm here: " + why
		}
		fmt.Fprintf(stderr, "emuhost: %s; running %s in the emulated KVM host (QEMU TCG, AMD SVM, %d CPUs, %s RAM)\n",
			reason, filepath.Base(argv[0]), *cpus, *memory)
	}
	cfg := emuhost.Config{
		CPUs: *cpus, Memory: *memory, Append: *appendCL, Verbose: *verbose,
		RunDir: filepath.Join(*cache, "runs"), Stdin: stdin, Stdout: stdout, Stderr: stderr,
		Retries: *retries,
	}
	// This very program keeps a VM open in the host (emuhost.HoldVM):
	// the host sees this machine's files at the same paths.
	if exe, err := os.Executable(); err == nil {
		cfg.Holder = []string{exe, "--hold-vm"}
	} else {
		fmt.Fprintf(stderr, "emuhost: warning: no VM held open in the host (%v): the host may hang as emuhost.HoldVM explains\n", err)
	}
	status, err := emuhost.Run(ctx, img, cfg, argv)
	if err != nil {
		fmt.Fprintf(stderr, "emuhost: %v\n", err)
		return statusFailed
	}
	return status
}

// direct runs argv on this machine, as the emulated host would have.
func direct(argv []string, stderr io.Writer) int {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	// The command owns the terminal's signals; emuhost only waits.
	signal.Ignore(os.Interrupt, syscall.SIGQUIT)
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return exit.ExitCode()
	case errors.Is(err, exec.ErrNotFound), errors.Is(err, os.ErrNotExist):
		fmt.Fprintf(stderr, "emuhost: %v\n", err)
		return 127
	default:
		fmt.Fprintf(stderr, "emuhost: %v\n", err)
		return 126
	}
}

// defaultCache is .cache/emuhost in the gvmm repository that holds the
// working folder, or the user's cache folder outside one.
func defaultCache() string {
	if dir, err := os.Getwd(); err == nil {
		for d := dir; ; d = filepath.Dir(d) {
			if data, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil &&
				strings.HasPrefix(string(data), "module github.com/gvmm/gvmm\n") {
				return filepath.Join(d, ".cache", "emuhost")
			}
			if d == filepath.Dir(d) {
				break
			}
		}
	}
	if dir, err := os.UserCacheDir(); err == nil {
		return filepath.Join(dir, "gvmm", "emuhost")
	}
	return filepath.Join(os.TempDir(), "gvmm-emuhost")
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}
