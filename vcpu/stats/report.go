package stats

import (
	"cmp"
	"slices"
	"time"

	"github.com/gvmm/gvmm/vcpu"
)

// Summary condenses one latency histogram. Durations are in nanoseconds;
// percentiles are accurate to within 1/32 of their value (the histogram's
// bucket resolution), min, max and total are exact.
type Summary struct {
	Count   uint64 `json:"count"`
	TotalNs int64  `json:"total_ns"`
	MeanNs  int64  `json:"mean_ns"`
	MinNs   int64  `json:"min_ns"`
	P50Ns   int64  `json:"p50_ns"`
	P90Ns   int64  `json:"p90_ns"`
	P99Ns   int64  `json:"p99_ns"`
	MaxNs   int64  `json:"max_ns"`
}

// Row is the handling time of one exit kind, or of one device register (or
// emulated instruction, or exit reason) within a kind, over all vCPUs.
type Row struct {
	// Kind is the exit kind's name, such as "io-in" (vcpu.Kind.String).
	Kind string `json:"kind"`
	// Device names the device for I/O and MMIO rows ("serial0",
	// "unclaimed"); it is empty in per-kind rows and for the other kinds.
	Device string `json:"device,omitempty"`
	// Register names the register ("LSR", or the offset, port or address
	// in hex), the emulated instruction for fallback rows, or the KVM exit
	// reason for rows of kind "other". Empty in per-kind rows.
	Register string `json:"register,omitempty"`
	// Share is this row's fraction of all handling time, 0 to 1.
	Share float64 `json:"share"`
	// Summary is the handling time (vcpu.Exit.HandleNs) per exit.
	Summary
}

// VCPUReport summarises one vCPU.
type VCPUReport struct {
	VCPU        int     `json:"vcpu"`
	Exits       uint64  `json:"exits"`
	ExitsPerSec float64 `json:"exits_per_sec"`
	// ByKind counts the vCPU's exits per kind name; kinds it never took
	// are left out.
	ByKind map[string]uint64 `json:"by_kind"`
	// HandleNs is the total time spent handling the vCPU's exits.
	HandleNs int64 `json:"handle_ns"`
	// Run is the time spent in KVM_RUN between exits (vcpu.Exit.RunNs).
	Run Summary `json:"run"`
	// Kicks counts signals sent to pull the vCPU out of KVM_RUN.
	Kicks uint64 `json:"kicks"`
	// Registers counts the vCPU's exits per row of Report.Registers, by
	// decreasing total handling time.
	Registers []RegisterCount `json:"registers"`
}

// RegisterCount is one vCPU's share of a row of Report.Registers: its exit
// count and total handling time, without percentiles (which would cost a
// histogram per vCPU and register in every report).
type RegisterCount struct {
	Kind     string `json:"kind"`
	Device   string `json:"device,omitempty"`
	Register string `json:"register,omitempty"`
	Count    uint64 `json:"count"`
	TotalNs  int64  `json:"total_ns"`
}

// IRQCount is the number of interrupts injected on one GSI.
type IRQCount struct {
	GSI   uint32 `json:"gsi"`
	Count uint64 `json:"count"`
}

// EventFDCount is the number of signals on one named eventfd.
type EventFDCount struct {
	Name  string `json:"name"`
	Count uint64 `json:"count"`
}

// Report is a snapshot of a Collector. It is a plain value: print it with
// WriteTable or WriteJSON, or read its fields.
type Report struct {
	// StartUnixNs is when counting started (Collector.SetStart), and
	// TakenUnixNs when the snapshot was taken, in Unix nanoseconds.
	StartUnixNs int64 `json:"start_unix_ns"`
	TakenUnixNs int64 `json:"taken_unix_ns"`
	// ElapsedNs is TakenUnixNs - StartUnixNs, the base of rates.
	ElapsedNs int64 `json:"elapsed_ns"`
	// VCPUs is the number of vCPUs.
	VCPUs int `json:"vcpus"`
	// Exits counts all exits to userspace, EINTR returns included.
	Exits uint64 `json:"exits"`
	// HandleNs is the total time spent handling exits, over all vCPUs.
	HandleNs int64 `json:"handle_ns"`
	// Run is the time spent in KVM_RUN between exits, over all vCPUs.
	Run Summary `json:"run"`
	// Kinds has one row per exit kind seen, by decreasing total handling
	// time.
	Kinds []Row `json:"kinds"`
	// Registers breaks the I/O, MMIO, fallback and other kinds down by
	// device register, instruction or exit reason, by decreasing total.
	Registers []Row `json:"registers"`
	// PerVCPU has one entry per vCPU, in order.
	PerVCPU []VCPUReport `json:"per_vcpu"`
	// EINTR counts KVM_RUN calls a signal interrupted (kind "eintr").
	EINTR uint64 `json:"eintr"`
	// Kicks counts vCPU kicks, over all vCPUs.
	Kicks uint64 `json:"kicks"`
	// IRQs counts injected interrupts per GSI, by decreasing count;
	// IRQsBeyond counts those on GSIs of MaxGSI and above.
	IRQs       []IRQCount `json:"irqs"`
	IRQsBeyond uint64     `json:"irqs_beyond,omitempty"`
	// EventFDs counts eventfd signals per name, by decreasing count.
	EventFDs []EventFDCount `json:"eventfds"`
}

// Report takes a snapshot now. It may be called from any goroutine while the
// vCPUs run; it does not stop or slow them.
func (c *Collector) Report() *Report { return c.ReportAt(time.Now()) }

// ReportAt takes a snapshot as if at time now, which rates are computed to.
// Replays of recorded exits (trace.Summarize) use the time of the last exit.
func (c *Collector) ReportAt(now time.Time) *Report {
	r := &Report{
		StartUnixNs: c.start.Load(),
		TakenUnixNs: now.UnixNano(),
		VCPUs:       len(c.vcpus),
		Kinds:       []Row{},
		Registers:   []Row{},
		PerVCPU:     make([]VCPUReport, len(c.vcpus)),
		IRQs:        []IRQCount{},
		EventFDs:    []EventFDCount{},
	}
	r.ElapsedNs = r.TakenUnixNs - r.StartUnixNs

	var (
		kinds [vcpu.NumKinds]histSnap
		run   histSnap
		regs  = map[regLabel]*regSnap{}
		one   histSnap
	)
	for i, v := range c.vcpus {
		vr := VCPUReport{VCPU: i, ByKind: map[string]uint64{}, Kicks: c.kicks[i].Load(), Registers: []RegisterCount{}}
		vregs := map[regLabel]int{} // index in vr.Registers
		var vrun histSnap
		vrun.addLive(&v.run)
		vr.Run = vrun.summary()
		run.add(&vrun)
		for _, ks := range *v.pub.Load() {
			one = histSnap{}
			one.addLive(&ks.h)
			if one.count == 0 {
				continue
			}
			kn := ks.key.kind.String()
			vr.ByKind[kn] += one.count
			vr.Exits += one.count
			vr.HandleNs += one.sum
			kinds[ks.key.kind].add(&one)
			if detailed(ks.key.kind) {
				// Rows merge by name, not key: a Namer may give
				// several offsets one name (a multi-byte register).
				l := regLabel{ks.key.kind, ks.device, ks.register}
				rs := regs[l]
				if rs == nil {
					rs = new(regSnap)
					regs[l] = rs
				}
				rs.h.add(&one)
				j, ok := vregs[l]
				if !ok {
					j = len(vr.Registers)
					vregs[l] = j
					vr.Registers = append(vr.Registers, RegisterCount{Kind: kn, Device: ks.device, Register: ks.register})
				}
				vr.Registers[j].Count += one.count
				vr.Registers[j].TotalNs += one.sum
			}
		}
		slices.SortFunc(vr.Registers, func(a, b RegisterCount) int {
			return cmp.Or(cmp.Compare(b.TotalNs, a.TotalNs), cmp.Compare(b.Count, a.Count),
				cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Device, b.Device), cmp.Compare(a.Register, b.Register))
		})
		if r.ElapsedNs > 0 {
			vr.ExitsPerSec = float64(vr.Exits) / (float64(r.ElapsedNs) / 1e9)
		}
		r.PerVCPU[i] = vr
		r.Exits += vr.Exits
		r.HandleNs += vr.HandleNs
	}
	r.Run = run.summary()
	r.Kicks = c.kicks[len(c.vcpus)].Load()
	for i := range c.vcpus {
		r.Kicks += r.PerVCPU[i].Kicks
	}

	for k := range kinds {
		if kinds[k].count == 0 {
			continue
		}
		r.Kinds = append(r.Kinds, r.row(vcpu.Kind(k), "", "", &kinds[k]))
		if vcpu.Kind(k) == vcpu.KindIntr {
			r.EINTR = kinds[k].count
		}
	}
	for l, rs := range regs {
		r.Registers = append(r.Registers, r.row(l.kind, l.device, l.register, &rs.h))
	}
	sortRows(r.Kinds)
	sortRows(r.Registers)

	for gsi := range c.irqs[:MaxGSI] {
		if n := c.irqs[gsi].Load(); n != 0 {
			r.IRQs = append(r.IRQs, IRQCount{GSI: uint32(gsi), Count: n})
		}
	}
	r.IRQsBeyond = c.irqs[MaxGSI].Load()
	slices.SortStableFunc(r.IRQs, func(a, b IRQCount) int { return cmp.Compare(b.Count, a.Count) })
	if m := c.eventfds.Load(); m != nil {
		for name, n := range *m {
			r.EventFDs = append(r.EventFDs, EventFDCount{Name: name, Count: n.Load()})
		}
	}
	slices.SortFunc(r.EventFDs, func(a, b EventFDCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Name, b.Name))
	})
	return r
}

// regLabel is what a register row is called.
type regLabel struct {
	kind             vcpu.Kind
	device, register string
}

// regSnap accumulates one register's histogram over the vCPUs.
type regSnap struct{ h histSnap }

func (r *Report) row(k vcpu.Kind, device, register string, h *histSnap) Row {
	row := Row{Kind: k.String(), Device: device, Register: register, Summary: h.summary()}
	if r.HandleNs > 0 {
		row.Share = float64(h.sum) / float64(r.HandleNs)
	}
	return row
}

// sortRows orders rows by decreasing total handling time, the question a
// reader asks first ("where does the VMM's time go?"), then by count and
// name so that the order is stable.
func sortRows(rows []Row) {
	slices.SortFunc(rows, func(a, b Row) int {
		return cmp.Or(
			cmp.Compare(b.TotalNs, a.TotalNs),
			cmp.Compare(b.Count, a.Count),
			cmp.Compare(a.Kind, b.Kind),
			cmp.Compare(a.Device, b.Device),
			cmp.Compare(a.Register, b.Register),
		)
	})
}
