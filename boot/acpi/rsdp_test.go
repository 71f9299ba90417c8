package acpi

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRSDP(t *testing.T) {
	cfg := testConfig(4, 0)
	_, p := build(t, cfg)
	r := p.rsdp
	assert.Equal(t, "RSD PTR ", string(r[rsdpSignature:rsdpSignature+8]))
	assert.Zero(t, sum(r[:20]), "ACPI 1.0 checksum over bytes 0-19")
	assert.Zero(t, sum(r[:36]), "extended checksum over all 36 bytes")
	assert.Equal(t, oemID, string(r[rsdpOEMID:rsdpOEMID+6]))
	assert.EqualValues(t, 2, r[rsdpRevision])
	assert.EqualValues(t, 36, binary.LittleEndian.Uint32(r[rsdpLength:]))
	assert.Zero(t, binary.LittleEndian.Uint32(r[rsdpRSDTAddress:]), "no RSDT")
	assert.Zero(t, cfg.Base%16, "RSDP 16-byte aligned (§5.2.5.1)")
	xsdt := binary.LittleEndian.Uint64(r[rsdpXSDTAddress:])
	assert.Equal(t, cfg.Base+48, xsdt, "XSDT right after the RSDP, 16-byte aligned")
}
