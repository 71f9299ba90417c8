package acpi

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestAMLMemory32Fixed(t *testing.T) {
	// ACPI 6.5 §6.4.3.4; as iasl compiles
	// Memory32Fixed (ReadWrite, 0xD0000000, 0x00001000).
	assert.Equal(t,
		[]byte{0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xD0, 0x00, 0x10, 0x00, 0x00},
		amlMemory32Fixed(true, 0xD0000000, 0x1000))
	assert.Equal(t,
		[]byte{0x86, 0x09, 0x00, 0x00, 0x78, 0x56, 0x34, 0x12, 0xFF, 0xFF, 0xFF, 0xFF},
		amlMemory32Fixed(false, 0x12345678, 0xFFFFFFFF))
}

func TestAMLInterrupt(t *testing.T) {
	// ACPI 6.5 §6.4.3.6; as iasl compiles each ASL.
	tests := []struct {
		asl   string
		flags byte
		irqs  []uint32
		want  []byte
	}{
		{
			"Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) {5}",
			intConsumer | intEdge, []uint32{5},
			[]byte{0x89, 0x06, 0x00, 0x03, 0x01, 0x05, 0x00, 0x00, 0x00},
		},
		{
			"Interrupt (ResourceConsumer, Level, ActiveLow, Shared) {16, 0x12345678}",
			intConsumer | intActiveLow | intShared, []uint32{16, 0x12345678},
			[]byte{0x89, 0x0A, 0x00, 0x0D, 0x02, 0x10, 0x00, 0x00, 0x00, 0x78, 0x56, 0x34, 0x12},
		},
	}
	for _, tt := range tests {
		t.Run(tt.asl, func(t *testing.T) {
			assert.Equal(t, tt.want, amlInterrupt(tt.flags, tt.irqs...))
		})
	}
	assert.Panics(t, func() { amlInterrupt(intConsumer) })
}

func TestAMLResourceTemplate(t *testing.T) {
	got := amlResourceTemplate(
		amlMemory32Fixed(true, 0xD0000000, 0x1000),
		amlInterrupt(virtioMMIOInterruptFlags, 5),
	)
	// Buffer (0x17) { the two descriptors, End Tag } — iasl's bytes but for
	// the End Tag checksum, which iasl leaves 0.
	want := []byte{
		0x11, 0x1A, 0x0A, 0x17,
		0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xD0, 0x00, 0x10, 0x00, 0x00,
		0x89, 0x06, 0x00, 0x03, 0x01, 0x05, 0x00, 0x00, 0x00,
		0x79, 0x7F, // 0x100 - (sum of the other bytes & 0xFF = 0x81)
	}
	assert.Equal(t, want, got)
	data := got[4:]
	assert.Zero(t, sum(data), "the template, End Tag included, must sum to 0 (§6.4.2.9)")

	assert.Equal(t, []byte{0x11, 0x05, 0x0A, 0x02, 0x79, 0x87}, amlResourceTemplate(), "empty template")
}
