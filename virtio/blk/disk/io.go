package disk

import (
	"errors"
	"fmt"
	"io"
	"unsafe"

	"golang.org/x/sys/unix"
)

// iovMax is IOV_MAX: the most buffers one preadv/pwritev takes.
const iovMax = 1024

// maxBounce caps the bounce buffer: a larger unaligned request is moved in
// pieces of this size.
const maxBounce = 1 << 20

// ErrRange is returned for an access outside the image.
var ErrRange = errors.New("access outside the disk")

// IO does a worker's I/O on a File. It holds the scratch memory one request
// needs (the iovec array, the bounce buffer), so that a worker with its own
// IO allocates nothing per request. An IO is not safe for concurrent use;
// any number of IOs may work on one File at once.
type IO struct {
	f      *File
	iov    []unix.Iovec
	bounce []byte // mmap'ed, page-aligned; nil until needed
}

// NewIO returns an IO for f.
func (f *File) NewIO() *IO {
	return &IO{f: f, iov: make([]unix.Iovec, 0, 64)}
}

// Close releases the bounce buffer.
func (x *IO) Close() error {
	if x.bounce != nil {
		err := unix.Munmap(x.bounce)
		x.bounce = nil
		return err
	}
	return nil
}

func (x *IO) check(off, n uint64) error {
	if off > x.f.size || n > x.f.size-off {
		return fmt.Errorf("%w: [%d, +%d) of %d bytes", ErrRange, off, n, x.f.size)
	}
	return nil
}

func total(bufs [][]byte) uint64 {
	var n uint64
	for _, b := range bufs {
		n += uint64(len(b))
	}
	return n
}

// direct reports whether an access at off of bufs can go to the O_DIRECT
// descriptor as it is (aligned), and whether it can with a bounce buffer
// (offset and length aligned, buffers not).
func (x *IO) direct(bufs [][]byte, off, n uint64) (asIs, bounced bool) {
	f := x.f
	if f.cache != CacheNone {
		return true, false
	}
	if off%f.offAlign != 0 || n%f.offAlign != 0 {
		return false, false
	}
	for _, b := range bufs {
		if uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b))))%f.memAlign != 0 || uint64(len(b))%f.offAlign != 0 {
			return false, true
		}
	}
	return true, false
}

// ReadAt fills bufs with the image's bytes from off.
func (x *IO) ReadAt(bufs [][]byte, off uint64) error {
	return x.transfer(bufs, off, false)
}

// WriteAt writes bufs to the image at off.
func (x *IO) WriteAt(bufs [][]byte, off uint64) error {
	if x.f.ro {
		return fmt.Errorf("write: %w", unix.EROFS)
	}
	return x.transfer(bufs, off, true)
}

// transfer moves bufs from or to the image at off: straight through the
// image's descriptor (O_DIRECT with cache=none) when the access is aligned
// as it needs (see direct), through the bounce buffer when only the guest's
// buffers are not, else through the page-cache descriptor.
func (x *IO) transfer(bufs [][]byte, off uint64, write bool) error {
	n := total(bufs)
	if err := x.check(off, n); err != nil {
		return err
	}
	asIs, bounced := x.direct(bufs, off, n)
	switch {
	case asIs:
		return x.rw(x.f.fd, bufs, off, write)
	case bounced:
		return x.bounced(bufs, off, n, write)
	}
	return x.rw(x.f.bufFD, bufs, off, write)
}

// bounced moves an aligned range through the aligned bounce buffer.
func (x *IO) bounced(bufs [][]byte, off, n uint64, write bool) error {
	if x.bounce == nil {
		b, err := unix.Mmap(-1, 0, maxBounce, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			return fmt.Errorf("bounce buffer: %w", err)
		}
		x.bounce = b
	}
	// maxBounce is a multiple of every alignment (a power of 2 up to a
	// page), so each piece stays aligned.
	var done uint64
	for done < n {
		piece := min(n-done, maxBounce)
		b := x.bounce[:piece]
		if write {
			gather(b, bufs, done)
		}
		if err := x.rw(x.f.fd, [][]byte{b}, off+done, write); err != nil {
			return err
		}
		if !write {
			scatter(bufs, done, b)
		}
		done += piece
	}
	return nil
}

// gather copies bytes [at, at+len(dst)) of bufs into dst.
func gather(dst []byte, bufs [][]byte, at uint64) {
	n := 0
	for _, b := range bufs {
		if at >= uint64(len(b)) {
			at -= uint64(len(b))
			continue
		}
		n += copy(dst[n:], b[at:])
		at = 0
		if n == len(dst) {
			return
		}
	}
}

// scatter copies src into bufs from byte at.
func scatter(bufs [][]byte, at uint64, src []byte) {
	n := 0
	for _, b := range bufs {
		if at >= uint64(len(b)) {
			at -= uint64(len(b))
			continue
		}
		n += copy(b[at:], src[n:])
		at = 0
		if n == len(src) {
			return
		}
	}
}

// rw moves all of bufs at off with preadv/pwritev on fd, retrying short
// transfers and EINTR, IOV_MAX buffers at a time.
func (x *IO) rw(fd int, bufs [][]byte, off uint64, write bool) error {
	for len(bufs) > 0 {
		chunk := bufs[:min(len(bufs), iovMax)]
		bufs = bufs[len(chunk):]
		x.iov = x.iov[:0]
		var want uint64
		for _, b := range chunk {
			if len(b) == 0 {
				continue
			}
			v := unix.Iovec{Base: unsafe.SliceData(b)}
			v.SetLen(len(b))
			x.iov = append(x.iov, v)
			want += uint64(len(b))
		}
		iov := x.iov
		for want > 0 {
			n, err := x.syscall(fd, iov, off, write)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				if write {
					return fmt.Errorf("pwritev at %d: %w", off, err)
				}
				return fmt.Errorf("preadv at %d: %w", off, err)
			}
			if n == 0 {
				// The image shrank under us.
				return fmt.Errorf("at %d: %w", off, io.ErrUnexpectedEOF)
			}
			want -= n
			off += n
			iov = advance(iov, n)
		}
	}
	return nil
}

func (x *IO) syscall(fd int, iov []unix.Iovec, off uint64, write bool) (uint64, error) {
	if len(iov) == 1 {
		// One buffer (a 4 KiB request, or one whose guest pages are
		// contiguous): pread(2)/pwrite(2) hand the kernel the buffer
		// itself, which it takes faster than a one-entry iovec array
		// it must copy in and check (about a quarter of the system
		// call's cost for 4 KiB from the page cache, measured by
		// BenchmarkRequests).
		nr := uintptr(unix.SYS_PREAD64)
		if write {
			nr = unix.SYS_PWRITE64
		}
		r, _, errno := unix.Syscall6(nr, uintptr(fd), uintptr(unsafe.Pointer(iov[0].Base)), uintptr(iov[0].Len), uintptr(off), 0, 0)
		if errno != 0 {
			return 0, errno
		}
		return uint64(r), nil
	}
	nr := uintptr(unix.SYS_PREADV)
	if write {
		nr = unix.SYS_PWRITEV
	}
	// preadv(2)/pwritev(2): the offset is passed as two longs, low and
	// high; on 64-bit the high one is 0. The iovec array is Go memory
	// handed to the kernel for the duration of the call; the buffers it
	// points to are guest memory (an mmap) or the bounce buffer.
	r, _, errno := unix.Syscall6(nr, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(iov))), uintptr(len(iov)), uintptr(off), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return uint64(r), nil
}

// advance drops the first n bytes of iov, in place.
func advance(iov []unix.Iovec, n uint64) []unix.Iovec {
	for len(iov) > 0 && n >= iov[0].Len {
		n -= iov[0].Len
		iov = iov[1:]
	}
	if len(iov) > 0 && n > 0 {
		iov[0].Base = (*byte)(unsafe.Add(unsafe.Pointer(iov[0].Base), n))
		iov[0].Len -= n
	}
	return iov
}

// Discard tells the host it may free [off, off+n): the range is punched out
// of the file (fallocate(2) FALLOC_FL_PUNCH_HOLE) and reads as zeros after.
// Where the file system cannot punch holes, nothing is done: a discard is
// only a hint (virtio 1.2 section 5.2.6.2).
func (x *IO) Discard(off, n uint64) error {
	_, err := x.punchRange("discard", off, n)
	return err
}

// punchRange punches [off, off+n) out of a writable disk's file for the
// operation op. unsupported says that the file system cannot punch holes,
// and then nothing was done.
func (x *IO) punchRange(op string, off, n uint64) (unsupported bool, err error) {
	if x.f.ro {
		return false, fmt.Errorf("%s: %w", op, unix.EROFS)
	}
	if err := x.check(off, n); err != nil {
		return false, err
	}
	err = x.punch(off, n)
	if err == unix.EOPNOTSUPP || err == unix.ENODEV {
		return true, nil
	}
	return false, err
}

// WriteZeroes makes [off, off+n) read as zeros: by punching a hole where
// the file system can, else by writing zeros.
func (x *IO) WriteZeroes(off, n uint64) error {
	if unsupported, err := x.punchRange("write zeroes", off, n); !unsupported {
		return err
	}
	if x.bounce == nil {
		b, err := unix.Mmap(-1, 0, maxBounce, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			return fmt.Errorf("zero buffer: %w", err)
		}
		x.bounce = b
	}
	clear(x.bounce)
	for n > 0 {
		piece := min(n, maxBounce)
		fd := x.f.fd
		if x.f.cache == CacheNone && (off%x.f.offAlign != 0 || piece%x.f.offAlign != 0) {
			fd = x.f.bufFD
		}
		if err := x.rw(fd, [][]byte{x.bounce[:piece]}, off, true); err != nil {
			return err
		}
		off += piece
		n -= piece
	}
	return nil
}

func (x *IO) punch(off, n uint64) error {
	if n == 0 {
		return nil
	}
	for {
		err := unix.Fallocate(x.f.fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, int64(off), int64(n))
		if err != unix.EINTR {
			return err
		}
	}
}
