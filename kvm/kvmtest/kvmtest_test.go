package kvmtest

import (
	"testing"

	"github.com/gvmm/gvmm/kvm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPortWrite runs "mov al, 0x42; out 0xf4, al" at CPL0 and at CPL3 and
// checks the IO exit KVM reports.
func TestPortWrite(t *testing.T) {
	for _, user := range []bool{false, true} {
		g := New(t, []byte{0xB0, 0x42, 0xE6, 0xF4}, Options{User: user})
		for {
			err := g.VCPU.Run()
			if err == nil {
				break
			}
			require.ErrorIs(t, err, errEINTR)
		}
		run := g.VCPU.RunData()
		require.Equal(t, uint32(kvm.ExitIO), run.ExitReason, kvm.ExitName(run.ExitReason))
		dir, size, port, count, off := run.IO()
		assert.Equal(t, uint8(kvm.IOOut), dir)
		assert.Equal(t, uint8(1), size)
		assert.Equal(t, uint16(0xF4), port)
		assert.Equal(t, uint32(1), count)
		assert.Equal(t, byte(0x42), g.VCPU.RunPage()[off])
	}
}
