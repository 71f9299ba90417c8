package machine

import (
	"time"

	"github.com/gvmm/gvmm/devices"
	"github.com/gvmm/gvmm/vcpu"
)

// Hooks attach statistics and tracing to a machine. Every field may be nil.
type Hooks struct {
	// VCPU returns the exit observer of vCPU i.
	VCPU func(i int) vcpu.Observer
	// IRQ is called for each interrupt a device raises, with its GSI.
	IRQ func(gsi uint32)
	// Kick is called each time gvmm kicks vCPU i out of KVM_RUN.
	Kick func(i int)
	// Sampler, if not nil, receives every vCPU's guest RIP SampleEvery
	// (package vcpu/profile).
	Sampler vcpu.Sampler
	// SampleEvery is the sampling period; 0 means 20 ms (50 Hz).
	SampleEvery time.Duration
}

// defaultSampleEvery is the sampling period when Hooks.SampleEvery is 0:
// 50 Hz costs 50 kicks a second per vCPU, about 0.2% of a vCPU on a host
// where an exit costs 35 us (kvm_pvm).
const defaultSampleEvery = 20 * time.Millisecond

// SetHooks attaches statistics and tracing; it must be called before Run.
func (m *Machine) SetHooks(h Hooks) {
	m.hooks = h
	for _, l := range m.irqs {
		l.onRise = h.IRQ
	}
}

// Namer names the devices and registers that exits reach, for statistics:
// port I/O kinds are looked up on the port bus, MMIO kinds on the MMIO bus.
type Namer struct {
	pio, mmio *devices.Bus
}

// Namer returns the machine's device and register namer.
func (m *Machine) Namer() Namer { return Namer{pio: &m.pio, mmio: &m.mmio} }

func (n Namer) bus(k vcpu.Kind) *devices.Bus {
	switch k {
	case vcpu.KindIOIn, vcpu.KindIOOut:
		return n.pio
	case vcpu.KindMMIORead, vcpu.KindMMIOWrite:
		return n.mmio
	}
	return nil
}

// DeviceName returns the name the device was inserted with, such as
// "serial0", or "" for no device.
func (n Namer) DeviceName(k vcpu.Kind, slot int) string {
	b := n.bus(k)
	if b == nil || slot < 0 || slot >= b.Slots() {
		return ""
	}
	return b.SlotName(slot)
}

// RegisterName asks the device to name its register, if it can.
func (n Namer) RegisterName(k vcpu.Kind, slot int, offset uint64, write bool) string {
	b := n.bus(k)
	if b == nil || slot < 0 || slot >= b.Slots() {
		return ""
	}
	if rn, ok := b.SlotDevice(slot).(devices.RegisterNamer); ok {
		return rn.RegisterName(offset, write)
	}
	return ""
}

// OpName names a fallback op counted in vcpu.Exit.Op.
func OpName(op uint8) string { return opName(op) }
