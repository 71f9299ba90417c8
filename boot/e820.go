package boot

import (
	"cmp"
	"slices"
)

// E820Type is the type of an e820 memory map entry
// (arch/x86/include/asm/e820/types.h; the PVH memory map uses the same values).
type E820Type uint32

// e820 entry types.
const (
	E820RAM      E820Type = 1 // E820_TYPE_RAM: usable memory
	E820Reserved E820Type = 2 // E820_TYPE_RESERVED
	E820ACPI     E820Type = 3 // E820_TYPE_ACPI: reclaimable ACPI tables
	E820NVS      E820Type = 4 // E820_TYPE_NVS
	E820Unusable E820Type = 5 // E820_TYPE_UNUSABLE
)

// MaxE820Entries is the capacity of boot_params.e820_table
// (E820_MAX_ENTRIES_ZEROPAGE in bootparam.h).
const MaxE820Entries = 128

// E820Entry is one entry of the memory map: struct boot_e820_entry
// (bootparam.h), packed as {addr u64, size u64, type u32} in the zero page.
type E820Entry struct {
	Addr, Size uint64
	Type       E820Type
}

// End returns the first address after the entry.
func (e E820Entry) End() uint64 { return e.Addr + e.Size }

// E820 builds the guest's memory map from its RAM ranges (sorted, as in
// Config.RAM): RAM below the EBDA ([0, 0x9FC00)), the reserved legacy area
// [0x9FC00, 0x100000) (EBDA, VGA hole, BIOS area with the ACPI tables at
// 0xE0000), then the RAM above 1 MiB. Gaps in ram, such as the 3-4 GiB MMIO
// hole, are simply absent, which is how Linux learns they are not RAM.
// Adjacent RAM ranges are merged. Each of reserved (the PCI ECAM window,
// which Linux uses only if the map reserves it) is added as
// E820Reserved, and the map is kept in address order.
func E820(ram []Range, reserved ...Range) []E820Entry {
	var out []E820Entry
	add := func(start, end uint64, t E820Type) {
		if start >= end {
			return
		}
		if n := len(out); n > 0 && out[n-1].Type == t && out[n-1].End() == start {
			out[n-1].Size += end - start
			return
		}
		out = append(out, E820Entry{Addr: start, Size: end - start, Type: t})
	}
	for _, r := range ram {
		add(r.Start, min(r.End(), EBDAStart), E820RAM)
	}
	add(EBDAStart, HighMemStart, E820Reserved)
	for _, r := range ram {
		add(max(r.Start, HighMemStart), r.End(), E820RAM)
	}
	for _, r := range reserved {
		if r.Size > 0 {
			out = append(out, E820Entry{Addr: r.Start, Size: r.Size, Type: E820Reserved})
		}
	}
	slices.SortStableFunc(out, func(a, b E820Entry) int { return cmp.Compare(a.Addr, b.Addr) })
	return out
}
