package acpi

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func pciConfig() Config {
	cfg := testConfig(2, 0)
	cfg.PCI = &PCIHostBridge{ECAMBase: 0xE000_0000, MemStart: 0xC000_0000, MemEnd: 0xE000_0000,
		INTx: func(slot int, pin uint8) uint32 { return 16 + uint32((slot+int(pin)-1)%8) }}
	return cfg
}

func TestPCITables(t *testing.T) {
	_, p := build(t, pciConfig())
	mcfg, ok := p.tables["MCFG"]
	require.True(t, ok, "the XSDT lists the MCFG")
	assert.Len(t, mcfg, mcfgLen)
	assert.Zero(t, sum(mcfg))
	assert.Equal(t, uint64(0xE000_0000), binary.LittleEndian.Uint64(mcfg[headerLen+mcfgReserved:]))
	dsdt := string(p.tables["DSDT"])
	assert.Contains(t, dsdt, "PCI0")
	assert.Contains(t, dsdt, "_PRT")

	// Without PCI, no MCFG.
	_, p = build(t, testConfig(2, 0))
	_, ok = p.tables["MCFG"]
	assert.False(t, ok)
}

func TestPCIRejects(t *testing.T) {
	for _, edit := range []func(*PCIHostBridge){
		func(b *PCIHostBridge) { b.ECAMBase = 0 },
		func(b *PCIHostBridge) { b.ECAMBase = 0xE000_1000 },
		func(b *PCIHostBridge) { b.MemEnd = b.MemStart },
		func(b *PCIHostBridge) { b.MemEnd = 1<<32 + 1 },
		func(b *PCIHostBridge) { b.INTx = nil },
	} {
		cfg := pciConfig()
		edit(cfg.PCI)
		_, _, err := Build(cfg)
		assert.Error(t, err)
	}
}

func TestEISAID(t *testing.T) {
	// EisaId ("PNP0A08") is 0x080AD041 (iasl).
	assert.Equal(t, amlInteger(0x080AD041), amlEISAID("PNP0A08"))
	assert.Equal(t, amlInteger(0x030AD041), amlEISAID("PNP0A03"))
}

func TestIASLDisassemblePCI(t *testing.T) {
	iasl := iaslPath(t)
	_, p := build(t, pciConfig())
	dir := t.TempDir()
	for _, sig := range []string{"DSDT", "MCFG"} {
		dat := filepath.Join(dir, sig+".dat")
		require.NoError(t, os.WriteFile(dat, p.tables[sig], 0o644))
		out := runIASL(t, iasl, dir, "-d", dat)
		assert.NotRegexp(t, iaslComplaint, out, "iasl -d %s", sig)
	}
	b, err := os.ReadFile(filepath.Join(dir, "DSDT.dsl"))
	require.NoError(t, err)
	dsl := string(b)
	assert.NotRegexp(t, iaslComplaint, dsl)
	for _, want := range []string{
		`Name (_HID, EisaId ("PNP0A08")`,
		`Name (_CID, EisaId ("PNP0A03")`,
		"WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode,",
		"IO (Decode16,",
		"WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange,",
		"DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite,",
		"0xC0000000,         // Range Minimum",
		"0xDFFFFFFF,         // Range Maximum",
		"0x0001FFFF,",
	} {
		assert.True(t, strings.Contains(dsl, want), "DSDT disassembly lacks %q", want)
	}
	assert.Equal(t, 32*4+1, strings.Count(dsl, "Package (0x04)"), "_PRT: 4 pins of 32 slots, and _S5")
	b, err = os.ReadFile(filepath.Join(dir, "MCFG.dsl"))
	require.NoError(t, err)
	assertFields(t, string(b), "Base Address : 00000000E0000000", "Start Bus Number : 00", "End Bus Number : 00")
}
