package trace

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/gvmm/gvmm/kvm"
	"github.com/gvmm/gvmm/vcpu"
)

// dumpFormat lays out one exit per line in fixed-width columns, so the
// output lines up, greps well and sorts by time with sort -n.
const dumpFormat = "%16s %4s  %-14s %-12s %-16s %12s %4s %18s %10s %12s%s\n"

// Dump prints the trace r to w, one line per exit: the time in seconds
// since the trace started, the vCPU, the kind, the device and register (or
// instruction, or exit reason), the port or address, the access size, the
// data, the handling time and the time in KVM_RUN before the exit, both in
// ns; string I/O adds its repeat count. Lines are in file order, which is
// time order within each vCPU only; sort -n orders them all.
//
// A trace cut short or damaged is printed as far as it could be read, and
// Dump then returns the reading error.
func Dump(r io.Reader, w io.Writer) error {
	tr, err := NewReader(r)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, dumpFormat, "TIME", "VCPU", "KIND", "DEVICE", "REGISTER", "ADDR", "SIZE", "DATA", "HANDLE_NS", "RUN_NS", "")
	for {
		rec, err := tr.Next()
		if err != nil {
			if ferr := bw.Flush(); ferr != nil {
				return ferr
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		writeRecord(bw, &rec)
	}
}

func writeRecord(w io.Writer, rec *Record) {
	dev, reg, addr, size, data, extra := "-", "-", "-", "-", "-", ""
	switch {
	case isAccess(rec.Kind):
		dev, reg = rec.Device, rec.Register
		off := rec.Offset
		if rec.Slot < 0 {
			off = rec.Addr
		}
		if dev == "" {
			dev = "unclaimed"
			if rec.Slot >= 0 {
				dev = "slot" + strconv.Itoa(rec.Slot)
			}
		}
		if reg == "" {
			reg = "0x" + strconv.FormatUint(off, 16)
		}
		addr = "0x" + strconv.FormatUint(rec.Addr, 16)
		size = strconv.Itoa(int(rec.Size))
		data = "0x" + strconv.FormatUint(rec.Data, 16)
		if rec.Count != 1 {
			extra = " x" + strconv.FormatUint(uint64(rec.Count), 10)
		}
	case rec.Kind == vcpu.KindFallback:
		reg = rec.Register
		if reg == "" {
			reg = "op" + strconv.Itoa(int(rec.Op))
		}
	case rec.Kind == vcpu.KindOther:
		reg = kvm.ExitName(rec.Reason)
	}
	fmt.Fprintf(w, dumpFormat, fmtTime(rec.Time), strconv.Itoa(rec.VCPU), rec.Kind, dev, reg, addr, size, data,
		strconv.FormatInt(rec.HandleNs, 10), strconv.FormatInt(rec.RunNs, 10), extra)
}

// fmtTime formats ns as seconds with nine decimals.
func fmtTime(ns int64) string {
	sign := ""
	if ns < 0 {
		sign, ns = "-", -ns
	}
	return fmt.Sprintf("%s%d.%09d", sign, ns/1e9, ns%1e9)
}
