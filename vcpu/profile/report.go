package profile

import (
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
)

// kernelBase is the lowest canonical kernel-half address on x86-64 (4-level
// paging): guest code at or above it runs in the kernel, code below it in
// user space.
const kernelBase = 0xffff_8000_0000_0000

// Name returns the label Report gives rip: its function and offset when
// syms knows it, "[user]" for user-space addresses, else the address.
func Name(syms *Symbols, rip uint64) string {
	if rip < kernelBase {
		return "[user]"
	}
	if syms != nil {
		if name, off, ok := syms.Lookup(rip); ok {
			return fmt.Sprintf("%s+%#x", name, off)
		}
	}
	return fmt.Sprintf("%#x", rip)
}

// function is the per-function label: the name without its offset.
func function(syms *Symbols, rip uint64) string {
	if rip < kernelBase {
		return "[user]"
	}
	if syms != nil {
		if name, _, ok := syms.Lookup(rip); ok {
			return name
		}
	}
	return fmt.Sprintf("%#x", rip)
}

type row struct {
	label string
	n     uint64
}

// Report writes the top functions (all vCPUs together) and, for each of
// them, its hottest addresses, most samples first. syms may be nil: kernel
// addresses are then shown raw.
func Report(w io.Writer, p *Profile, syms *Symbols, top int) error {
	counts := p.Counts()
	var total uint64
	byFunc := map[string]uint64{}
	byRIP := map[uint64]uint64{}
	perVCPU := map[int]uint64{}
	for k, n := range counts {
		total += n
		byFunc[function(syms, k.RIP)] += n
		byRIP[k.RIP] += n
		perVCPU[k.VCPU] += n
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%d samples", total)
	vcpus := make([]int, 0, len(perVCPU))
	for v := range perVCPU {
		vcpus = append(vcpus, v)
	}
	sort.Ints(vcpus)
	for _, v := range vcpus {
		fmt.Fprintf(tw, ", vCPU %d: %d", v, perVCPU[v])
	}
	if d := p.Dropped(); d > 0 {
		fmt.Fprintf(tw, " (%d more dropped: over %d addresses)", d, maxKeys)
	}
	fmt.Fprintln(tw)
	if total == 0 {
		return tw.Flush()
	}
	fmt.Fprintln(tw, "samples\t%\t  function")
	for _, r := range sorted(byFunc, top) {
		fmt.Fprintf(tw, "%d\t%.1f\t  %s\n", r.n, 100*float64(r.n)/float64(total), r.label)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "samples\t%\t  address")
	rips := map[string]uint64{}
	for rip, n := range byRIP {
		rips[fmt.Sprintf("%#x %s", rip, Name(syms, rip))] += n
	}
	for _, r := range sorted(rips, top) {
		fmt.Fprintf(tw, "%d\t%.1f\t  %s\n", r.n, 100*float64(r.n)/float64(total), r.label)
	}
	return tw.Flush()
}

// sorted returns the top entries of m, most first, ties by label.
func sorted(m map[string]uint64, top int) []row {
	rows := make([]row, 0, len(m))
	for l, n := range m {
		rows = append(rows, row{l, n})
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].n != rows[j].n {
			return rows[i].n > rows[j].n
		}
		return rows[i].label < rows[j].label
	})
	if top > 0 && len(rows) > top {
		rows = rows[:top]
	}
	return rows
}
