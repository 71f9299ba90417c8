package guest

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// outb writes val to port with the OUT instruction (port_amd64.s).
//
//go:noescape
func outb(port uint16, val uint8)

// outbIoperm asks the kernel for access to the test-exit port (ioperm(2))
// and writes v to it from this thread. Without access the OUT raises #GP
// and the kernel kills the program with SIGSEGV, so the OUT only runs
// after ioperm succeeded.
func outbIoperm(v uint8) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Ioperm(TestExitPort, 1, 1); err != nil {
		return err
	}
	outb(TestExitPort, v)
	return nil
}
