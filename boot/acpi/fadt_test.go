package acpi

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ioGAS returns the Generic Address Structure of an I/O register block:
// {SystemIO, bits, offset 0, access size, port}.
func ioGAS(port uint16, bits, access byte) []byte {
	return []byte{1, bits, 0, access, byte(port), byte(port >> 8), 0, 0, 0, 0, 0, 0}
}

func TestFADT(t *testing.T) {
	cfg := testConfig(2, 0)
	_, p := build(t, cfg)
	f := p.tables["FACP"]
	le := binary.LittleEndian
	require.Len(t, f, 276)
	assert.EqualValues(t, 276, le.Uint32(f[hdrLength:]))
	assert.EqualValues(t, 6, f[hdrRevision], "FADT major version 6")
	assert.EqualValues(t, 5, f[131], "FADT minor version 5 (ACPI 6.5)")

	facs, dsdt := p.addrs["FACS"], p.addrs["DSDT"]
	assert.EqualValues(t, facs, le.Uint32(f[36:]), "FIRMWARE_CTRL at 36")
	assert.Zero(t, le.Uint64(f[132:]), "X_FIRMWARE_CTRL at 132: zero when FIRMWARE_CTRL is set")
	assert.EqualValues(t, dsdt, le.Uint32(f[40:]), "DSDT at 40 equals X_DSDT")
	assert.Equal(t, dsdt, le.Uint64(f[140:]), "X_DSDT at 140")

	assert.EqualValues(t, 9, le.Uint16(f[46:]), "SCI_INT at 46")
	assert.Zero(t, le.Uint32(f[48:]), "SMI_CMD at 48: always in ACPI mode")
	assert.Zero(t, f[52], "ACPI_ENABLE")
	assert.Zero(t, f[53], "ACPI_DISABLE")

	assert.EqualValues(t, 0x600, le.Uint32(f[56:]), "PM1a_EVT_BLK at 56")
	assert.EqualValues(t, 0x604, le.Uint32(f[64:]), "PM1a_CNT_BLK at 64")
	assert.EqualValues(t, 4, f[88], "PM1_EVT_LEN at 88")
	assert.EqualValues(t, 2, f[89], "PM1_CNT_LEN at 89")
	assert.Equal(t, ioGAS(0x600, 32, 2), f[148:160], "X_PM1a_EVT_BLK at 148")
	assert.Equal(t, ioGAS(0x604, 16, 2), f[172:184], "X_PM1a_CNT_BLK at 172")
	// PM1b event and control, PM2 control, PM timer, GPE0 and GPE1 are
	// absent: zero addresses (60-87), lengths (90-95) and GASes.
	assert.Equal(t, make([]byte, 4), f[60:64], "PM1b_EVT_BLK")
	assert.Equal(t, make([]byte, 88-68), f[68:88], "PM1b_CNT/PM2_CNT/PM_TMR/GPE0/GPE1 blocks")
	assert.Equal(t, make([]byte, 96-90), f[90:96], "PM2_CNT/PM_TMR/GPE0/GPE1 lengths, GPE1_BASE, CST_CNT")
	assert.Equal(t, make([]byte, 12), f[160:172], "X_PM1b_EVT_BLK")
	assert.Equal(t, make([]byte, 244-184), f[184:244], "X_PM1b_CNT/X_PM2_CNT/X_PM_TMR/X_GPE0/X_GPE1")
	assert.Equal(t, make([]byte, 24), f[244:268], "no SLEEP_CONTROL_REG/SLEEP_STATUS_REG")

	assert.EqualValues(t, 0xFFF, le.Uint16(f[96:]), "P_LVL2_LAT: no C2")
	assert.EqualValues(t, 0xFFF, le.Uint16(f[98:]), "P_LVL3_LAT: no C3")
	assert.EqualValues(t, 1<<1|1<<2, le.Uint16(f[109:]), "IAPC_BOOT_ARCH at 109: 8042, VGA not present")
	flags := le.Uint32(f[112:])
	assert.Zero(t, flags&(1<<20), "not HW_REDUCED_ACPI")
	assert.NotZero(t, flags&(1<<0), "WBINVD")
	assert.NotZero(t, flags&(1<<2), "PROC_C1")
	assert.NotZero(t, flags&(1<<4), "PWR_BUTTON: no fixed power button")
	assert.NotZero(t, flags&(1<<5), "SLP_BUTTON: no fixed sleep button")
	assert.NotZero(t, flags&(1<<10), "RESET_REG_SUP")
	assert.EqualValues(t, 1<<10|1<<5|1<<4|1<<2|1<<0, flags, "no other flags")

	assert.Equal(t, ioGAS(0x606, 8, 1), f[116:128], "RESET_REG at 116")
	assert.EqualValues(t, 0x01, f[128], "RESET_VALUE at 128")
	assert.Equal(t, "GVMM    ", string(f[268:276]), "hypervisor vendor identity")
}

func TestFADTPortsAndResetValue(t *testing.T) {
	cfg := testConfig(1, 0)
	cfg.PM1EventPort, cfg.PM1ControlPort, cfg.ResetPort, cfg.ResetValue, cfg.SCIIRQ = 0xB000, 0xB004, 0xCF9, 0x06, 11
	_, p := build(t, cfg)
	f := p.tables["FACP"]
	le := binary.LittleEndian
	assert.EqualValues(t, 11, le.Uint16(f[fadtSCIInt:]))
	assert.EqualValues(t, 0xB000, le.Uint32(f[fadtPM1aEvtBlk:]))
	assert.EqualValues(t, 0xB000, le.Uint64(f[fadtXPM1aEvtBlk+4:]))
	assert.EqualValues(t, 0xB004, le.Uint32(f[fadtPM1aCntBlk:]))
	assert.EqualValues(t, 0xB004, le.Uint64(f[fadtXPM1aCntBlk+4:]))
	assert.EqualValues(t, 0xCF9, le.Uint64(f[fadtResetReg+4:]))
	assert.EqualValues(t, 0x06, f[fadtResetValue])
}

func TestFADTAbove4GiB(t *testing.T) {
	cfg := testConfig(1, 0)
	cfg.Base = 1 << 32
	_, p := build(t, cfg)
	f := p.tables["FACP"]
	le := binary.LittleEndian
	assert.Greater(t, p.addrs["DSDT"], uint64(0xFFFFFFFF))
	assert.Greater(t, p.addrs["FACS"], uint64(0xFFFFFFFF))
	assert.Equal(t, p.addrs["DSDT"], le.Uint64(f[fadtXDSDT:]))
	assert.Equal(t, p.addrs["FACS"], le.Uint64(f[fadtXFirmwareCtrl:]))
	assert.Zero(t, le.Uint32(f[fadtDSDT:]), "a DSDT above 4 GiB has no 32-bit pointer")
	assert.Zero(t, le.Uint32(f[fadtFirmwareCtrl:]), "a FACS above 4 GiB has no 32-bit pointer")
}

func TestFACS(t *testing.T) {
	_, p := build(t, testConfig(1, 0))
	f := p.facs
	le := binary.LittleEndian
	require.Len(t, f, 64)
	assert.Equal(t, "FACS", string(f[:4]))
	assert.EqualValues(t, 64, le.Uint32(f[4:]), "length")
	assert.Zero(t, p.addrs["FACS"]%64, "64-byte aligned")
	assert.EqualValues(t, 2, f[32], "version")
	assert.Zero(t, le.Uint32(f[8:]), "hardware signature")
	assert.Zero(t, le.Uint32(f[12:]), "no waking vector")
	assert.Zero(t, le.Uint32(f[16:]), "global lock free")
	assert.Zero(t, le.Uint32(f[20:]), "no S4BIOS, no 64-bit wake")
	assert.Zero(t, le.Uint64(f[24:]), "no X waking vector")
	assert.Equal(t, make([]byte, 64-33), f[33:], "reserved and OSPM flags")
}
