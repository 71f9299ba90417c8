package main

import (
	"fmt"
	"strconv"
	"strings"
)

// parseSize parses a memory size: a number of bytes with an optional K, M,
// G or T suffix (binary multiples, optionally followed by "B" or "iB", any
// case), as QEMU's -m accepts. A bare number is MiB, as in QEMU.
func parseSize(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	u := strings.ToUpper(t)
	u = strings.TrimSuffix(strings.TrimSuffix(u, "IB"), "B")
	shift := uint(20)
	if n := len(u); n > 0 {
		switch u[n-1] {
		case 'K':
			shift, u = 10, u[:n-1]
		case 'M':
			shift, u = 20, u[:n-1]
		case 'G':
			shift, u = 30, u[:n-1]
		case 'T':
			shift, u = 40, u[:n-1]
		}
	}
	v, err := strconv.ParseFloat(u, 64)
	if err != nil || v <= 0 || v != v {
		return 0, fmt.Errorf("invalid size %q (want a number with an optional K, M, G or T suffix, e.g. 512M or 2G)", s)
	}
	bytes := v * float64(uint64(1)<<shift)
	if bytes >= 1<<63 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return uint64(bytes), nil
}
