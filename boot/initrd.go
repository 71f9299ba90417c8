package boot

import "fmt"

// placeInitrd picks the initrd's address: the highest page-aligned start
// such that the initrd lies in RAM at or above 1 MiB, ends at or below
// limit, and touches none of the avoid ranges (the kernel's load and
// init_size footprint). High placement follows what boot loaders do
// (boot.rst, "initrd_addr_max": "... load the initrd as high as
// possible") and keeps it out of the way of the kernel's decompression and
// early allocations.
func placeInitrd(ram []Range, size, limit uint64, avoid []Range) (uint64, error) {
	free := freeRanges(ram, HighMemStart, limit, avoid)
	for i := len(free) - 1; i >= 0; i-- {
		f := free[i]
		if f.Size < size {
			continue
		}
		if start := alignDown(f.End()-size, pageSize); start >= f.Start {
			return start, nil
		}
	}
	below := "the top of RAM"
	if limit != ^uint64(0) {
		below = fmt.Sprintf("%#x", limit)
	}
	return 0, errf(ErrInitrdTooLarge, "initrd (%s) does not fit in guest RAM below %s, outside the kernel", mib(size), below)
}
