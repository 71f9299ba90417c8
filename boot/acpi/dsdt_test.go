package acpi

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestDSDTSleepState(t *testing.T) {
	_, p := build(t, testConfig(1, 0))
	d := p.tables["DSDT"]
	assert.EqualValues(t, 2, d[hdrRevision], "64-bit AML integers")
	// Name (\_S5, Package () {5, 0, 0, 0}), ACPI 6.5 §20.2.5.1 and §20.2.5.4.
	s5 := []byte{0x08, '\\', '_', 'S', '5', '_', 0x12, 0x07, 0x04, 0x0A, 0x05, 0x00, 0x00, 0x00}
	assert.Equal(t, s5, d[headerLen:], "without devices the DSDT holds only \\_S5")
	assert.Equal(t, 0x3400, SleepTypeS5<<10|1<<13, "SLP_TYP and SLP_EN in the PM1 control write that powers off")
}

func TestDSDTVirtioMMIO(t *testing.T) {
	cfg := testConfig(1, 2)
	cfg.VirtioMMIO[1] = MMIODevice{Addr: 0xD0001000, Size: 0x200, IRQ: 17}
	_, p := build(t, cfg)
	d := p.tables["DSDT"]
	assert.True(t, bytes.Contains(d, amlScope(`\_SB`,
		virtioMMIODevice(0, cfg.VirtioMMIO[0]),
		virtioMMIODevice(1, cfg.VirtioMMIO[1]))))
	dev1 := virtioMMIODevice(1, cfg.VirtioMMIO[1])
	assert.Equal(t, "V001", string(dev1[3:7]))
	for _, want := range [][]byte{
		amlName("_HID", amlString("LNRO0005")),
		amlName("_UID", []byte{0x01}),
		amlMemory32Fixed(true, 0xD0001000, 0x200),
		{0x89, 0x06, 0x00, 0x03, 0x01, 17, 0, 0, 0}, // consumer, edge, active-high, exclusive
	} {
		assert.True(t, bytes.Contains(dev1, want), "% x", want)
	}
	assert.Equal(t, 2, bytes.Count(d, []byte("LNRO0005")))
}
