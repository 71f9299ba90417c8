package boot

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error from Load, Probe and CmdlineMax matches one
// of them with errors.Is (or comes from the caller's Memory). The message is
// one specific line, e.g. "bzImage: boot protocol 2.04 is older than 2.06";
// it does not repeat the sentinel's generic text.
var (
	// ErrNotKernel means the file has neither a bzImage setup header ("HdrS"
	// at 0x202) nor the ELF magic.
	ErrNotKernel = errors.New("not a Linux kernel: no bzImage header and no ELF magic")
	// ErrTruncated means an offset or size in the file points past its end.
	ErrTruncated = errors.New("kernel file is truncated")
	// ErrBadImage means the file is malformed: a wrong boot flag, an ELF
	// that is not x86-64, overlapping segments, an impossible alignment.
	ErrBadImage = errors.New("malformed kernel image")
	// ErrProtocolTooOld means the bzImage speaks a boot protocol older
	// than 2.06, the oldest this package supports.
	ErrProtocolTooOld = errors.New("boot protocol too old")
	// ErrUnsupported means the kernel cannot be entered the way asked: no
	// PVH note, no 64-bit entry point (XLF_KERNEL_64), a compression or an
	// xz filter this package cannot decompress.
	ErrUnsupported = errors.New("unsupported kernel")
	// ErrDecompress means the compressed payload of a bzImage is corrupt or
	// decompresses to something other than the size it declares.
	ErrDecompress = errors.New("cannot decompress kernel payload")
	// ErrCmdlineTooLong means the command line is longer than the kernel's
	// cmdline_size.
	ErrCmdlineTooLong = errors.New("command line too long")
	// ErrInitrdTooLarge means no RAM range below the kernel's initrd limit
	// can hold the initrd.
	ErrInitrdTooLarge = errors.New("initrd too large")
	// ErrNoRoom means the kernel (or the fixed low-memory boot structures)
	// do not fit in guest RAM where they must go.
	ErrNoRoom = errors.New("kernel does not fit in guest RAM")
	// ErrConfig means the Config itself is invalid: unsorted or
	// overlapping RAM ranges, a NUL in the command line, an unknown entry.
	ErrConfig = errors.New("invalid boot configuration")
)

// kindError is an error of one of the sentinel kinds with its own complete
// message: errors.Is matches the sentinel, and Error does not repeat the
// sentinel's generic text in front of the specific one.
type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }

// errf returns a kindError of the given kind with a formatted message.
func errf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, msg: fmt.Sprintf(format, args...)}
}
