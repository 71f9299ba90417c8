package profile

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// Symbols maps addresses to the function that contains them.
type Symbols struct {
	addrs []uint64 // sorted
	names []string
}

// ReadSymbols parses a symbol table in nm(1) format, "address type name
// [module]" per line: a kernel's System.map or /proc/kallsyms. Only text
// symbols (type t or T) are kept; lines that are not symbols are skipped, so
// a file with none at all is an error.
func ReadSymbols(r io.Reader) (*Symbols, error) {
	type sym struct {
		addr uint64
		name string
	}
	var syms []sym
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 256), maxLine)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 || (f[1] != "t" && f[1] != "T") {
			continue
		}
		a, err := strconv.ParseUint(f[0], 16, 64)
		if err != nil || a == 0 {
			continue
		}
		name := f[2]
		if len(f) > 3 {
			name += " " + f[3] // kallsyms module, "[virtio_net]"
		}
		syms = append(syms, sym{a, name})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("symbols: %w", err)
	}
	if len(syms) == 0 {
		return nil, errors.New("symbols: no text symbols (want System.map or /proc/kallsyms lines: \"ffffffff81000000 T _text\")")
	}
	sort.SliceStable(syms, func(i, j int) bool { return syms[i].addr < syms[j].addr })
	s := &Symbols{addrs: make([]uint64, len(syms)), names: make([]string, len(syms))}
	for i, y := range syms {
		s.addrs[i], s.names[i] = y.addr, y.name
	}
	return s, nil
}

// Lookup returns the symbol at or below addr and the offset into it, or
// false when addr is below every symbol.
func (s *Symbols) Lookup(addr uint64) (name string, off uint64, ok bool) {
	i := sort.Search(len(s.addrs), func(i int) bool { return s.addrs[i] > addr }) - 1
	if i < 0 {
		return "", 0, false
	}
	return s.names[i], addr - s.addrs[i], true
}
