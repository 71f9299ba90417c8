package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/gvmm/gvmm/machine"
	"github.com/gvmm/gvmm/vcpu"
	"github.com/gvmm/gvmm/vcpu/stats"
	"github.com/gvmm/gvmm/vcpu/trace"
)

// observers holds the statistics and trace outputs of a run.
type observers struct {
	collector *stats.Collector
	jsonPath  string
	table     bool
	trace     *trace.Writer
	traceFile *os.File
	profile   *guestProfile
	stops     []func()
}

// newObservers attaches what --stats, --stats-json, --stats-socket,
// --trace and --profile ask for. Without the first four, the vCPU loop runs
// without an Observer and takes no timestamps.
func newObservers(m *machine.Machine, f runFlags, stderr io.Writer) (*observers, error) {
	o := &observers{jsonPath: f.statsJSON, table: f.stats}
	n := f.cpus
	var per [][]vcpu.Observer = make([][]vcpu.Observer, n)
	if f.stats || f.statsJSON != "" || f.statsSocket != "" {
		o.collector = stats.New(n, m.Namer(), machine.OpName)
		o.collector.SetStart(time.Now())
		for i := range per {
			per[i] = append(per[i], o.collector.VCPU(i))
		}
		if f.stats {
			o.stops = append(o.stops, o.collector.ServeSignal(syscall.SIGUSR1, stderr))
		}
		if f.statsSocket != "" {
			stop, err := o.collector.ServeUnix(f.statsSocket)
			if err != nil {
				return nil, fmt.Errorf("--stats-socket: %w", err)
			}
			o.stops = append(o.stops, stop)
		}
	}
	if f.trace != "" {
		tf, err := os.Create(f.trace)
		if err != nil {
			return nil, fmt.Errorf("--trace: %w", err)
		}
		o.traceFile = tf
		// The trace writer batches its own output (vcpu/trace).
		o.trace = trace.NewWriter(tf, n, m.Namer(), machine.OpName)
		for i := range per {
			per[i] = append(per[i], o.trace.VCPU(i))
		}
	}
	var hooks machine.Hooks
	if f.profile != "" {
		if f.profileHz <= 0 || f.profileHz > 10000 {
			return nil, fmt.Errorf("--profile-hz %d: want 1 to 10000", f.profileHz)
		}
		p, err := newGuestProfile(f.profile)
		if err != nil {
			return nil, err
		}
		o.profile = p
		hooks.Sampler = p.Profile
		hooks.SampleEvery = time.Second / time.Duration(f.profileHz)
		o.stops = append(o.stops, every(profileSaveEvery, func() { _ = p.save() }))
	}
	if o.collector != nil || o.trace != nil {
		hooks.VCPU = func(i int) vcpu.Observer {
			if len(per[i]) == 1 {
				return per[i][0]
			}
			return vcpu.Observers(per[i])
		}
	}
	if c := o.collector; c != nil {
		hooks.IRQ = func(gsi uint32) { c.IRQ(gsi) }
		hooks.Kick = c.Kick
	}
	m.SetHooks(hooks)
	return o, nil
}

// finish writes the statistics and closes the trace once the VM has ended.
func (o *observers) finish(res *machine.Result, stderr io.Writer) error {
	for _, stop := range o.stops {
		stop()
	}
	var errs []error
	if o.profile != nil {
		if err := o.profile.save(); err != nil {
			errs = append(errs, err)
		}
	}
	if o.trace != nil {
		if err := o.trace.Close(); err != nil {
			errs = append(errs, fmt.Errorf("--trace: %w", err))
		}
		if err := o.traceFile.Close(); err != nil {
			errs = append(errs, fmt.Errorf("--trace: %w", err))
		}
	}
	if o.collector == nil {
		return errors.Join(errs...)
	}
	rep := o.collector.Report()
	if o.table {
		if err := rep.WriteTable(stderr); err != nil {
			errs = append(errs, err)
		}
	}
	if o.jsonPath != "" {
		f, err := os.Create(o.jsonPath)
		if err == nil {
			err = rep.WriteJSON(f)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("--stats-json: %w", err))
		}
	}
	return errors.Join(errs...)
}

// traceCommand implements `gvmm trace summarize|dump FILE`.
func traceCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) != 2 || (args[0] != "summarize" && args[0] != "dump") {
		fmt.Fprintln(stderr, "usage: gvmm trace summarize FILE | gvmm trace dump FILE")
		return statusUsage
	}
	f, err := os.Open(args[1])
	if err != nil {
		fmt.Fprintf(stderr, "gvmm: trace: %v\n", err)
		return statusUsage
	}
	defer f.Close()
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	r := bufio.NewReaderSize(f, 1<<20)
	if args[0] == "summarize" {
		err = trace.Summarize(r, w)
	} else {
		err = trace.Dump(r, w)
	}
	if err != nil {
		w.Flush()
		fmt.Fprintf(stderr, "gvmm: trace %s %s: %v\n", args[0], args[1], err)
		return statusFailed
	}
	return 0
}
