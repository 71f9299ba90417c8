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
	"github.com/gvmm/gvmm/kvm/kvmtest"
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
	h := Host{Backend: "kvm_pvm", EmulatesKernel: true, Forced: []cpuid.Feature{cpuid.XSAVE, cpuid.POPCNT}}
	assert.Equal(t, []string{"clearcpuid=xsave,popcnt", "rcupdate.rcu_cpu_stall_suppress=1", "nowatchdog",
		"initcall_blacklist=ftrace_check_for_weak_functions,trace_eval_init", "cryptomgr.notests=1"}, h.cmdlineParams())
	assert.Empty(t, Host{Backend: "kvm"}.cmdlineParams())
	assert.Nil(t, Host{Backend: "kvm"}.hides())
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
