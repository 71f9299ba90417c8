// Package tap is the host side of gvmm's network devices: a Linux tap
// device (Documentation/networking/tuntap.rst) opened with IFF_TAP,
// IFF_NO_PI and IFF_VNET_HDR, so that every frame carries the 12-byte
// virtio_net_hdr of the virtio network device and offloaded frames (partial
// checksums, 64 KiB TCP segments) cross in one system call each way.
//
// The file descriptor is non-blocking and wrapped in an os.File, so reads
// and writes that would block park their goroutine in Go's netpoller
// (epoll) instead of a thread, and a deadline wakes them.
package tap

import (
	"errors"
	"fmt"
	stdnet "net"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	vnet "github.com/gvmm/gvmm/virtio/net"
)

// tunDevice is the clone device of tuntap.rst.
const tunDevice = "/dev/net/tun"

// TUNSETOFFLOAD flags (include/uapi/linux/if_tun.h).
const (
	tunFCSum   = 0x01 // TUN_F_CSUM: partial checksums
	tunFTSO4   = 0x02 // TUN_F_TSO4
	tunFTSO6   = 0x04 // TUN_F_TSO6
	tunFTSOECN = 0x08 // TUN_F_TSO_ECN
	tunFUFO    = 0x10 // TUN_F_UFO
)

// Errors that Open wraps, for callers that explain them.
var (
	// ErrBusy: another process has the tap open.
	ErrBusy = errors.New("in use by another process")
	// ErrPermission: this process may neither attach to the tap nor
	// create it (CAP_NET_ADMIN, or the tap's owner).
	ErrPermission = errors.New("permission denied (it needs CAP_NET_ADMIN, or a tap owned by this user: ip tuntap add NAME mode tap user USER)")
	// ErrNotTap: an interface of that name exists and is not a tap.
	ErrNotTap = errors.New("exists and is not a tap device (or is a multi-queue tap)")
)

// Tap is an open tap device. ReadFrame and WriteFrame may run concurrently
// with each other (one reader and one writer at a time).
type Tap struct {
	f       *os.File
	rc      syscall.RawConn
	name    string
	created bool

	// The reader's and the writer's iovec arrays and the arguments of
	// the RawConn callbacks, kept here so that a frame allocates nothing.
	rdIOV  []unix.Iovec
	rdN    int
	rdErr  error
	rdIdle func()
	rdFn   func(fd uintptr) bool
	wrIOV  []unix.Iovec
	wrN    int
	wrErr  error
	wrFn   func(fd uintptr) bool
	ufoOK  bool
}

// ifreq is struct ifreq (netdevice(7)) with the flags member of its union.
type ifreq struct {
	name  [unix.IFNAMSIZ]byte
	flags uint16
	_     [22]byte
}

// Open attaches to the tap device name, creating it if there is none
// (which needs CAP_NET_ADMIN; a tap gvmm creates is brought up, and goes
// away when gvmm closes it). Its frames carry virtio_net_hdr headers of
// vnet.HeaderSize bytes, and it hands over no offloaded frame until
// SetOffload says so.
func Open(name string) (*Tap, error) {
	if name == "" || len(name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("tap %q: a name of 1 to %d bytes", name, unix.IFNAMSIZ-1)
	}
	_, statErr := stdnet.InterfaceByName(name)
	exists := statErr == nil
	fd, err := unix.Open(tunDevice, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("tap %s: open %s: %w", name, tunDevice, ErrPermission)
		}
		return nil, fmt.Errorf("tap %s: open %s: %w", name, tunDevice, err)
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	var req ifreq
	copy(req.name[:], name)
	// tuntap.rst: IFF_TAP for Ethernet frames, IFF_NO_PI for no packet
	// information prefix, IFF_VNET_HDR for the virtio_net_hdr.
	req.flags = unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR
	if err := ioctlPtr(fd, unix.TUNSETIFF, unsafe.Pointer(&req)); err != nil {
		switch {
		case errors.Is(err, unix.EBUSY):
			return nil, fmt.Errorf("tap %s: %w", name, ErrBusy)
		case errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES):
			return nil, fmt.Errorf("tap %s: %w", name, ErrPermission)
		case errors.Is(err, unix.EINVAL):
			return nil, fmt.Errorf("tap %s: %w", name, ErrNotTap)
		}
		return nil, fmt.Errorf("tap %s: TUNSETIFF: %w", name, err)
	}
	hdr := int32(vnet.HeaderSize)
	if err := ioctlPtr(fd, unix.TUNSETVNETHDRSZ, unsafe.Pointer(&hdr)); err != nil {
		return nil, fmt.Errorf("tap %s: TUNSETVNETHDRSZ %d: %w", name, hdr, err)
	}
	t := &Tap{name: name, created: !exists}
	// Does the kernel take TUN_F_UFO? (Linux 4.14 to 4.19 refused it.)
	t.ufoOK = unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tunFCSum|tunFUFO) == nil
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, 0); err != nil {
		return nil, fmt.Errorf("tap %s: TUNSETOFFLOAD: %w", name, err)
	}
	if t.created {
		if err := setUp(name); err != nil {
			return nil, fmt.Errorf("tap %s: bring it up: %w", name, err)
		}
	}
	// The descriptor is non-blocking: os.NewFile registers it with the
	// netpoller.
	t.f = os.NewFile(uintptr(fd), "tap "+name)
	ok = true
	if t.rc, err = t.f.SyscallConn(); err != nil {
		t.f.Close()
		return nil, fmt.Errorf("tap %s: %w", name, err)
	}
	t.rdFn, t.wrFn = t.readv, t.writev
	return t, nil
}

// ioctlPtr is ioctl(2) with a pointer argument, which stays an
// unsafe.Pointer up to the system call.
func ioctlPtr(fd int, req uint, arg unsafe.Pointer) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(arg))
	if errno != 0 {
		return errno
	}
	return nil
}

// setUp sets IFF_UP on interface name (SIOCSIFFLAGS, netdevice(7)).
func setUp(name string) error {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(s)
	var req ifreq
	copy(req.name[:], name)
	if err := ioctlPtr(s, unix.SIOCGIFFLAGS, unsafe.Pointer(&req)); err != nil {
		return err
	}
	req.flags |= unix.IFF_UP
	return ioctlPtr(s, unix.SIOCSIFFLAGS, unsafe.Pointer(&req))
}

// Name returns the tap's name.
func (t *Tap) Name() string { return t.name }

// Created reports whether Open created the tap.
func (t *Tap) Created() bool { return t.created }

// UFO reports whether the tap can hand UFO frames over (TUN_F_UFO).
func (t *Tap) UFO() bool { return t.ufoOK }

// SetOffload implements vnet.Backend with TUNSETOFFLOAD: the offloads the
// tap's interface announces to the host stack, which then sends it frames
// that need them.
func (t *Tap) SetOffload(o vnet.Offloads) error {
	var flags int
	if o.CSum {
		flags |= tunFCSum
		if o.TSO4 {
			flags |= tunFTSO4
		}
		if o.TSO6 {
			flags |= tunFTSO6
		}
		if o.ECN && (o.TSO4 || o.TSO6) {
			flags |= tunFTSOECN
		}
		if o.UFO && t.ufoOK {
			flags |= tunFUFO
		}
	}
	var err error
	cerr := t.rc.Control(func(fd uintptr) {
		err = unix.IoctlSetInt(int(fd), unix.TUNSETOFFLOAD, flags)
	})
	if cerr != nil {
		return fmt.Errorf("tap %s: %w", t.name, cerr)
	}
	if err != nil {
		return fmt.Errorf("tap %s: TUNSETOFFLOAD %#x: %w", t.name, flags, err)
	}
	return nil
}

// SetDeadline implements vnet.Backend.
func (t *Tap) SetDeadline(d time.Time) error { return t.f.SetDeadline(d) }

func fillIOV(iov []unix.Iovec, bufs [][]byte) []unix.Iovec {
	iov = iov[:0]
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		v := unix.Iovec{Base: &b[0]}
		v.SetLen(len(b))
		iov = append(iov, v)
	}
	return iov
}

// ReadFrame implements vnet.Backend: one readv(2) of one frame, the
// header first. A tap returns one frame per read, and drops what does not
// fit the buffers.
func (t *Tap) ReadFrame(bufs [][]byte, idle func()) (int, error) {
	t.rdIOV = fillIOV(t.rdIOV, bufs)
	if len(t.rdIOV) == 0 {
		return 0, errors.New("tap: read into no buffer")
	}
	t.rdIdle, t.rdErr, t.rdN = idle, nil, 0
	if err := t.rc.Read(t.rdFn); err != nil {
		return 0, err
	}
	if t.rdErr != nil {
		return 0, fmt.Errorf("tap %s: read: %w", t.name, t.rdErr)
	}
	return t.rdN, nil
}

// readv is the RawConn callback of ReadFrame: it returns false to wait
// for the descriptor to become readable. The descriptor is non-blocking,
// so the call never sleeps: it is a RawSyscall, which keeps the goroutine's
// P instead of handing it to the scheduler (entersyscall). With
// syscall.Syscall, a call that the scheduler's monitor finds running for
// 20 µs (a 64 KiB segment through the host's stack, or any call on a slow
// host) has its P taken away and handed to another thread, which is woken,
// finds nothing to do and sleeps again, and the caller must get a P back
// when it returns: several wake-ups and system calls per frame, for no
// blocking.
func (t *Tap) readv(fd uintptr) bool {
	for {
		n, _, errno := unix.RawSyscall(unix.SYS_READV, fd, uintptr(unsafe.Pointer(&t.rdIOV[0])), uintptr(len(t.rdIOV)))
		switch errno {
		case 0:
			t.rdN = int(n)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if t.rdIdle != nil {
				t.rdIdle()
				t.rdIdle = nil
			}
			return false
		}
		t.rdErr = errno
		return true
	}
}

// WriteFrame implements vnet.Backend: one writev(2) of one frame.
func (t *Tap) WriteFrame(bufs [][]byte) (int, error) {
	t.wrIOV = fillIOV(t.wrIOV, bufs)
	if len(t.wrIOV) == 0 {
		return 0, errors.New("tap: write of no buffer")
	}
	t.wrErr, t.wrN = nil, 0
	if err := t.rc.Write(t.wrFn); err != nil {
		return 0, err
	}
	if t.wrErr != nil {
		return 0, fmt.Errorf("tap %s: write: %w", t.name, t.wrErr)
	}
	return t.wrN, nil
}

// writev is the RawConn callback of WriteFrame; a RawSyscall, as readv's
// (the descriptor is non-blocking: a full queue says EAGAIN).
func (t *Tap) writev(fd uintptr) bool {
	for {
		n, _, errno := unix.RawSyscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&t.wrIOV[0])), uintptr(len(t.wrIOV)))
		switch errno {
		case 0:
			t.wrN = int(n)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		t.wrErr = errno
		return true
	}
}

// Close closes the tap; one that Open created goes away.
func (t *Tap) Close() error { return t.f.Close() }

// Control runs f with the tap's file descriptor, as syscall.RawConn's
// Control does: for benchmarks that compare with plain system calls on the
// same descriptor.
func (t *Tap) Control(f func(fd uintptr)) error { return t.rc.Control(f) }
