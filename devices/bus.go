package devices

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// Bus maps address ranges (I/O ports or guest-physical MMIO addresses) to
// devices. A machine has one Bus for port I/O and one for MMIO.
//
// Ranges are kept sorted and Lookup finds one by binary search over an
// immutable table, so Lookup is safe for concurrent use by any number of vCPU
// threads and does not allocate. Insert devices while setting the machine up,
// before the VM runs: Insert publishes a new table with copy-on-write and is
// therefore safe against concurrent Lookups, but consumers such as exit
// statistics size their per-slot tables from Slots once, at setup.
//
// Each inserted device gets a slot, numbered 0, 1, 2, ... in insertion order.
// Slots never move (inserting a range below an existing one does not
// renumber), so they can index per-device counters.
//
// The zero Bus is empty and ready to use. A Bus must not be copied after
// first use.
type Bus struct {
	// mu serialises Insert; Lookup never takes it.
	mu    sync.Mutex
	table atomic.Pointer[busTable]
}

// busTable is one immutable generation of a Bus's contents.
type busTable struct {
	// ranges is sorted by base and never overlapping.
	ranges []busRange
	// slots is in insertion order; ranges[i].slot indexes it.
	slots []busSlot
}

type busRange struct {
	base uint64
	// last is the last address in the range (inclusive), so a range may end
	// at the very top of the 64-bit address space.
	last uint64
	dev  Device
	slot int
}

type busSlot struct {
	dev  Device
	name string
	base uint64
	size uint64
}

// Insert adds dev at [base, base+size) under name (used for statistics and
// error messages). It fails if size is zero, if the range wraps past the end
// of the 64-bit address space, if dev is nil, or if the range overlaps one
// already inserted.
func (b *Bus) Insert(dev Device, name string, base, size uint64) error {
	_, err := b.InsertSlot(dev, name, base, size)
	return err
}

// InsertSlot is Insert, returning the new device's slot for Move and
// Remove.
func (b *Bus) InsertSlot(dev Device, name string, base, size uint64) (int, error) {
	if dev == nil {
		return -1, fmt.Errorf("bus: insert %q: nil device", name)
	}
	if size == 0 {
		return -1, fmt.Errorf("bus: insert %q at %#x: zero size", name, base)
	}
	if base+(size-1) < base {
		return -1, fmt.Errorf("bus: insert %q at %#x size %#x: range wraps around the address space", name, base, size)
	}

	b.mu.Lock()
	defer b.mu.Unlock()

	var old busTable
	if t := b.table.Load(); t != nil {
		old = *t
	}
	slot := len(old.slots)
	ranges, err := b.place(&old, old.ranges, busRange{base: base, last: base + (size - 1), dev: dev, slot: slot}, name)
	if err != nil {
		return -1, err
	}
	b.table.Store(&busTable{
		ranges: ranges,
		slots:  append(slices.Clone(old.slots), busSlot{dev: dev, name: name, base: base, size: size}),
	})
	return slot, nil
}

// place returns a copy of ranges with r inserted in order, or an error if
// r overlaps one of them.
func (b *Bus) place(t *busTable, ranges []busRange, r busRange, name string) ([]busRange, error) {
	// i is the index of the first range starting above base: the new range
	// goes there, between ranges[i-1] and ranges[i].
	i, _ := slices.BinarySearchFunc(ranges, r.base, func(e busRange, base uint64) int {
		if e.base <= base {
			return -1
		}
		return 1
	})
	size := r.last - r.base + 1
	if i > 0 {
		if prev := ranges[i-1]; prev.last >= r.base {
			return nil, b.overlapError(t, name, r.base, size, prev)
		}
	}
	if i < len(ranges) {
		if next := ranges[i]; next.base <= r.last {
			return nil, b.overlapError(t, name, r.base, size, next)
		}
	}
	return slices.Insert(slices.Clone(ranges), i, r), nil
}

// Move places slot's device at base, keeping its size, slot and name: a PCI
// BAR the guest reprogrammed. A removed slot is mapped again. It fails, and
// leaves the bus as it was, if the new range wraps or overlaps another
// device's. Lookups running concurrently see either the old or the new
// placement.
func (b *Bus) Move(slot int, base uint64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.table.Load()
	if t == nil || slot < 0 || slot >= len(t.slots) {
		return fmt.Errorf("bus: move: no slot %d", slot)
	}
	s := t.slots[slot]
	if base+(s.size-1) < base {
		return fmt.Errorf("bus: move %q to %#x size %#x: range wraps around the address space", s.name, base, s.size)
	}
	rest := slices.DeleteFunc(slices.Clone(t.ranges), func(r busRange) bool { return r.slot == slot })
	ranges, err := b.place(t, rest, busRange{base: base, last: base + (s.size - 1), dev: s.dev, slot: slot}, s.name)
	if err != nil {
		return err
	}
	slots := slices.Clone(t.slots)
	slots[slot].base = base
	b.table.Store(&busTable{ranges: ranges, slots: slots})
	return nil
}

// Remove unmaps slot's device: Lookup no longer finds it, but the slot,
// its name and its counters stay, and Move maps it again. Removing a slot
// that is not mapped does nothing.
func (b *Bus) Remove(slot int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.table.Load()
	if t == nil || slot < 0 || slot >= len(t.slots) {
		return
	}
	ranges := slices.DeleteFunc(slices.Clone(t.ranges), func(r busRange) bool { return r.slot == slot })
	b.table.Store(&busTable{ranges: ranges, slots: t.slots})
}

// Mapped reports whether slot's device is on the bus (not Removed).
func (b *Bus) Mapped(slot int) bool {
	t := b.table.Load()
	if t == nil {
		return false
	}
	return slices.ContainsFunc(t.ranges, func(r busRange) bool { return r.slot == slot })
}

func (b *Bus) overlapError(t *busTable, name string, base, size uint64, r busRange) error {
	s := t.slots[r.slot]
	return fmt.Errorf("bus: insert %q at [%#x, %#x]: overlaps %q at [%#x, %#x]",
		name, base, base+(size-1), s.name, r.base, r.last)
}

// Lookup returns the device whose range contains addr, addr's offset from
// the base that device was inserted at, and the device's slot. ok is false
// (and slot is -1) if no device claims addr.
//
// Lookup is called on every I/O exit: it takes no lock and does not
// allocate.
func (b *Bus) Lookup(addr uint64) (dev Device, offset uint64, slot int, ok bool) {
	t := b.table.Load()
	if t == nil {
		return nil, 0, -1, false
	}
	r := t.ranges
	// Find the first range whose base is above addr; the candidate is the
	// one before it.
	lo, hi := 0, len(r)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if r[m].base <= addr {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == 0 {
		return nil, 0, -1, false
	}
	e := &r[lo-1]
	if addr > e.last {
		return nil, 0, -1, false
	}
	return e.dev, addr - e.base, e.slot, true
}

// Slots returns the number of devices inserted; valid slots are
// 0 <= slot < Slots().
func (b *Bus) Slots() int {
	if t := b.table.Load(); t != nil {
		return len(t.slots)
	}
	return 0
}

func (b *Bus) slot(slot int) (busSlot, bool) {
	t := b.table.Load()
	if t == nil || slot < 0 || slot >= len(t.slots) {
		return busSlot{}, false
	}
	return t.slots[slot], true
}

// SlotName returns the name slot's device was inserted with, or "" if slot
// is not valid.
func (b *Bus) SlotName(slot int) string {
	s, _ := b.slot(slot)
	return s.name
}

// SlotDevice returns slot's device, or nil if slot is not valid.
func (b *Bus) SlotDevice(slot int) Device {
	s, _ := b.slot(slot)
	return s.dev
}

// SlotBase returns the base address slot's device was inserted or last
// moved at, or 0 if slot is not valid.
func (b *Bus) SlotBase(slot int) uint64 {
	s, _ := b.slot(slot)
	return s.base
}

// SlotSize returns the size of slot's range, or 0 if slot is not valid.
func (b *Bus) SlotSize(slot int) uint64 {
	s, _ := b.slot(slot)
	return s.size
}
