// Package memory provides guest RAM: anonymous host mappings laid out in the
// guest-physical address space, with bounds-checked access.
//
// RAM is mapped with MAP_NORESERVE and is never pre-touched, so the VMM's
// resident size grows only with the pages the guest actually uses. Below
// 4 GiB the layout leaves a 32-bit hole for MMIO (PCI BARs, virtio-mmio, the
// IOAPIC and local APIC); RAM that does not fit below the hole continues at
// 4 GiB, as on PC hardware.
package memory

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// HoleStart is where the 32-bit MMIO hole begins (3 GiB). RAM below it is
	// directly addressable by 32-bit devices and the kernel's early code.
	HoleStart = 0xC000_0000
	// HighStart is where RAM above the hole continues (4 GiB).
	HighStart = 1 << 32
	// PageSize is the x86 base page size.
	PageSize = 4096
	// MinSize is the smallest guest RAM gvmm accepts: a Linux kernel with an
	// initramfs needs tens of MiB; below 16 MiB nothing useful boots.
	MinSize = 16 << 20
	// MaxSize caps guest RAM at the 4-level paging guest-physical limit that
	// a conservative VMM should assume (1 TiB keeps well inside any host's
	// MAXPHYADDR).
	MaxSize = 1 << 40
)

// ErrOutOfRange is returned for an access that is not entirely inside guest RAM.
var ErrOutOfRange = errors.New("guest-physical access outside RAM")

// Region is one contiguous range of guest RAM and its host mapping.
type Region struct {
	// GPA is the guest-physical start address.
	GPA uint64
	// Mem is the host mapping; len(Mem) is the region size.
	Mem []byte
}

// Size returns the region's length in bytes.
func (r Region) Size() uint64 { return uint64(len(r.Mem)) }

// End returns the first guest-physical address past the region.
func (r Region) End() uint64 { return r.GPA + uint64(len(r.Mem)) }

// HostAddr returns the host virtual address of the region's first byte, for
// KVM_SET_USER_MEMORY_REGION.
func (r Region) HostAddr() uint64 { return uint64(uintptr(unsafe.Pointer(&r.Mem[0]))) }

// Layout returns the guest-physical ranges [start, end) that size bytes of
// RAM occupy: below the 3 GiB hole, then from 4 GiB.
func Layout(size uint64) [][2]uint64 {
	if size <= HoleStart {
		return [][2]uint64{{0, size}}
	}
	return [][2]uint64{{0, HoleStart}, {HighStart, HighStart + size - HoleStart}}
}

// Guest is the guest's RAM. Its methods are safe for concurrent use: they
// only copy bytes, and the mappings never move while the Guest is open.
type Guest struct {
	regions []Region
	size    uint64
}

// New maps size bytes of guest RAM laid out by Layout. size must be a
// multiple of the page size, at least MinSize and at most MaxSize.
func New(size uint64) (*Guest, error) {
	switch {
	case size < MinSize:
		return nil, fmt.Errorf("guest memory %d MiB is too small: at least %d MiB", size>>20, MinSize>>20)
	case size > MaxSize:
		return nil, fmt.Errorf("guest memory %d GiB is too large: at most %d GiB", size>>30, uint64(MaxSize)>>30)
	case size%PageSize != 0:
		return nil, fmt.Errorf("guest memory size %d is not a multiple of %d", size, PageSize)
	}
	g := &Guest{size: size}
	for _, r := range Layout(size) {
		// MAP_NORESERVE: the host commits pages only when the guest touches
		// them, so a 4 GiB guest that uses 100 MiB costs 100 MiB.
		m, err := unix.Mmap(-1, 0, int(r[1]-r[0]), unix.PROT_READ|unix.PROT_WRITE,
			unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
		if err != nil {
			g.Close()
			return nil, fmt.Errorf("map %d MiB of guest memory: %w", (r[1]-r[0])>>20, err)
		}
		g.regions = append(g.regions, Region{GPA: r[0], Mem: m})
	}
	return g, nil
}

// Close unmaps guest RAM. The VM must be gone (or its slots deleted) first.
func (g *Guest) Close() error {
	var errs []error
	for _, r := range g.regions {
		if err := unix.Munmap(r.Mem); err != nil {
			errs = append(errs, fmt.Errorf("unmap guest RAM at %#x: %w", r.GPA, err))
		}
	}
	g.regions = nil
	return errors.Join(errs...)
}

// Size returns the total RAM size in bytes.
func (g *Guest) Size() uint64 { return g.size }

// Regions returns the RAM regions in ascending guest-physical order.
func (g *Guest) Regions() []Region { return g.regions }

// Slice returns the host bytes backing [gpa, gpa+n), which must lie within
// one region. The slice aliases guest memory: the guest may change it at any
// time, so callers copy values out before checking them.
func (g *Guest) Slice(gpa, n uint64) ([]byte, error) {
	for _, r := range g.regions {
		if gpa >= r.GPA && gpa < r.End() {
			off := gpa - r.GPA
			if n > r.Size()-off {
				break
			}
			return r.Mem[off : off+n : off+n], nil
		}
	}
	return nil, fmt.Errorf("%w: [%#x, +%#x)", ErrOutOfRange, gpa, n)
}

// ReadAt copies len(p) bytes of guest RAM at guest-physical address off into p
// (io.ReaderAt, with the offset read as a guest-physical address).
func (g *Guest) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%w: negative address", ErrOutOfRange)
	}
	s, err := g.Slice(uint64(off), uint64(len(p)))
	if err != nil {
		return 0, err
	}
	return copy(p, s), nil
}

// WriteAt copies p into guest RAM at guest-physical address off
// (io.WriterAt, with the offset read as a guest-physical address).
func (g *Guest) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%w: negative address", ErrOutOfRange)
	}
	s, err := g.Slice(uint64(off), uint64(len(p)))
	if err != nil {
		return 0, err
	}
	return copy(s, p), nil
}

// ErrMisaligned is returned for an atomic access to a misaligned address.
var ErrMisaligned = errors.New("misaligned guest memory access")

// LoadUint32 atomically loads the little-endian uint32 at b[0:4], where b
// is a slice of guest memory (from Slice) whose first byte is 4-byte
// aligned. Shared rings such as virtqueues need it: the load is a single
// 32-bit access the guest cannot tear, and the Go compiler does not move
// later loads from guest memory before it.
func LoadUint32(b []byte) (uint32, error) {
	if len(b) < 4 {
		return 0, fmt.Errorf("%w: 4-byte load from %d bytes", ErrOutOfRange, len(b))
	}
	p := unsafe.Pointer(&b[0])
	if uintptr(p)%4 != 0 {
		return 0, ErrMisaligned
	}
	// x86-64 is little-endian, so the native load is the little-endian
	// value.
	return atomic.LoadUint32((*uint32)(p)), nil
}

// StoreUint32 atomically stores v little-endian at b[0:4], which must be
// 4-byte aligned guest memory. On x86-64 the store is an XCHG, a full
// barrier: every earlier store to guest memory is visible to the guest
// before it, and no later load is done before it (the order a virtqueue's
// used index update and its event check need).
func StoreUint32(b []byte, v uint32) error {
	if len(b) < 4 {
		return fmt.Errorf("%w: 4-byte store to %d bytes", ErrOutOfRange, len(b))
	}
	p := unsafe.Pointer(&b[0])
	if uintptr(p)%4 != 0 {
		return ErrMisaligned
	}
	atomic.StoreUint32((*uint32)(p), v)
	return nil
}
