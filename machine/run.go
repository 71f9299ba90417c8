package machine

import (
	"time"

	"github.com/gvmm/gvmm/vcpu"
)

// feedConsole copies ConsoleIn to the serial port (feedInput) until EOF or
// stop.
func (m *Machine) feedConsole() (stop func()) {
	if m.cfg.ConsoleIn == nil {
		return func() {}
	}
	return feedInput(m.cfg.ConsoleIn, m.serial, m.logf)
}

// watchPeriod is how often the watchdog looks at the vCPUs; a vCPU with no
// exit for two periods is probed.
const watchPeriod = 500 * time.Millisecond

// watch probes vCPUs that have not exited to userspace for a while, so the
// Emulator can find and resolve known hangs (the kvm_pvm clock-pairing
// hypercall that never completes). An idle guest vCPU halted in the kernel
// is probed too; that costs one exit per second. Only hosts that need it
// get it (adaptations.watchdog): elsewhere an idle vCPU is never kicked.
func (m *Machine) watch() (stop func()) {
	if !m.adapt.watchdog || m.emu == nil {
		return func() {}
	}
	last := make([]uint64, len(m.vcpus))
	quiet := make([]int, len(m.vcpus))
	return tick(watchPeriod, func() {
		for i, v := range m.vcpus {
			// Kicks (EINTR) do not count as activity: the sampler of
			// --profile kicks every vCPU many times a second.
			n := v.TotalExits() - v.Exits(vcpu.KindIntr)
			if n != last[i] {
				last[i], quiet[i] = n, 0
				continue
			}
			if quiet[i]++; quiet[i] >= 2 {
				quiet[i] = 0
				v.Probe()
				m.kicked(i)
			}
		}
	})
}

// sampleRIPs kicks every vCPU each sampling period so that it reports its
// guest RIP to Hooks.Sampler.
func (m *Machine) sampleRIPs() (stop func()) {
	if m.hooks.Sampler == nil {
		return func() {}
	}
	every := m.hooks.SampleEvery
	if every <= 0 {
		every = defaultSampleEvery
	}
	return tick(every, func() {
		for i, v := range m.vcpus {
			v.Sample()
			m.kicked(i)
		}
	})
}

// tick calls fn every period on a goroutine of its own until the returned
// stop is called; stop waits for a running fn to return.
func tick(period time.Duration, fn func()) (stop func()) {
	t := time.NewTicker(period)
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				fn()
			}
		}
	}()
	return func() { t.Stop(); close(quit); <-done }
}

// collect sums the per-vCPU counters into the result.
func (m *Machine) collect() {
	m.result.Exits = map[string]uint64{}
	m.result.Fallbacks = map[string]uint64{}
	for _, v := range m.vcpus {
		for k := vcpu.Kind(0); k < vcpu.NumKinds; k++ {
			if n := v.Exits(k); n > 0 {
				m.result.Exits[k.String()] += n
			}
		}
		for op := 0; op < 256; op++ {
			if n := v.Fallbacks(uint8(op)); n > 0 {
				m.result.Fallbacks[opName(uint8(op))] += n
			}
		}
	}
}
