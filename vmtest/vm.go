package vmtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gvmm/gvmm/kvm/kvmtest"
	"github.com/gvmm/gvmm/machine"
)

// Defaults of a VM's options.
const (
	DefaultCPUs          = 1
	DefaultMemory        = 256 << 20
	DefaultTimeout       = 10 * time.Minute
	DefaultExpectTimeout = 2 * time.Minute
)

// deadlineMargin is kept between a VM's timeout and the test binary's
// -timeout, so that the VM is stopped, and the test fails with the console
// log, before `go test` panics with a goroutine dump.
const deadlineMargin = 30 * time.Second

type config struct {
	name          string
	kernel        string
	initramfs     string
	noInitramfs   bool
	cmdline       []string
	cpus          int
	memory        uint64
	timeout       time.Duration
	expectTimeout time.Duration
	disks         []Disk
	consoleCopy   io.Writer
}

// Option configures a VM.
type Option func(*config)

// WithName names the VM in messages (default: the test's name).
func WithName(name string) Option { return func(c *config) { c.name = name } }

// WithKernel boots the kernel at path (a bzImage or an ELF vmlinux)
// instead of GVMM_KERNEL's.
func WithKernel(path string) Option { return func(c *config) { c.kernel = path } }

// WithInitramfs boots with the initramfs at path instead of
// GVMM_INITRAMFS's; "" boots with none.
func WithInitramfs(path string) Option {
	return func(c *config) { c.initramfs, c.noInitramfs = path, path == "" }
}

// WithCmdline adds args to the kernel command line, after gvmm's default
// (machine.DefaultCmdline) and GVMM_CMDLINE.
func WithCmdline(args ...string) Option {
	return func(c *config) { c.cmdline = append(c.cmdline, args...) }
}

// WithCPUs sets the number of vCPUs (default 1).
func WithCPUs(n int) Option { return func(c *config) { c.cpus = n } }

// WithMemory sets the guest's RAM in bytes (default 256 MiB).
func WithMemory(bytes uint64) Option { return func(c *config) { c.memory = bytes } }

// WithTimeout bounds the VM's life (default 10 minutes, and always ending
// before the test binary's -timeout): when it passes, the VM is stopped
// and Wait returns an error saying so.
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithExpectTimeout sets how long Console.ExpectString and ExpectRegexp
// wait (default 2 minutes).
func WithExpectTimeout(d time.Duration) Option { return func(c *config) { c.expectTimeout = d } }

// WithConsoleCopy also writes the guest's console output to w as it
// comes (os.Stdout, to watch a guest while developing a test).
func WithConsoleCopy(w io.Writer) Option { return func(c *config) { c.consoleCopy = w } }

// Disk is a host file attached to the guest as a virtio-blk disk.
type Disk struct {
	// Path is the image file (raw), locked while the VM runs.
	Path string
	// ReadOnly attaches it read-only.
	ReadOnly bool
}

// WithDisk attaches a disk as a virtio-blk device on PCI (the guest's
// kernel needs virtio-pci and virtio-blk: built in, or modules in the
// image). The guest sees disks as /dev/vda, /dev/vdb, ... in the order
// given. A disk that cannot be opened or locked fails the test.
func WithDisk(d Disk) Option { return func(c *config) { c.disks = append(c.disks, d) } }

// VM is a guest started by Start.
type VM struct {
	// Console is the guest's serial console.
	Console *Console

	name    string
	tb      testing.TB
	m       *machine.Machine
	timeout time.Duration
	cancel  context.CancelCauseFunc
	in      *io.PipeWriter
	started time.Time

	done    chan struct{} // closed when Run has returned and the machine is closed
	res     *machine.Result
	endErr  error // why the VM ended, when not through the test-exit port
	logOnce sync.Once
}

// Errors of a stopped VM (see ExitError.Reason).
var (
	// ErrTimeout: the VM's timeout (WithTimeout) passed.
	ErrTimeout = errors.New("timed out")
	// ErrKilled: Kill stopped the VM.
	ErrKilled = errors.New("killed")
	// ErrTestEnded: the test ended while the VM was running.
	ErrTestEnded = errors.New("the test ended")
)

// Start boots a VM for the test and returns at once; the guest runs until
// it powers off, resets or reports its verdict, the timeout passes, Kill
// is called or the test ends. The VM is stopped and its resources freed by
// tb.Cleanup, which also logs the whole console when the test failed.
//
// The test is skipped, with a message CI recognizes, when the host has no
// usable /dev/kvm ("KVM tests skipped: ...") or no kernel is configured
// (SkipNoKernel), and in a prebuild run (EnvPrebuild); it fails when the
// kernel or initramfs named cannot be used.
func Start(tb testing.TB, opts ...Option) *VM {
	tb.Helper()
	cfg := config{name: tb.Name(), cpus: DefaultCPUs, memory: DefaultMemory,
		timeout: DefaultTimeout, expectTimeout: DefaultExpectTimeout}
	for _, o := range opts {
		o(&cfg)
	}
	skipIfPrebuild(tb)
	kvmtest.SkipIfUnavailable(tb)
	g := GuestFromEnv()
	if cfg.kernel == "" {
		cfg.kernel = g.Kernel
	}
	if cfg.kernel == "" {
		tb.Skipf("%s set %s (and %s, %s) or run `make guest`", SkipNoKernel, EnvKernel, EnvInitramfs, EnvCmdline)
	}
	if cfg.initramfs == "" && !cfg.noInitramfs {
		cfg.initramfs = g.Initramfs
	}
	for _, f := range []struct{ what, path string }{{"kernel", cfg.kernel}, {"initramfs", cfg.initramfs}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			tb.Fatalf("vmtest: %s: %s: %v (set %s, or run `make guest`)", cfg.name, f.what, err, map[string]string{"kernel": EnvKernel, "initramfs": EnvInitramfs}[f.what])
		}
	}
	cmdline := strings.TrimSpace(strings.Join(append([]string{g.Cmdline}, cfg.cmdline...), " "))
	cfg.timeout = fitDeadline(tb, cfg.timeout)

	pr, pw := io.Pipe()
	vm := &VM{name: cfg.name, tb: tb, timeout: cfg.timeout, in: pw, done: make(chan struct{})}
	vm.Console = newConsole(pw, cfg.expectTimeout, cfg.consoleCopy)
	vm.started = vm.Console.start
	disks := make([]machine.Disk, 0, len(cfg.disks))
	for _, d := range cfg.disks {
		disks = append(disks, machine.Disk{Path: d.Path, ReadOnly: d.ReadOnly})
	}
	m, err := machine.New(machine.Config{
		Kernel: cfg.kernel, Initrd: cfg.initramfs, Cmdline: cmdline,
		CPUs: cfg.cpus, Memory: cfg.memory, Disks: disks,
		Console: consoleSink{vm.Console}, ConsoleIn: pr,
	})
	if err != nil {
		pw.Close()
		tb.Fatalf("vmtest: %s: %v", cfg.name, err)
	}
	vm.m = m
	ctx, cancel := context.WithCancelCause(context.Background())
	vm.cancel = cancel
	timer := time.AfterFunc(cfg.timeout, func() { cancel(ErrTimeout) })
	tb.Cleanup(func() {
		vm.stop(ErrTestEnded)
		if tb.Failed() {
			vm.logConsole()
		}
	})
	go func() {
		defer close(vm.done)
		defer timer.Stop()
		res, err := m.Run(ctx)
		if err == nil {
			vm.res = res
			vm.endErr = vm.explain(res, context.Cause(ctx))
		} else {
			vm.endErr = fmt.Errorf("vmtest: %s: %w", vm.name, err)
		}
		// The machine's input goroutine may be blocked reading the
		// pipe: closing it lets it return.
		pw.CloseWithError(io.EOF)
		pr.Close()
		m.Close()
		why := vm.endErr
		if why == nil {
			why = fmt.Errorf("test-exit value %d", res.TestExitValue)
		}
		vm.Console.end(why)
	}()
	return vm
}

// fitDeadline shortens d so that the VM stops deadlineMargin before the
// test binary's deadline (go test -timeout).
func fitDeadline(tb testing.TB, d time.Duration) time.Duration {
	dl, ok := tb.(interface{ Deadline() (time.Time, bool) })
	if !ok {
		return d
	}
	when, ok := dl.Deadline()
	if !ok {
		return d
	}
	left := time.Until(when)
	if left > 2*deadlineMargin {
		left -= deadlineMargin
	} else {
		left /= 2
	}
	return min(d, left)
}

// ExitError says why a VM ended without a verdict on the test-exit port.
type ExitError struct {
	// Name is the VM's name.
	Name string
	// Outcome and Detail are the machine's (machine.Result).
	Outcome machine.Outcome
	Detail  string
	// Reason is ErrTimeout, ErrKilled or ErrTestEnded for a VM stopped
	// from the host, nil otherwise.
	Reason error
	// Timeout is the VM's timeout, for ErrTimeout.
	Timeout time.Duration
	// Panic is the guest kernel's "Kernel panic - not syncing" line, if
	// it printed one.
	Panic string
	// Err is the VMM's failure, for a Failed outcome.
	Err error
}

func (e *ExitError) Error() string {
	var what string
	switch e.Outcome {
	case machine.PowerOff:
		what = fmt.Sprintf("the guest powered off (%s) without a verdict on the test-exit port", e.Detail)
	case machine.Reset:
		what = fmt.Sprintf("the guest reset (%s)", e.Detail)
	case machine.Stopped:
		switch e.Reason {
		case ErrTimeout:
			what = fmt.Sprintf("the VM timed out after %v", e.Timeout)
		case nil:
			what = "the VM was stopped: " + e.Detail
		default:
			what = "the VM was stopped: " + e.Reason.Error()
		}
	case machine.Failed:
		what = fmt.Sprintf("the VMM failed: %v", e.Err)
	default:
		what = fmt.Sprintf("the VM ended: %s: %s", e.Outcome, e.Detail)
	}
	if e.Panic != "" {
		what = fmt.Sprintf("the guest kernel panicked (%s); %s", e.Panic, what)
	}
	return fmt.Sprintf("vmtest: %s: %s", e.Name, what)
}

func (e *ExitError) Unwrap() error {
	if e.Reason != nil {
		return e.Reason
	}
	return e.Err
}

// explain returns nil for a verdict, else the ExitError for res; cause is
// the run context's cause.
func (vm *VM) explain(res *machine.Result, cause error) error {
	if res.Outcome == machine.TestExit {
		return nil
	}
	e := &ExitError{Name: vm.name, Outcome: res.Outcome, Detail: res.Detail, Err: res.Err,
		Panic: vm.Console.kernelPanic()}
	if res.Outcome == machine.Stopped {
		e.Reason = cause
		if errors.Is(cause, ErrTimeout) {
			e.Reason, e.Timeout = ErrTimeout, vm.timeout
		}
	}
	return e
}

// Wait waits for the VM to end and returns the guest's verdict: the value
// it wrote to the test-exit port (0 conventionally meaning success). When
// the VM ended any other way it returns an *ExitError naming why: power
// off, reset (and a kernel panic before it), timeout, Kill, a VMM failure.
func (vm *VM) Wait() (uint32, error) {
	<-vm.done
	if vm.endErr != nil {
		return 0, vm.endErr
	}
	return vm.res.TestExitValue, nil
}

// Done is closed when the VM has ended.
func (vm *VM) Done() <-chan struct{} { return vm.done }

// Result returns the machine's account of how the VM ended (exit counts
// and all), or nil while it runs.
func (vm *VM) Result() *machine.Result {
	select {
	case <-vm.done:
		return vm.res
	default:
		return nil
	}
}

// Kill stops the VM and waits until it has ended. Wait then returns an
// ExitError with Reason ErrKilled, unless the VM had ended already.
func (vm *VM) Kill() { vm.stop(ErrKilled) }

func (vm *VM) stop(why error) {
	vm.cancel(why)
	<-vm.done
}

// logConsole writes the whole console log to the test's log, once.
func (vm *VM) logConsole() {
	vm.logOnce.Do(func() {
		how := "running"
		select {
		case <-vm.done:
			how = "ended: "
			if vm.endErr != nil {
				how += vm.endErr.Error()
			} else {
				how += fmt.Sprintf("test-exit value %d", vm.res.TestExitValue)
			}
		default:
		}
		vm.tb.Logf("vmtest: %s: serial console (%s):\n%s", vm.name, how, vm.Console.String())
	})
}

// SkipPrebuild starts the message of a test skipped because the run only
// prebuilds images (EnvPrebuild=1).
const SkipPrebuild = "vmtest: prebuild only:"

// skipIfPrebuild skips the test in a prebuild run: its images are built
// by then, and it boots nothing.
func skipIfPrebuild(tb testing.TB) {
	tb.Helper()
	if os.Getenv(EnvPrebuild) == "1" {
		tb.Skipf("%s %s=1 builds the images and boots no VM", SkipPrebuild, EnvPrebuild)
	}
}

// skipIfNoKVM skips the test, with the message CI recognizes, when
// /dev/kvm cannot be used.
func skipIfNoKVM(tb testing.TB) {
	tb.Helper()
	kvmtest.SkipIfUnavailable(tb)
}
