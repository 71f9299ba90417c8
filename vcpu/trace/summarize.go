package trace

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/gvmm/gvmm/vcpu"
	"github.com/gvmm/gvmm/vcpu/stats"
)

// Summarize prints the statistics of the trace r to w, in the table of
// stats.Report.WriteTable: it replays every record into a stats.Collector,
// naming devices and registers with the names stored in the trace. Rates
// run from the start of the trace to the end of its last exit. Kicks,
// interrupts and eventfd signals are not in traces and show as zero.
//
// A trace cut short or damaged is summarised as far as it could be read,
// with a warning, and Summarize then returns the reading error.
func Summarize(r io.Reader, w io.Writer) error {
	tr, err := NewReader(r)
	if err != nil {
		return err
	}
	hdr := tr.Header()
	names := &replayNamer{devs: map[regKey]string{}, regs: map[regKey]string{}}
	c := stats.New(hdr.VCPUs, names, names.opName)
	c.SetStart(hdr.Start)
	var (
		end     int64
		n       uint64
		readErr error
	)
	for {
		rec, err := tr.Next()
		if err != nil {
			readErr = err
			break
		}
		names.learn(&rec)
		c.VCPU(rec.VCPU).Observe(&rec.Exit)
		end = max(end, rec.Time+rec.HandleNs)
		n++
	}
	if _, err := fmt.Fprintf(w, "trace started %s, %d vCPUs, %d records\n",
		hdr.Start.Format(time.RFC3339Nano), hdr.VCPUs, n); err != nil {
		return err
	}
	if err := c.ReportAt(hdr.Wall(end)).WriteTable(w); err != nil {
		return err
	}
	if errors.Is(readErr, io.EOF) {
		return nil
	}
	if _, err := fmt.Fprintf(w, "\nwarning: incomplete summary: %v\n", readErr); err != nil {
		return err
	}
	return readErr
}

type regKey struct {
	kind vcpu.Kind
	slot int
	off  uint64
}

// replayNamer answers stats' questions with the names the trace recorded.
// It learns each record's names just before the record is replayed, which
// is when the Collector asks for them (the first time it meets a register).
type replayNamer struct {
	devs map[regKey]string // off is 0
	regs map[regKey]string
	ops  [256]string
}

func (n *replayNamer) learn(rec *Record) {
	switch {
	case rec.Kind == vcpu.KindFallback:
		n.ops[rec.Op] = rec.Register
	case isAccess(rec.Kind):
		k := regKey{rec.Kind, rec.Slot, rec.Offset}
		if rec.Slot < 0 {
			k.off = rec.Addr
		}
		n.regs[k] = rec.Register
		n.devs[regKey{rec.Kind, rec.Slot, 0}] = rec.Device
	}
}

func (n *replayNamer) DeviceName(k vcpu.Kind, slot int) string {
	return n.devs[regKey{k, slot, 0}]
}

func (n *replayNamer) RegisterName(k vcpu.Kind, slot int, off uint64, _ bool) string {
	return n.regs[regKey{k, slot, off}]
}

func (n *replayNamer) opName(op uint8) string { return n.ops[op] }
