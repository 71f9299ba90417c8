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
	fn, off, known := where(syms, rip)
	if known {
		return fmt.Sprintf("%s+%#x", fn, off)
	}
	return fn
}

// where returns the function rip lies in ("[user]" for user space, the
// address itself for a kernel address syms does not know, or with no
// syms) and, when known, rip's offset into it.
func where(syms *Symbols, rip uint64) (fn string, off uint64, known bool) {
	if rip < kernelBase {
		return "[user]", 0, false
	}
	if syms != nil {
		if name, off, ok := syms.Lookup(rip); ok {
			return name, off, true
		}
	}
	return fmt.Sprintf("%#x", rip), 0, false
}

type row struct {
	label string
	n     uint64
}

// Report writes the samples per vCPU, then the hottest functions and the
// hottest addresses (all vCPUs together), most samples first, top of each
// (0: all). syms may be nil: kernel addresses are then shown raw.
func Report(w io.Writer, p *Profile, syms *Symbols, top int) error {
	var total uint64
	byRIP := map[uint64]uint64{}
	perVCPU := map[int]uint64{}
	for k, n := range p.Counts() {
		total += n
		byRIP[k.RIP] += n
		perVCPU[k.VCPU] += n
	}
	// One symbol lookup per distinct address serves both tables.
	byFunc := map[string]uint64{}
	byAddr := map[string]uint64{}
	for rip, n := range byRIP {
		fn, off, known := where(syms, rip)
		byFunc[fn] += n
		label := fmt.Sprintf("%#x", rip)
		switch {
		case known:
			label += fmt.Sprintf(" %s+%#x", fn, off)
		case rip < kernelBase:
			label += " " + fn
		}
		byAddr[label] += n
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
	table := func(title string, m map[string]uint64) {
		fmt.Fprintf(tw, "samples\t%%\t  %s\n", title)
		for _, r := range sorted(m, top) {
			fmt.Fprintf(tw, "%d\t%.1f\t  %s\n", r.n, 100*float64(r.n)/float64(total), r.label)
		}
	}
	table("function", byFunc)
	fmt.Fprintln(tw)
	table("address", byAddr)
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
