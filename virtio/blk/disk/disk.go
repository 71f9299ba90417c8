// Package disk is the file backend of gvmm's block devices: a disk image
// (a regular file or a block device) opened with one of the cache modes
// QEMU and libvirt users know, locked against a second writer, and read
// and written straight into guest memory with preadv/pwritev.
//
// Cache modes (QEMU's cache= option, docs "Disk image cache modes"):
//
//	writeback     host page cache; the guest sees a volatile write cache
//	              and flushes it (fdatasync) when it must
//	none          O_DIRECT: the host page cache is bypassed; the guest
//	              still flushes (fdatasync) for the disk's own cache
//	writethrough  host page cache, every write is durable before it
//	              completes (O_DSYNC)
//
// In every mode a write completes to the guest only after the host kernel
// has the data, so a flush that completed is never lost when gvmm is
// killed, and with writethrough or after a flush, not when the host
// crashes either.
//
// O_DIRECT needs buffers, offsets and lengths aligned to the file's direct
// I/O alignment (statx STATX_DIOALIGN, 512 bytes where unknown). A request
// whose guest buffers are not aligned goes through an aligned bounce
// buffer; one whose offset or length is not aligned goes through a second,
// buffered descriptor of the same file (the kernel keeps the page cache and
// direct I/O coherent).
package disk

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// SectorSize is the unit of virtio-blk addresses and of image sizes.
const SectorSize = 512

// Cache is a cache mode.
type Cache int

// Cache modes.
const (
	CacheWriteback Cache = iota
	CacheNone
	CacheWritethrough
)

func (c Cache) String() string {
	switch c {
	case CacheWriteback:
		return "writeback"
	case CacheNone:
		return "none"
	case CacheWritethrough:
		return "writethrough"
	}
	return fmt.Sprintf("cache(%d)", int(c))
}

// ParseCache parses a cache mode name.
func ParseCache(s string) (Cache, error) {
	for _, c := range []Cache{CacheWriteback, CacheNone, CacheWritethrough} {
		if s == c.String() {
			return c, nil
		}
	}
	return 0, fmt.Errorf("unknown cache mode %q (want writeback, none or writethrough)", s)
}

// Errors Open returns, wrapped with the path.
var (
	ErrLocked       = errors.New("is locked by another process (another gvmm using it?)")
	ErrReadOnlyFile = errors.New("is a read-only file: it can only be attached read-only")
	ErrSize         = errors.New("size is not a multiple of 512 bytes")
	ErrNotDisk      = errors.New("is neither a regular file nor a block device")
	ErrNoDirectIO   = errors.New("does not support O_DIRECT (cache=none); use cache=writeback")
)

// Options says how to open an image.
type Options struct {
	ReadOnly bool
	Cache    Cache
}

// File is an open, locked disk image.
type File struct {
	path  string
	fd    int
	bufFD int // cache=none: a buffered descriptor for unaligned requests; else -1
	size  uint64
	ro    bool
	cache Cache
	// memAlign and offAlign are the O_DIRECT alignments (1 when the file
	// is not opened with O_DIRECT).
	memAlign, offAlign uint64
}

// Open opens and locks the image at path: a shared lock if read-only, an
// exclusive one otherwise (open file description locks, fcntl(2)
// F_OFD_SETLK; flock(2) where those are not supported), so that two gvmm
// processes can never both write it.
func Open(path string, o Options) (*File, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("disk %s: %w", path, pathErr(err))
	}
	mode := st.Mode()
	if !mode.IsRegular() && mode&fs.ModeDevice == 0 {
		return nil, fmt.Errorf("disk %s %w", path, ErrNotDisk)
	}
	if !o.ReadOnly && mode.Perm()&0o222 == 0 {
		// Root could open it for writing anyway; the mode says the
		// owner meant it read-only.
		return nil, fmt.Errorf("disk %s %w", path, ErrReadOnlyFile)
	}
	flags := unix.O_CLOEXEC | unix.O_RDWR
	if o.ReadOnly {
		flags = unix.O_CLOEXEC | unix.O_RDONLY
	}
	switch o.Cache {
	case CacheNone:
		flags |= unix.O_DIRECT
	case CacheWritethrough:
		flags |= unix.O_DSYNC
	}
	f := &File{path: path, fd: -1, bufFD: -1, ro: o.ReadOnly, cache: o.Cache, memAlign: 1, offAlign: 1}
	ok := false
	defer func() {
		if !ok {
			f.Close()
		}
	}()
	if f.fd, err = openRetry(path, flags); err != nil {
		switch {
		case !o.ReadOnly && (err == unix.EACCES || err == unix.EROFS || err == unix.EPERM || err == unix.ETXTBSY):
			return nil, fmt.Errorf("disk %s %w", path, ErrReadOnlyFile)
		case o.Cache == CacheNone && err == unix.EINVAL:
			return nil, fmt.Errorf("disk %s %w", path, ErrNoDirectIO)
		}
		return nil, fmt.Errorf("disk %s: %w", path, err)
	}
	if err := lock(f.fd, o.ReadOnly); err != nil {
		if errors.Is(err, ErrLocked) {
			return nil, fmt.Errorf("disk %s %w", path, err)
		}
		return nil, fmt.Errorf("disk %s: lock: %w", path, err)
	}
	if f.size, err = fileSize(f.fd, mode); err != nil {
		return nil, fmt.Errorf("disk %s: size: %w", path, err)
	}
	if f.size%SectorSize != 0 {
		return nil, fmt.Errorf("disk %s: %w (%d bytes)", path, ErrSize, f.size)
	}
	if o.Cache == CacheNone {
		f.memAlign, f.offAlign = dioAlign(f.fd)
		bufFlags := flags &^ unix.O_DIRECT
		if f.bufFD, err = openRetry(path, bufFlags); err != nil {
			return nil, fmt.Errorf("disk %s: %w", path, err)
		}
	}
	ok = true
	return f, nil
}

func openRetry(path string, flags int) (int, error) {
	for {
		fd, err := unix.Open(path, flags, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// lock takes a whole-file open file description lock: shared for a reader,
// exclusive for a writer. OFD locks belong to the open file description,
// so the lock goes away with the descriptor, or with the process however
// it dies.
func lock(fd int, shared bool) error {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	how := unix.LOCK_EX | unix.LOCK_NB
	if shared {
		lk.Type = unix.F_RDLCK
		how = unix.LOCK_SH | unix.LOCK_NB
	}
	err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &lk)
	switch err {
	case nil:
		return nil
	case unix.EAGAIN, unix.EACCES:
		return ErrLocked
	case unix.EINVAL, unix.ENOLCK:
		// No OFD locks here: flock(2) locks the open file description
		// too.
		if err := unix.Flock(fd, how); err != nil {
			if err == unix.EWOULDBLOCK {
				return ErrLocked
			}
			return err
		}
		return nil
	}
	return err
}

// blkGetSize64 is BLKGETSIZE64, _IOR(0x12, 114, size_t)
// (include/uapi/linux/fs.h): a block device's size in bytes.
const blkGetSize64 = 0x80081272

func fileSize(fd int, mode fs.FileMode) (uint64, error) {
	if mode&fs.ModeDevice == 0 {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return 0, err
		}
		return uint64(st.Size), nil
	}
	var size uint64
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), blkGetSize64, uintptr(unsafe.Pointer(&size))); errno != 0 {
		return 0, errno
	}
	return size, nil
}

// dioAlign returns the memory and offset alignment O_DIRECT needs on fd
// (statx(2) STATX_DIOALIGN, Linux 6.1), or 512 and 512, the logical block
// size of nearly every disk, where the kernel does not say.
func dioAlign(fd int) (mem, off uint64) {
	var st unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_DIOALIGN, &st); err == nil &&
		st.Mask&unix.STATX_DIOALIGN != 0 && st.Dio_offset_align != 0 {
		return uint64(max(st.Dio_mem_align, 1)), uint64(st.Dio_offset_align)
	}
	return SectorSize, SectorSize
}

// Path returns the image's path.
func (f *File) Path() string { return f.path }

// Size returns the image size in bytes, a multiple of SectorSize.
func (f *File) Size() uint64 { return f.size }

// ReadOnly reports whether the image is open read-only.
func (f *File) ReadOnly() bool { return f.ro }

// Cache returns the cache mode.
func (f *File) Cache() Cache { return f.cache }

// BlockSize returns the logical block size to show the guest: the direct
// I/O offset alignment with cache=none (so the guest's own requests are
// aligned), 512 bytes otherwise.
func (f *File) BlockSize() uint64 {
	return max(f.offAlign, SectorSize)
}

// Flush makes every completed write durable (fdatasync(2), which flushes
// the file's dirty pages whichever descriptor wrote them).
func (f *File) Flush() error {
	for {
		err := unix.Fdatasync(f.fd)
		if err != unix.EINTR {
			return err
		}
	}
}

// Close closes the image, releasing the lock.
func (f *File) Close() error {
	var err error
	if f.bufFD >= 0 {
		err = unix.Close(f.bufFD)
		f.bufFD = -1
	}
	if f.fd >= 0 {
		if e := unix.Close(f.fd); e != nil && err == nil {
			err = e
		}
		f.fd = -1
	}
	return err
}

// Describe names the image and its mode for messages.
func (f *File) Describe() string {
	var opts []string
	if f.ro {
		opts = append(opts, "readonly")
	}
	opts = append(opts, "cache="+f.cache.String())
	return fmt.Sprintf("%s (%d bytes, %s)", f.path, f.size, strings.Join(opts, ","))
}
