package machine

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gvmm/gvmm/boot/boottest"
	"github.com/gvmm/gvmm/kvm"
	"github.com/gvmm/gvmm/kvm/kvmtest"
	"github.com/gvmm/gvmm/vcpu"
	"github.com/gvmm/gvmm/vcpu/cpuid"
)

// boot runs a tiny kernel whose 64-bit entry is code and returns the result.
func bootTiny(t *testing.T, code []byte, in string) (*Result, string) {
	t.Helper()
	kvmtest.SkipIfUnavailable(t)
	k := filepath.Join(t.TempDir(), "vmlinux")
	require.NoError(t, os.WriteFile(k, boottest.ELF(code), 0o644))
	var out bytes.Buffer
	cfg := Config{Kernel: k, CPUs: 1, Memory: 32 << 20, Console: &out}
	if in != "" {
		cfg.ConsoleIn = strings.NewReader(in)
	}
	m, err := New(cfg)
	require.NoError(t, err)
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := m.Run(ctx)
	require.NoError(t, err)
	return res, out.String()
}

// TestGuestEndings checks each way a guest can end the VM, through the
// whole machine: devices on the bus, callbacks, outcome.
func TestGuestEndings(t *testing.T) {
	for _, tc := range []struct {
		name    string
		code    []byte
		outcome Outcome
		detail  string
		value   uint32
	}{
		{"test-exit port", []byte{0xB0, 0x2A, 0xE6, 0xF4, 0xF4}, // mov al, 42; out 0xf4, al; hlt
			TestExit, "test-exit value 42", 42},
		{"test-exit port, 32-bit write", []byte{0xB8, 0x05, 0x01, 0x00, 0x00, 0xE7, 0xF4, 0xF4}, // mov eax, 0x105; out 0xf4, eax
			TestExit, "test-exit value 261", 0x105},
		{"ACPI S5", []byte{0x66, 0xBA, 0x04, 0x06, 0x66, 0xB8, 0x00, 0x34, 0x66, 0xEF, 0xF4}, // mov dx, 0x604; mov ax, 0x3400; out dx, ax
			PowerOff, "ACPI S5", 0},
		{"ACPI reset register", []byte{0x66, 0xBA, 0x06, 0x06, 0xB0, 0x01, 0xEE, 0xF4}, // mov dx, 0x606; mov al, 1; out dx, al
			Reset, "ACPI reset register", 0},
		{"i8042 reset", []byte{0xB0, 0xFE, 0xE6, 0x64, 0xF4}, // mov al, 0xfe; out 0x64, al
			Reset, "i8042 reset", 0},
		{"triple fault", []byte{0x0F, 0x0B}, // ud2 with an empty IDT
			Reset, "triple fault on vCPU 0", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, _ := bootTiny(t, tc.code, "")
			assert.Equal(t, tc.outcome, res.Outcome, "%+v", res)
			assert.Equal(t, tc.detail, res.Detail)
			assert.Equal(t, tc.value, res.TestExitValue)
			assert.NoError(t, res.Err)
		})
	}
}

// TestConsoleEcho feeds a byte to the serial port and has the guest echo
// it back, then exit: input reaches the guest, output reaches Console.
func TestConsoleEcho(t *testing.T) {
	code := []byte{
		0x66, 0xBA, 0xFD, 0x03, // mov dx, 0x3fd (LSR)
		0xEC,       // wait: in al, dx
		0xA8, 0x01, // test al, 1 (data ready)
		0x74, 0xFB, // jz wait
		0x66, 0xBA, 0xF8, 0x03, // mov dx, 0x3f8
		0xEC,       // in al, dx (RBR)
		0xEE,       // out dx, al (THR)
		0xE6, 0xF4, // out 0xf4, al
		0xF4,
	}
	res, out := bootTiny(t, code, "Z")
	assert.Equal(t, TestExit, res.Outcome, "%+v", res)
	assert.Equal(t, uint32('Z'), res.TestExitValue)
	assert.Equal(t, "Z", out)
	assert.Positive(t, res.Exits["io-in"])
}

func TestCmdlineParams(t *testing.T) {
	pvm := Host{Backend: "kvm_pvm", EmulatesKernel: true}.adaptations(false)
	assert.Equal(t, []string{"clearcpuid=xsave,popcnt", "rcupdate.rcu_cpu_stall_suppress=1", "nowatchdog",
		"initcall_blacklist=ftrace_check_for_weak_functions,trace_eval_init", "cryptomgr.notests=1"},
		pvm.cmdlineParams([]cpuid.Feature{cpuid.XSAVE, cpuid.POPCNT}))
	assert.Empty(t, Host{Backend: "kvm"}.adaptations(false).cmdlineParams(nil))
}

// TestAdaptations checks which of gvmm's workarounds each kind of host
// gets, from a fake module list: all of them on kvm_pvm (the fallback and
// what depends on it unless turned off), none anywhere else.
func TestAdaptations(t *testing.T) {
	for _, tc := range []struct {
		name       string
		modules    []string
		noFallback bool
		want       adaptations
		backend    string
	}{
		{"hardware KVM", []string{"kvm", "kvm_amd"}, false, adaptations{}, "kvm"},
		{"hardware KVM, --no-fallback", []string{"kvm", "kvm_intel"}, true, adaptations{}, "kvm"},
		{"kvm_pvm", []string{"kvm", "kvm_pvm"}, false,
			adaptations{hide: emulatorHides, fallback: true, watchdog: true, syscallTrap: true, tuning: true}, "kvm_pvm"},
		{"kvm_pvm, --no-fallback", []string{"kvm_pvm"}, true,
			adaptations{hide: emulatorHides, tuning: true}, "kvm_pvm"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := t.TempDir()
			for _, m := range tc.modules {
				require.NoError(t, os.Mkdir(filepath.Join(sys, m), 0o755))
			}
			h := detectHost(sys)
			assert.Equal(t, tc.backend, h.Backend)
			a := h.adaptations(tc.noFallback)
			assert.Equal(t, tc.want, a)
			if !h.EmulatesKernel {
				assert.Equal(t, "none", a.String())
				assert.Empty(t, a.cmdlineParams(nil))
			}
		})
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[uint64]string{512: "512 B", 16 << 20: "16 MiB", 3 << 29: "1.5 GiB", 64 << 40: "64 TiB"} {
		assert.Equal(t, want, humanBytes(n))
	}
}

// countSampler counts samples per RIP for TestSampling.
type countSampler struct {
	mu   sync.Mutex
	rips map[uint64]int
}

func (s *countSampler) Sample(_ int, rip uint64) {
	s.mu.Lock()
	s.rips[rip]++
	s.mu.Unlock()
}

// TestSampling runs a kernel that spins in one place with a 10 ms sampler:
// the samples keep coming and all name the spinning instruction.
func TestSampling(t *testing.T) {
	kvmtest.SkipIfUnavailable(t)
	k := filepath.Join(t.TempDir(), "vmlinux")
	require.NoError(t, os.WriteFile(k, boottest.ELF([]byte{0xEB, 0xFE}), 0o644)) // jmp .
	m, err := New(Config{Kernel: k, CPUs: 1, Memory: 32 << 20, Console: io.Discard})
	require.NoError(t, err)
	defer m.Close()
	s := &countSampler{rips: map[uint64]int{}}
	m.SetHooks(Hooks{Sampler: s, SampleEvery: 10 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	res, err := m.Run(ctx)
	require.NoError(t, err)
	assert.Equal(t, Stopped, res.Outcome)
	s.mu.Lock()
	defer s.mu.Unlock()
	require.Len(t, s.rips, 1, "one spinning instruction: %v", s.rips)
	for _, n := range s.rips {
		assert.GreaterOrEqual(t, n, 10, "about 50 samples in 500 ms")
	}
}

// newTiny makes a machine whose kernel's 64-bit entry is code, with cfg's
// console and timing settings; Close runs at the end of the test.
func newTiny(t *testing.T, code []byte, cfg Config) *Machine {
	t.Helper()
	kvmtest.SkipIfUnavailable(t)
	k := filepath.Join(t.TempDir(), "vmlinux")
	require.NoError(t, os.WriteFile(k, boottest.ELF(code), 0o644))
	cfg.Kernel, cfg.CPUs, cfg.Memory = k, 1, 32<<20
	m, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, m.Close()) })
	return m
}

// Test guests: one that writes "x\n" to the serial port and spins, and one
// that spins at once.
var (
	printSpin = []byte{
		0x66, 0xBA, 0xF8, 0x03, // mov dx, 0x3f8
		0xB0, 'x', 0xEE, // mov al, 'x'; out dx, al
		0xB0, '\n', 0xEE, // mov al, '\n'; out dx, al
		0xEB, 0xFE, // jmp .
	}
	spin = []byte{0xEB, 0xFE}
)

// signalWriter closes wrote at its first Write.
type signalWriter struct {
	once  sync.Once
	wrote chan struct{}
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.wrote) })
	return len(p), nil
}

func runWithin(t *testing.T, m *Machine, ctx context.Context) *Result {
	t.Helper()
	res, err := m.Run(ctx)
	require.NoError(t, err)
	return res
}

// TestStopBeforeRun: Stop before Run makes Run return at once, the guest
// never entered.
func TestStopBeforeRun(t *testing.T) {
	m := newTiny(t, spin, Config{})
	m.Stop("stopped early")
	res := runWithin(t, m, context.Background())
	assert.Equal(t, Stopped, res.Outcome)
	assert.Equal(t, "stopped early", res.Detail)
	var exits uint64
	for _, n := range res.Exits {
		exits += n
	}
	assert.Zero(t, exits, "no vCPU entered the guest")
	_, err := m.Run(context.Background())
	assert.ErrorContains(t, err, "Run called twice")
}

// TestStopDuringRun: Stop while the guest runs ends Run.
func TestStopDuringRun(t *testing.T) {
	con := &signalWriter{wrote: make(chan struct{})}
	m := newTiny(t, printSpin, Config{Console: con})
	go func() {
		<-con.wrote
		m.Stop("stopped by the test")
	}()
	res := runWithin(t, m, context.Background())
	assert.Equal(t, Stopped, res.Outcome)
	assert.Equal(t, "stopped by the test", res.Detail)
}

// TestCloseDuringRun: Close while the guest runs stops the VM, waits for
// Run to return, and only then releases the vCPUs and memory.
func TestCloseDuringRun(t *testing.T) {
	con := &signalWriter{wrote: make(chan struct{})}
	m := newTiny(t, printSpin, Config{Console: con})
	closed := make(chan error, 1)
	go func() {
		<-con.wrote
		closed <- m.Close()
	}()
	res := runWithin(t, m, context.Background())
	assert.Equal(t, Stopped, res.Outcome)
	assert.Equal(t, "machine closed", res.Detail)
	assert.NoError(t, <-closed)
	_, err := m.Run(context.Background())
	assert.ErrorContains(t, err, "after Close")
}

// TestRunEndsWithStuckConsole: a Console that never returns from Write
// does not keep Run from returning once ctx is done; the lost output is
// reported.
func TestRunEndsWithStuckConsole(t *testing.T) {
	con := stuckWriter{release: make(chan struct{})}
	defer close(con.release)
	m := newTiny(t, printSpin, Config{Console: con, ConsoleDrain: 200 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	res := runWithin(t, m, ctx)
	assert.Equal(t, Stopped, res.Outcome)
	assert.ErrorIs(t, res.Err, errStuck)
	assert.ErrorIs(t, m.Close(), errStuck, "Close reports it too")
}

// TestConsoleInReleased: once Run has returned, nothing reads ConsoleIn;
// bytes written to it afterwards are still there for their owner.
func TestConsoleInReleased(t *testing.T) {
	for _, tc := range []struct {
		name string
		pipe func(t *testing.T) (*os.File, *os.File)
	}{
		{"os.Pipe", func(t *testing.T) (*os.File, *os.File) {
			r, w, err := os.Pipe()
			require.NoError(t, err)
			t.Cleanup(func() { r.Close(); w.Close() })
			return r, w
		}},
		{"blocking descriptor", blockingPipe},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, w := tc.pipe(t)
			m := newTiny(t, spin, Config{ConsoleIn: r})
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			res := runWithin(t, m, ctx)
			assert.Equal(t, Stopped, res.Outcome)
			_, err := w.Write([]byte("z"))
			require.NoError(t, err)
			b := make([]byte, 4)
			n, err := r.Read(b)
			require.NoError(t, err)
			assert.Equal(t, "z", string(b[:n]))
		})
	}
}

// TestIdleVCPUKicks: a vCPU halted in the guest (cli; hlt, which the
// in-kernel irqchip handles without an exit) is never kicked on hosts that
// run guest kernel code themselves; only on kvm_pvm does the hang watchdog
// probe it, about once a second.
func TestIdleVCPUKicks(t *testing.T) {
	m := newTiny(t, []byte{0xFA, 0xF4}, Config{})
	var mu sync.Mutex
	kicks := 0
	m.SetHooks(Hooks{Kick: func(int) { mu.Lock(); kicks++; mu.Unlock() }})
	go func() {
		time.Sleep(4 * watchPeriod)
		m.Stop("idle long enough")
	}()
	res := runWithin(t, m, context.Background())
	assert.Equal(t, "idle long enough", res.Detail)
	mu.Lock()
	defer mu.Unlock()
	kicks-- // Stop's own kick
	if m.Host().EmulatesKernel {
		assert.Positive(t, kicks, "the watchdog probes a quiet vCPU on %s", m.Host().Backend)
	} else {
		assert.Zero(t, kicks, "no watchdog on a %s host", m.Host().Backend)
	}
}

// TestEmulationFailureReported: code fetched from MMIO (a jump into the
// 32-bit hole) is an emulation failure for KVM. Only kvm_pvm hands such
// exits to the instruction fallback; elsewhere the VM ends with a report
// that names the exit and the vCPU state.
func TestEmulationFailureReported(t *testing.T) {
	m := newTiny(t, []byte{
		0xB8, 0x00, 0x00, 0x00, 0xD0, // mov eax, 0xd0000000
		0xFF, 0xE0, // jmp rax
	}, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res := runWithin(t, m, ctx)
	require.Equal(t, Failed, res.Outcome, "%+v", res)
	var ue *vcpu.UnhandledExitError
	require.ErrorAs(t, res.Err, &ue)
	assert.Equal(t, uint32(kvm.ExitInternalError), ue.Reason)
	assert.Contains(t, ue.State, "RIP 0xd0000000")
	if !m.Host().EmulatesKernel {
		assert.Contains(t, ue.What, "emulation failure")
		assert.Empty(t, res.Fallbacks)
	}
	t.Logf("%v\n%s", res.Err, ue.State)
}
