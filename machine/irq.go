package machine

import (
	"fmt"
	"sync/atomic"
)

// irqSetter drives the in-kernel irqchip's lines: *kvm.VM (KVM_IRQ_LINE).
type irqSetter interface {
	IRQLine(gsi uint32, high bool) error
}

// irqLine drives one GSI of the in-kernel irqchip with KVM_IRQ_LINE. KVM's
// default routing sends GSI n to IOAPIC pin n and, below 16, to PIC pin n;
// for an edge-triggered pin the interrupt fires on the low-to-high
// transition, for a level-triggered one while the line is high.
type irqLine struct {
	vm    irqSetter
	gsi   uint32
	level atomic.Bool
	// raised counts low-to-high transitions, the interrupts injected.
	raised atomic.Uint64
	onRise func(gsi uint32)
	// onError receives a failed KVM_IRQ_LINE. The device cannot be told
	// (devices.IRQLine has no error: a device cannot do anything about
	// it), and the guest would wait for an interrupt that never comes:
	// the machine ends the VM with the error instead.
	onError func(error)
}

// SetLevel implements devices.IRQLine.
func (l *irqLine) SetLevel(high bool) {
	if l.level.Swap(high) == high {
		return
	}
	if high {
		l.raised.Add(1)
		if l.onRise != nil {
			l.onRise(l.gsi)
		}
	}
	if err := l.vm.IRQLine(l.gsi, high); err != nil && l.onError != nil {
		l.onError(fmt.Errorf("IRQ %d: %w", l.gsi, err))
	}
}
