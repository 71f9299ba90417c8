package acpi

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestXSDT(t *testing.T) {
	cfg := testConfig(2, 1)
	_, p := build(t, cfg)
	x := p.xsdt
	assert.Equal(t, "XSDT", string(x[:4]))
	assert.EqualValues(t, 1, x[hdrRevision])
	require.Len(t, x, 36+2*8, "two entries")
	var sigs []string
	for off := 36; off < len(x); off += 8 {
		addr := binary.LittleEndian.Uint64(x[off:])
		assert.Zero(t, addr%tableAlign, "table at %#x aligned", addr)
		assert.GreaterOrEqual(t, addr, cfg.Base)
		for sig, a := range p.addrs {
			if a == addr {
				sigs = append(sigs, sig)
			}
		}
	}
	assert.Equal(t, []string{"FACP", "APIC"}, sigs)
	assert.NotContains(t, sigs, "DSDT", "the DSDT is reached through the FADT only")
}
