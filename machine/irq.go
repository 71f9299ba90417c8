package machine

import (
	"sync/atomic"

	"github.com/gvmm/gvmm/kvm"
)

// irqLine drives one GSI of the in-kernel irqchip with KVM_IRQ_LINE. KVM's
// default routing sends GSI n to IOAPIC pin n and, below 16, to PIC pin n;
// for an edge-triggered pin the interrupt fires on the low-to-high
// transition, for a level-triggered one while the line is high.
type irqLine struct {
	vm    *kvm.VM
	gsi   uint32
	level atomic.Bool
	// raised counts low-to-high transitions, the interrupts injected.
	raised atomic.Uint64
	onRise func(gsi uint32)
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
	// An error here means the VM fd is gone: the VM is shutting down and
	// nobody is left to take the interrupt.
	_ = l.vm.IRQLine(l.gsi, high)
}
