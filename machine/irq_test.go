package machine

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"golang.org/x/sys/unix"
)

// fakeIRQChip records KVM_IRQ_LINE calls and fails them with err.
type fakeIRQChip struct {
	calls []string
	err   error
}

func (f *fakeIRQChip) IRQLine(gsi uint32, high bool) error {
	f.calls = append(f.calls, fmt.Sprintf("%d=%v", gsi, high))
	return f.err
}

// TestIRQLine checks that a line reaches KVM only on a change of level,
// counts rising edges, and that a failed KVM_IRQ_LINE is not dropped: it
// goes to onError, wrapped, errno intact.
func TestIRQLine(t *testing.T) {
	chip := &fakeIRQChip{}
	var errs []error
	var rises []uint32
	l := &irqLine{vm: chip, gsi: 4, onError: func(err error) { errs = append(errs, err) }, onRise: func(g uint32) { rises = append(rises, g) }}
	l.SetLevel(true)
	l.SetLevel(true)
	l.SetLevel(false)
	l.SetLevel(false)
	assert.Equal(t, []string{"4=true", "4=false"}, chip.calls)
	assert.Equal(t, uint64(1), l.raised.Load())
	assert.Equal(t, []uint32{4}, rises)
	assert.Empty(t, errs)

	chip.err = fmt.Errorf("KVM_IRQ_LINE gsi 4: %w", unix.ENXIO)
	l.SetLevel(true)
	if assert.Len(t, errs, 1) {
		assert.ErrorIs(t, errs[0], unix.ENXIO)
		assert.Contains(t, errs[0].Error(), "IRQ 4")
	}
}
