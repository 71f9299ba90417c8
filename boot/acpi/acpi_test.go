package acpi

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTablesChecksum(t *testing.T) {
	tests := []struct {
		name          string
		cpus, devices int
	}{
		{"1 CPU", 1, 0},
		{"2 CPUs, 1 device", 2, 1},
		{"8 CPUs, 8 devices", 8, 8},
		{"255 CPUs", 255, 3},
		{"300 CPUs, 32 devices", 300, 32},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, p := build(t, testConfig(tt.cpus, tt.devices))
			require.Len(t, p.tables, 3, "FADT, MADT and DSDT")
			for sig, tab := range p.tables {
				assert.Zero(t, sum(tab), "%s checksum", sig)
				assert.Equal(t, sig, string(tab[hdrSignature:hdrSignature+4]))
				assert.Equal(t, oemID, string(tab[hdrOEMID:hdrOEMID+oemIDLen]), sig)
				assert.Equal(t, "GVMM"+sig, string(tab[hdrOEMTableID:hdrOEMTableID+oemTableIDLen]), sig)
				assert.Equal(t, creatorID, string(tab[hdrCreatorID:hdrCreatorID+creatorIDLen]), sig)
				assert.EqualValues(t, 1, binary.LittleEndian.Uint32(tab[hdrOEMRevision:]), sig)
				assert.EqualValues(t, 1, binary.LittleEndian.Uint32(tab[hdrCreatorRevision:]), sig)
			}
			assert.Zero(t, sum(p.xsdt), "XSDT checksum")
		})
	}
}

func TestLayout(t *testing.T) {
	// 0xE0000 is 64-byte aligned; the other bases are 16-byte aligned only,
	// and the FACS must still land on a 64-byte boundary.
	for _, base := range []uint64{0xE0000, 0xE0010, 0xE0020, 0xE0030, 1<<32 + 0x10} {
		t.Run(fmt.Sprintf("base %#x", base), func(t *testing.T) {
			cfg := testConfig(8, 4)
			cfg.Base = base
			blob, p := build(t, cfg)
			// RSDP, XSDT, FADT, FACS, MADT, DSDT, in that order, 16-byte
			// aligned (the FACS 64-byte aligned), with no overlap, and the
			// blob ends with the DSDT.
			prev := cfg.Base + rsdpLen
			for _, sig := range []string{"XSDT", "FACP", "FACS", "APIC", "DSDT"} {
				a := p.addrs[sig]
				align := uint64(16)
				if sig == "FACS" {
					align = 64
				}
				assert.Zero(t, a%align, "%s at %#x", sig, a)
				assert.GreaterOrEqual(t, a, prev, sig)
				assert.Equal(t, sig, string(blob[a-cfg.Base:][:4]))
				prev = a + uint64(binary.LittleEndian.Uint32(blob[a-cfg.Base+hdrLength:]))
			}
			assert.Equal(t, cfg.Base+uint64(len(blob)), prev)
		})
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
	}{
		{"zero CPUs", func(c *Config) { c.CPUs = 0 }},
		{"negative CPUs", func(c *Config) { c.CPUs = -1 }},
		{"more CPUs than x2APIC IDs", func(c *Config) { c.CPUs = 1<<32 + 1; c.Size = 1 << 40 }},
		{"MADT over 4 GiB", func(c *Config) { c.CPUs = 1 << 30; c.Size = 1 << 40 }},
		{"too many CPUs for Size", func(c *Config) { c.CPUs = 9000 }},
		{"Size too small", func(c *Config) { c.Size = 400 }},
		{"zero base", func(c *Config) { c.Base = 0 }},
		{"unaligned base", func(c *Config) { c.Base = 0xE0008 }},
		{"base+size overflows", func(c *Config) { c.Base = 1<<64 - 16 }},
		{"zero PM1 event port", func(c *Config) { c.PM1EventPort = 0 }},
		{"zero PM1 control port", func(c *Config) { c.PM1ControlPort = 0 }},
		{"zero reset port", func(c *Config) { c.ResetPort = 0 }},
		{"PM1 event block past 0xFFFF", func(c *Config) { c.PM1EventPort = 0xFFFD }},
		{"PM1 control block past 0xFFFF", func(c *Config) { c.PM1ControlPort = 0xFFFF }},
		{"PM1 control inside the event block", func(c *Config) { c.PM1ControlPort = 0x603 }},
		{"reset inside the PM1 control block", func(c *Config) { c.ResetPort = 0x605 }},
		{"reset on the PM1 status register", func(c *Config) { c.ResetPort = 0x600 }},
		{"no SCI IRQ", func(c *Config) { c.SCIIRQ = 0 }},
		{"SCI on the cascade", func(c *Config) { c.SCIIRQ = 2 }},
		{"SCI above ISA IRQs", func(c *Config) { c.SCIIRQ = 16 }},
		{"zero LAPIC address", func(c *Config) { c.LAPICAddr = 0 }},
		{"zero IOAPIC address", func(c *Config) { c.IOAPICAddr = 0 }},
		{"empty virtio-mmio window", func(c *Config) { c.VirtioMMIO[0].Size = 0 }},
		{"virtio-mmio above 4 GiB", func(c *Config) { c.VirtioMMIO[0].Addr = 1 << 32 }},
		{"virtio-mmio crossing 4 GiB", func(c *Config) { c.VirtioMMIO[0].Addr = 1<<32 - 0x800 }},
		{"virtio-mmio window of 4 GiB", func(c *Config) { c.VirtioMMIO[0] = MMIODevice{Addr: 0, Size: 1 << 32} }},
		{"too many virtio-mmio devices", func(c *Config) { c.VirtioMMIO = make([]MMIODevice, 0x1001) }},
		{"too many devices for Size", func(c *Config) { *c = testConfig(1, 0x1000) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(2, 1)
			tt.modify(&cfg)
			blob, rsdp, err := Build(cfg)
			assert.Error(t, err)
			assert.True(t, blob == nil, "no tables on error")
			assert.Zero(t, rsdp)
		})
	}
}

func TestBuildLimits(t *testing.T) {
	// The largest virtio-mmio window and the last device name both work.
	cfg := testConfig(1, 0)
	cfg.VirtioMMIO = []MMIODevice{{Addr: 1, Size: 1<<32 - 1, IRQ: 5}}
	build(t, cfg)

	cfg = testConfig(1, 0x1000)
	cfg.Size = 1 << 20
	_, p := build(t, cfg)
	assert.True(t, bytes.Contains(p.tables["DSDT"], []byte("VFFF")))

	// Register blocks that just fit, in any order.
	cfg = testConfig(1, 0)
	cfg.PM1EventPort, cfg.PM1ControlPort, cfg.ResetPort = 0xFFFC, 0xFFFA, 1
	cfg.SCIIRQ = 15
	build(t, cfg)

	// The most vCPUs the default 128 KiB region holds.
	cfg = testConfig(1, 0)
	var n int
	for n = 1; layoutFor(cfg.Base, n+1, headerLen+14, 0).total <= cfg.Size; n++ {
	}
	cfg.CPUs = n
	build(t, cfg)
	cfg.CPUs = n + 1
	_, _, err := Build(cfg)
	assert.Error(t, err)
	t.Logf("a %#x-byte region holds tables for up to %d vCPUs", cfg.Size, n)
}
