// Package guest is for programs that run inside a vmtest guest: it reports
// the guest's verdict to the host through gvmm's test-exit port.
//
// The port works like QEMU's isa-debug-exit: a byte v written to I/O port
// 0xF4 ends the VM at once, and the host's vmtest.VM.Wait returns v (gvmm
// run exits with status (v << 1) | 1). Linux offers two ways to write it
// from user space: /dev/port (CONFIG_DEVPORT, the small test kernel) and
// ioperm(2) followed by an OUT instruction (CONFIG_X86_IOPL_IOPERM,
// Debian's kernel). Exit tries both.
package guest

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestExitPort is gvmm's test-exit port (docs/design.md, the port map).
const TestExitPort = 0xF4

// Exit writes verdict to the test-exit port, which ends the VM. It returns
// only if the write failed or the VM went on (a VMM without the port):
// callers then power off.
func Exit(verdict uint8) error {
	errPort := writeDevPort(verdict)
	if errPort == nil {
		return errors.New("guest: wrote the test-exit port through /dev/port, but the VM went on")
	}
	// ioperm(2) grants this thread access to the port; the OUT must run on
	// the same thread.
	errIoperm := outbIoperm(verdict)
	if errIoperm == nil {
		return errors.New("guest: wrote the test-exit port with ioperm and OUT, but the VM went on")
	}
	return fmt.Errorf("guest: cannot write the test-exit port: /dev/port: %v; ioperm: %v", errPort, errIoperm)
}

func writeDevPort(v uint8) error {
	f, err := os.OpenFile("/dev/port", os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	// /dev/port's file offset is the port number (drivers/char/mem.c).
	_, err = f.WriteAt([]byte{v}, TestExitPort)
	return err
}

// PowerOff syncs and powers the guest off (ACPI S5): vmtest.VM.Wait then
// reports a power off without a verdict.
func PowerOff() error {
	unix.Sync()
	return unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}

// EnvInGuest is set to 1 in the environment of tests that
// vmtest.RunGoTests runs in a guest.
const EnvInGuest = "GVMM_VMTEST_GUEST"

// InVM reports whether the program runs in a guest of vmtest.RunGoTests.
func InVM() bool { return os.Getenv(EnvInGuest) == "1" }

// SkipIfNotInVM skips a test meant for the guest when it runs anywhere
// else (the host's go test ./...).
func SkipIfNotInVM(tb testing.TB) {
	tb.Helper()
	if !InVM() {
		tb.Skip("not in a vmtest guest: vmtest.RunGoTests runs this test")
	}
}
