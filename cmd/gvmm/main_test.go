package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gvmm/gvmm/boot/boottest"
	"github.com/gvmm/gvmm/kvm/kvmtest"
	"github.com/gvmm/gvmm/machine"
)

// bzImageHeader returns the first sectors of a bzImage whose setup header
// says protocol version, with setupSects setup sectors (Linux boot
// protocol, "The real-mode kernel header").
func bzImageHeader(version uint16, setupSects byte, size int) []byte {
	b := make([]byte, size)
	b[0x1f1] = setupSects
	binary.LittleEndian.PutUint16(b[0x1fe:], 0xAA55)
	copy(b[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(b[0x206:], version)
	return b
}

func write(t *testing.T, name string, data []byte) string {
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, data, 0o644))
	return p
}

// TestBadInput checks that every kind of bad input gets one line on stderr
// naming the problem and the usage status, never a stack trace.
func TestBadInput(t *testing.T) {
	kernel := write(t, "vmlinux", boottest.ELF([]byte{0xF4}))
	notKernel := write(t, "notes.txt", bytes.Repeat([]byte("not a kernel\n"), 100))
	truncated := write(t, "bzImage", bzImageHeader(0x020f, 30, 2048))
	old := write(t, "old-bzImage", bzImageHeader(0x0204, 4, 5*512+4096))
	bigInitrd := filepath.Join(t.TempDir(), "initrd")
	f, err := os.Create(bigInitrd)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(64<<20)) // sparse: costs no disk
	f.Close()

	prof := write(t, "guest.prof", []byte("gvmm-profile 1\n0 0xffffffff81000010 3\n"))
	for _, tc := range []struct {
		name    string
		args    []string
		want    string
		needKVM bool
	}{
		{"no kernel flag", []string{"run"}, "--kernel is required", false},
		{"unknown flag", []string{"run", "--kernel", kernel, "--bogus"}, "unknown flag: --bogus", false},
		{"missing kernel", []string{"run", "-k", "/nonexistent/bzImage"}, "/nonexistent/bzImage: no such file or directory", false},
		{"unreadable kernel", []string{"run", "-k", t.TempDir()}, "is a directory", false},
		{"not a kernel", []string{"run", "-k", notKernel}, "not a Linux kernel", false},
		{"truncated bzImage", []string{"run", "-k", truncated}, "the file has only 2048 bytes", false},
		{"old boot protocol", []string{"run", "-k", old}, "2.04", false},
		{"bad memory size", []string{"run", "-k", kernel, "-m", "lots"}, "invalid size", false},
		{"memory too small", []string{"run", "-k", kernel, "-m", "1M"}, "--memory: guest memory 1 MiB is too small", false},
		{"memory too large", []string{"run", "-k", kernel, "-m", "64T"}, "--memory: guest memory 64 TiB is more than this host has", false},
		{"zero cpus", []string{"run", "-k", kernel, "-c", "0"}, "--cpus: 0 vCPUs: a VM needs at least one", false},
		{"no kvm", []string{"run", "-k", kernel, "--kvm-device", "/nonexistent/kvm"}, "/nonexistent/kvm does not exist", false},
		{"too many cpus", []string{"run", "-k", kernel, "-c", "100000"}, "--cpus: 100000 vCPUs: this host's KVM allows at most", true},
		{"initrd too large", []string{"run", "-k", kernel, "-m", "32M", "-i", bigInitrd}, "initrd", true},
		{"command line too long", []string{"run", "-k", kernel, "-p", strings.Repeat("x", 4096)}, "command line", true},
		{"bad entry", []string{"run", "-k", kernel, "--entry", "sideways"}, "--entry", false},
		{"stray argument", []string{"run", "-k", kernel, "extra"}, "unexpected argument", false},
		{"unknown command", []string{"fly"}, "unknown command", false},
		{"profile-hz zero", []string{"run", "-k", kernel, "--profile", filepath.Join(t.TempDir(), "p"), "--profile-hz", "0"}, "--profile-hz 0", true},
		{"profile unwritable", []string{"run", "-k", kernel, "--profile", "/nonexistent/dir/p"}, "--profile: open /nonexistent/dir/p.tmp", true},
		{"profile missing file", []string{"profile", "/nonexistent/p"}, "no such file", false},
		{"profile not a profile", []string{"profile", notKernel}, "not a gvmm profile", false},
		{"profile bad symbols", []string{"profile", "-s", notKernel, prof}, "no text symbols", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.needKVM {
				// The case reaches KVM setup: it runs where KVM works
				// (the KVM phase of make test).
				kvmtest.SkipIfUnavailable(t)
			}
			var stdout, stderr bytes.Buffer
			status := run(tc.args, strings.NewReader(""), &stdout, &stderr)
			assert.Equal(t, statusUsage, status, "stderr: %s", stderr.String())
			msg := stderr.String()
			assert.Contains(t, msg, tc.want)
			assert.NotContains(t, msg, "goroutine")
			assert.NotContains(t, msg, "panic")
			if tc.name != "unknown flag" {
				// pflag adds its usage after the error line.
				assert.Equal(t, 1, strings.Count(msg, "\n"), "one line: %q", msg)
			}
		})
	}
}

// TestProfileCommand reports a profile with and without symbols.
func TestProfileCommand(t *testing.T) {
	prof := write(t, "guest.prof", []byte("gvmm-profile 1\n0 0xffffffff81000010 3\n1 0x401000 1\n"))
	syms := write(t, "System.map", []byte("ffffffff81000000 T _text\nffffffff81000000 T startup_64\n"))
	var stdout, stderr bytes.Buffer
	require.Equal(t, 0, run([]string{"profile", "--symbols", syms, prof}, nil, &stdout, &stderr), stderr.String())
	assert.Contains(t, stdout.String(), "4 samples, vCPU 0: 3, vCPU 1: 1")
	assert.Regexp(t, `\n +3 +75\.0  startup_64\n +1 +25\.0  \[user\]\n`, stdout.String())
	stdout.Reset()
	require.Equal(t, 0, run([]string{"profile", "-n", "1", prof}, nil, &stdout, &stderr), stderr.String())
	assert.Contains(t, stdout.String(), "3  75.0  0xffffffff81000010\n")
	stdout.Reset()
	require.Equal(t, 0, run([]string{"profile", "--since", prof, prof}, nil, &stdout, &stderr), stderr.String())
	assert.Equal(t, "0 samples\n", stdout.String())
	assert.Equal(t, statusUsage, run([]string{"profile"}, nil, &stdout, &stderr))
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
	}{
		{"512", 512 << 20}, {"512M", 512 << 20}, {"512m", 512 << 20}, {"1G", 1 << 30},
		{"1GiB", 1 << 30}, {"1.5G", 3 << 29}, {"65536K", 64 << 20}, {"2T", 2 << 40}, {"4608MB", 4608 << 20},
	} {
		got, err := parseSize(tc.in)
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, got, tc.in)
	}
	for _, bad := range []string{"", "G", "-1G", "0", "1X", "NaN", "1e30G"} {
		_, err := parseSize(bad)
		assert.Error(t, err, bad)
	}
}

func TestExitStatus(t *testing.T) {
	for _, tc := range []struct {
		res  machine.Result
		want int
	}{
		{machine.Result{Outcome: machine.PowerOff}, 0},
		{machine.Result{Outcome: machine.Reset}, 4},
		{machine.Result{Outcome: machine.Failed}, 6},
		{machine.Result{Outcome: machine.Stopped}, 8},
		{machine.Result{Outcome: machine.TestExit, TestExitValue: 0}, 1},
		{machine.Result{Outcome: machine.TestExit, TestExitValue: 1}, 3},
		{machine.Result{Outcome: machine.TestExit, TestExitValue: 0x7F}, 0xFF},
		{machine.Result{Outcome: machine.TestExit, TestExitValue: 0x80}, 1},
	} {
		assert.Equal(t, tc.want, exitStatus(&tc.res), "%+v", tc.res)
	}
}

func TestVersionAndHelp(t *testing.T) {
	var out, errb bytes.Buffer
	assert.Equal(t, 0, run([]string{"--version"}, nil, &out, &errb))
	assert.Contains(t, out.String(), "gvmm ")
	out.Reset()
	assert.Equal(t, 0, run([]string{"--help"}, nil, &out, &errb))
	assert.Contains(t, out.String(), "gvmm run")
	errb.Reset()
	assert.Equal(t, 0, run([]string{"run", "--help"}, nil, &out, &errb))
	assert.Contains(t, errb.String(), "--kernel")
	assert.Contains(t, errb.String(), "--cpus")
	assert.Contains(t, errb.String(), "--memory")
}

func TestEscapeReader(t *testing.T) {
	quit := 0
	var help bytes.Buffer
	r := &escapeReader{r: strings.NewReader("ab\x01\x01c\x01hd\x01xzz"), quit: func() { quit++ }, help: &help}
	got := make([]byte, 64)
	var all []byte
	for {
		n, err := r.Read(got)
		all = append(all, got[:n]...)
		if err != nil {
			break
		}
	}
	assert.Equal(t, "ab\x01cd", string(all))
	assert.Equal(t, 1, quit)
	assert.Contains(t, help.String(), "Ctrl-A x")
}

func TestPeakRSS(t *testing.T) {
	kb, err := peakRSS()
	require.NoError(t, err)
	assert.Greater(t, kb, uint64(1024), "a Go test binary has more than 1 MiB resident")
}
