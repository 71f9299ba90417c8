package kvm

import (
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
)

func TestIRQRoutingLayout(t *testing.T) {
	assert.Equal(t, uintptr(48), unsafe.Sizeof(IRQRoutingEntry{}), "struct kvm_irq_routing_entry")
	assert.Equal(t, uintptr(32), unsafe.Sizeof(irqfdArgs{}), "struct kvm_irqfd")
	assert.Equal(t, uintptr(64), unsafe.Sizeof(ioeventfdArgs{}), "struct kvm_ioeventfd")
	// The request numbers, from the ioctl encoding.
	iow := func(nr, size uintptr) uintptr { return 1<<30 | size<<16 | 0xAE<<8 | nr }
	assert.Equal(t, iow(0x6a, 8), uintptr(reqSetGSIRouting))
	assert.Equal(t, iow(0x76, unsafe.Sizeof(irqfdArgs{})), uintptr(reqIRQFDRouting))
	assert.Equal(t, iow(0x79, unsafe.Sizeof(ioeventfdArgs{})), uintptr(reqIOEventFDRouting))
	assert.Equal(t, uintptr(0x4008AE6A), uintptr(reqSetGSIRouting))
}

func TestDefaultIRQRoutes(t *testing.T) {
	r := DefaultIRQRoutes()
	assert.Len(t, r, 16*2+8)
	assert.Equal(t, IRQChipRoute(0, IRQChipIOAPIC, 0), r[0])
	assert.Equal(t, IRQChipRoute(0, IRQChipPICMaster, 0), r[1])
	assert.Equal(t, IRQChipRoute(9, IRQChipPICSlave, 1), r[19])
	assert.Equal(t, IRQChipRoute(23, IRQChipIOAPIC, 23), r[len(r)-1])
	m := MSIRoute(30, 0x1_FEE0_0000, 0x41)
	assert.Equal(t, [8]uint32{0xFEE00000, 1, 0x41}, m.U)
}
