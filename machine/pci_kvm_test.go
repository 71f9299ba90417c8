package machine

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/gvmm/gvmm/devices/pci"
	"github.com/gvmm/gvmm/eventfd"
	"github.com/gvmm/gvmm/kvm"
	"github.com/gvmm/gvmm/kvm/kvmtest"
)

// TestIOEventNoExit: a guest's 16-bit write to a registered notification
// address signals the eventfd inside KVM, with no exit to userspace; once
// unregistered, the same write exits as MMIO.
func TestIOEventNoExit(t *testing.T) {
	kvmtest.SkipIfUnavailable(t)
	// mov word [MMIOAddr], ax; hlt; mov word [MMIOAddr], ax; hlt
	store := []byte{0x66, 0x89, 0x04, 0x25, 0x00, 0x00, 0x00, 0x20}
	code := append(append(append([]byte{}, store...), 0xF4), append(store, 0xF4)...)
	g := kvmtest.New(t, code, kvmtest.Options{})
	ev, err := eventfd.New()
	require.NoError(t, err)
	defer ev.Close()
	io := ioEvents{g.VM}
	require.NoError(t, io.RegisterIOEvent(kvmtest.MMIOAddr, 2, ev))
	run := func() uint32 {
		for {
			err := g.VCPU.Run()
			if err == nil {
				return g.VCPU.RunData().ExitReason
			}
			require.True(t, errors.Is(err, unix.EINTR), "KVM_RUN: %v", err)
		}
	}
	assert.Equal(t, uint32(kvm.ExitHLT), run(), "the write did not exit: first exit is the HLT")
	assert.True(t, ev.Signalled(), "the eventfd was signalled")
	require.NoError(t, io.UnregisterIOEvent(kvmtest.MMIOAddr, 2, ev))
	_, _ = ev.Consume()
	assert.Equal(t, uint32(kvm.ExitMMIO), run(), "unregistered: the write exits")
	assert.False(t, ev.Signalled())
}

// TestMSIRouterAndINTx sets up MSI routes and irqfds, and an INTx line with
// a resample eventfd, on a real VM with an in-kernel irqchip, and tears
// them down.
func TestMSIRouterAndINTx(t *testing.T) {
	kvmtest.SkipIfUnavailable(t)
	g := kvmtest.New(t, []byte{0xF4}, kvmtest.Options{IRQChip: true})
	r := &msiRouter{vm: g.VM, next: firstMSIGSI, routes: map[uint32]kvm.IRQRoutingEntry{}}
	var vecs []*msiVector
	for i := 0; i < 3; i++ {
		v, err := r.newVector()
		require.NoError(t, err)
		vecs = append(vecs, v)
	}
	assert.Equal(t, uint32(firstMSIGSI+2), vecs[2].gsi)
	require.NoError(t, vecs[1].SetMessage(pci.MSIMessage{Address: 0xFEE0_0000, Data: 0x41}))
	require.NoError(t, vecs[2].SetMessage(pci.MSIMessage{Address: 0xFEE0_0000, Data: 0x42}))
	require.NoError(t, vecs[1].Trigger())
	assert.Len(t, r.routes, 2)
	r.close()
	assert.Empty(t, r.vectors)

	m := &Machine{vm: g.VM, pci: &pciBus{}}
	line, err := m.newINTx(pci.INTxGSI(1, 1))
	require.NoError(t, err)
	line.SetLevel(true)
	line.SetLevel(false)
	if l, ok := line.(*intxLine); ok {
		assert.Equal(t, uint64(1), l.raised)
	}
	m.pci.close()
}
