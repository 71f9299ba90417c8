package boot

import (
	"fmt"
	"sort"
	"strings"
)

// Range is a guest-physical address range [Start, Start+Size).
type Range struct {
	Start, Size uint64
}

// End returns the first address after the range.
func (r Range) End() uint64 { return r.Start + r.Size }

// String formats the range as a half-open interval.
func (r Range) String() string { return fmt.Sprintf("[%#x, %#x)", r.Start, r.End()) }

// validateRAM checks that the ranges are non-empty, do not wrap around,
// and are sorted without overlaps, which the rest of the package relies on.
func validateRAM(ram []Range) error {
	if len(ram) == 0 {
		return errf(ErrConfig, "no RAM ranges")
	}
	for i, r := range ram {
		if r.Size == 0 {
			return errf(ErrConfig, "RAM range %d at %#x is empty", i, r.Start)
		}
		if r.Start+r.Size < r.Start {
			return errf(ErrConfig, "RAM range %d at %#x wraps around the address space", i, r.Start)
		}
		if i > 0 && r.Start < ram[i-1].End() {
			return errf(ErrConfig, "RAM range %s overlaps or precedes %s", r, ram[i-1])
		}
	}
	return nil
}

// ramCovers reports whether every byte of [start, end) is RAM. Adjacent
// ranges count as one, so a kernel may straddle two of them.
func ramCovers(ram []Range, start, end uint64) bool {
	if end < start {
		return false
	}
	if end == start {
		return true
	}
	for _, r := range ram {
		if r.End() <= start {
			continue
		}
		if r.Start > start {
			return false // a gap before the next range
		}
		if r.End() >= end {
			return true
		}
		start = r.End()
	}
	return false
}

// overlaps reports whether [a, a+as) and [b, b+bs) share a byte.
func overlaps(a, as, b, bs uint64) bool {
	return as != 0 && bs != 0 && a < b+bs && b < a+as
}

// freeRanges returns the parts of ram inside [lo, hi) that no range in
// avoid touches, sorted by address.
func freeRanges(ram []Range, lo, hi uint64, avoid []Range) []Range {
	avoid = append([]Range(nil), avoid...)
	sort.Slice(avoid, func(i, j int) bool { return avoid[i].Start < avoid[j].Start })
	var out []Range
	for _, r := range ram {
		s, e := max(r.Start, lo), min(r.End(), hi)
		for _, a := range avoid {
			if s >= e {
				break
			}
			if a.Size == 0 || a.End() <= s || a.Start >= e {
				continue
			}
			if a.Start > s {
				out = append(out, Range{s, a.Start - s})
			}
			s = max(s, a.End())
		}
		if s < e {
			out = append(out, Range{s, e - s})
		}
	}
	return out
}

// rangesString formats ranges for messages.
func rangesString(rs []Range) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = r.String()
	}
	return strings.Join(s, " ")
}

func alignUp(v, a uint64) uint64   { return (v + a - 1) &^ (a - 1) }
func alignDown(v, a uint64) uint64 { return v &^ (a - 1) }
func isPow2(v uint64) bool         { return v != 0 && v&(v-1) == 0 }

// mib formats a byte count for messages.
func mib(n uint64) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
