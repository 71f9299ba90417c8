package stats

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxRegisterRows bounds the register section of the table, which is read
// at a glance; the JSON report has every row.
const maxRegisterRows = 30

// WriteTable prints the report as aligned text for people: a summary line,
// the exit kinds and then the device registers by decreasing total handling
// time, a per-vCPU summary, and the other counters. Times are in ns, µs, ms
// or s and counts in k and M, to three significant digits.
func (r *Report) WriteTable(w io.Writer) error {
	ew := &errWriter{w: w}
	ew.printf("%s\n", r.headline())
	if r.Exits == 0 {
		ew.printf("no exits yet\n")
	} else {
		ew.printf("\n")
		kt := newTable("KIND", "<", "COUNT", "TOTAL", "SHARE", "MEAN", "P50", "P90", "P99", "MAX")
		for _, row := range r.Kinds {
			kt.add(latencyCells(row, row.Kind)...)
		}
		kt.write(ew)

		if len(r.Registers) > 0 {
			ew.printf("\n")
			rt := newTable("KIND", "<", "DEVICE", "<", "REGISTER", "<", "COUNT", "TOTAL", "SHARE", "MEAN", "P50", "P90", "P99", "MAX")
			for i, row := range r.Registers {
				if i == maxRegisterRows {
					break
				}
				rt.add(latencyCells(row, row.Kind, dash(row.Device), row.Register)...)
			}
			rt.write(ew)
			if rest := r.Registers[min(len(r.Registers), maxRegisterRows):]; len(rest) > 0 {
				var n uint64
				var t int64
				for _, row := range rest {
					n, t = n+row.Count, t+row.TotalNs
				}
				ew.printf("(%d more rows: %s exits, %s)\n", len(rest), fmtCount(n), fmtDur(t))
			}
		}
	}

	ew.printf("\n")
	vt := newTable("VCPU", "<", "EXITS", "EXITS/S", "KVM_RUN", "RUN%", "HANDLING", "HANDLE%", "RUN P50", "RUN P99", "RUN MAX", "KICKS")
	for _, v := range r.PerVCPU {
		vt.add(strconv.Itoa(v.VCPU), fmtCount(v.Exits), fmtRate(v.ExitsPerSec),
			fmtDur(v.Run.TotalNs), r.pctOfTime(v.Run.TotalNs, 1),
			fmtDur(v.HandleNs), r.pctOfTime(v.HandleNs, 1),
			fmtDur(v.Run.P50Ns), fmtDur(v.Run.P99Ns), fmtDur(v.Run.MaxNs), fmtCount(v.Kicks))
	}
	if len(r.PerVCPU) > 1 {
		vt.add("all", fmtCount(r.Exits), fmtRate(r.rate(r.Exits)),
			fmtDur(r.Run.TotalNs), r.pctOfTime(r.Run.TotalNs, r.VCPUs),
			fmtDur(r.HandleNs), r.pctOfTime(r.HandleNs, r.VCPUs),
			fmtDur(r.Run.P50Ns), fmtDur(r.Run.P99Ns), fmtDur(r.Run.MaxNs), fmtCount(r.Kicks))
	}
	vt.write(ew)

	ew.printf("\neintr %s, kicks %s\n", fmtCount(r.EINTR), fmtCount(r.Kicks))
	if len(r.IRQs) > 0 || r.IRQsBeyond > 0 {
		parts := make([]string, 0, len(r.IRQs)+1)
		for _, q := range r.IRQs {
			parts = append(parts, fmt.Sprintf("%d: %s", q.GSI, fmtCount(q.Count)))
		}
		if r.IRQsBeyond > 0 {
			parts = append(parts, fmt.Sprintf(">=%d: %s", MaxGSI, fmtCount(r.IRQsBeyond)))
		}
		ew.printf("irqs by gsi: %s\n", strings.Join(parts, ", "))
	}
	if len(r.EventFDs) > 0 {
		parts := make([]string, 0, len(r.EventFDs))
		for _, e := range r.EventFDs {
			parts = append(parts, fmt.Sprintf("%s: %s", e.Name, fmtCount(e.Count)))
		}
		ew.printf("eventfd signals: %s\n", strings.Join(parts, ", "))
	}
	return ew.err
}

// headline is the one-line summary the table starts with.
func (r *Report) headline() string {
	plural := "s"
	if r.VCPUs == 1 {
		plural = ""
	}
	return fmt.Sprintf("%s exits in %s (%s/s) on %d vCPU%s; in KVM_RUN %s (%s), handling %s (%s)",
		fmtCount(r.Exits), fmtDur(r.ElapsedNs), fmtRate(r.rate(r.Exits)), r.VCPUs, plural,
		fmtDur(r.Run.TotalNs), r.pctOfTime(r.Run.TotalNs, r.VCPUs),
		fmtDur(r.HandleNs), r.pctOfTime(r.HandleNs, r.VCPUs))
}

func (r *Report) rate(n uint64) float64 {
	if r.ElapsedNs <= 0 {
		return 0
	}
	return float64(n) / (float64(r.ElapsedNs) / 1e9)
}

// pctOfTime is ns as a share of the elapsed time of nvcpu vCPUs.
func (r *Report) pctOfTime(ns int64, nvcpu int) string {
	if r.ElapsedNs <= 0 || nvcpu <= 0 {
		return "-"
	}
	return fmtPct(float64(ns) / (float64(r.ElapsedNs) * float64(nvcpu)))
}

// latencyCells formats the leading name cells and a row's latency figures.
func latencyCells(row Row, names ...string) []string {
	s := row.Summary
	return append(names, fmtCount(s.Count), fmtDur(s.TotalNs), fmtPct(row.Share),
		fmtDur(s.MeanNs), fmtDur(s.P50Ns), fmtDur(s.P90Ns), fmtDur(s.P99Ns), fmtDur(s.MaxNs))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// fmtDur formats nanoseconds with the largest unit that keeps the number
// at or above 1, to three significant digits: "850ns", "1.29µs", "12.3ms".
func fmtDur(ns int64) string {
	if ns < 0 {
		return "-" + fmtDur(-ns)
	}
	if ns < 1000 {
		return strconv.FormatInt(ns, 10) + "ns"
	}
	return scaled(float64(ns), durUnits)
}

// fmtCount formats a count: "999", "1.23k", "45.6M".
func fmtCount(n uint64) string {
	if n < 1000 {
		return strconv.FormatUint(n, 10)
	}
	return scaled(float64(n), countUnits)
}

// fmtRate formats a per-second rate like a count, with a decimal below 10.
func fmtRate(f float64) string {
	switch {
	case f < 10:
		return strconv.FormatFloat(f, 'f', 1, 64)
	case f < 999.5:
		return strconv.FormatFloat(f, 'f', 0, 64)
	}
	return scaled(f, countUnits)
}

// fmtPct formats a fraction as a percentage with one decimal.
func fmtPct(f float64) string { return strconv.FormatFloat(100*f, 'f', 1, 64) + "%" }

type unit struct {
	div  float64
	name string
}

var (
	durUnits   = []unit{{1e3, "µs"}, {1e6, "ms"}, {1e9, "s"}}
	countUnits = []unit{{1e3, "k"}, {1e6, "M"}, {1e9, "G"}, {1e12, "T"}}
)

// scaled prints x in the first unit that leaves fewer than four integer
// digits after rounding to three significant digits.
func scaled(x float64, units []unit) string {
	for i, u := range units {
		v := x / u.div
		switch {
		case v < 9.995:
			return strconv.FormatFloat(v, 'f', 2, 64) + u.name
		case v < 99.95:
			return strconv.FormatFloat(v, 'f', 1, 64) + u.name
		case v < 999.5 || i == len(units)-1:
			return strconv.FormatFloat(v, 'f', 0, 64) + u.name
		}
	}
	panic("unreachable")
}

// table lays out columns: names left-aligned, numbers right-aligned, two
// spaces apart, widths counted in runes (for "µs"), no trailing blanks.
type table struct {
	header []string
	left   []bool
	rows   [][]string
}

// newTable takes the column headers; a header followed by "<" makes a
// left-aligned column, the others are right-aligned.
func newTable(spec ...string) *table {
	t := &table{}
	for _, s := range spec {
		if s == "<" {
			t.left[len(t.left)-1] = true
			continue
		}
		t.header = append(t.header, s)
		t.left = append(t.left, false)
	}
	return t
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) write(ew *errWriter) {
	width := make([]int, len(t.header))
	for _, row := range append([][]string{t.header}, t.rows...) {
		for i, c := range row {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	for _, row := range append([][]string{t.header}, t.rows...) {
		b.Reset()
		for i, c := range row {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if i > 0 {
				b.WriteString("  ")
			}
			if t.left[i] {
				b.WriteString(c)
				if i < len(row)-1 {
					b.WriteString(pad)
				}
			} else {
				b.WriteString(pad)
				b.WriteString(c)
			}
		}
		b.WriteByte('\n')
		ew.printf("%s", b.String())
	}
}

// errWriter keeps the first write error so the table code can print
// unconditionally and report once.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}
