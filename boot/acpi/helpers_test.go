package acpi

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// testConfig returns gvmm's machine (docs/design.md) with cpus vCPUs and
// devices virtio-mmio transports laid out as the machine package would:
// 4 KiB windows from 0xD0000000, IRQs from 5.
func testConfig(cpus, devices int) Config {
	cfg := Config{
		CPUs:           cpus,
		Base:           0xE0000,
		Size:           0x20000,
		IOAPICAddr:     0xFEC00000,
		LAPICAddr:      0xFEE00000,
		SCIIRQ:         9,
		PM1EventPort:   0x600,
		PM1ControlPort: 0x604,
		ResetPort:      0x606,
		ResetValue:     0x01,
	}
	for i := 0; i < devices; i++ {
		cfg.VirtioMMIO = append(cfg.VirtioMMIO, MMIODevice{
			Addr: 0xD0000000 + uint64(i)*0x1000,
			Size: 0x1000,
			IRQ:  uint32(5 + i),
		})
	}
	return cfg
}

// build builds cfg and parses the result, failing the test on any error.
func build(t *testing.T, cfg Config) ([]byte, *parsed) {
	t.Helper()
	blob, rsdp, err := Build(cfg)
	require.NoError(t, err)
	require.Equal(t, cfg.Base, rsdp, "the RSDP starts the blob")
	require.LessOrEqual(t, uint64(len(blob)), cfg.Size)
	p, err := parseBlob(blob, cfg.Base, rsdp)
	require.NoError(t, err)
	return blob, p
}

// parsed is a blob taken apart the way an OS does it: from the RSDP through
// the XSDT to each table, and from the FADT to the FACS and the DSDT.
type parsed struct {
	rsdp   []byte
	xsdt   []byte
	facs   []byte
	tables map[string][]byte // by signature, the XSDT's entries and the DSDT
	addrs  map[string]uint64 // guest-physical address of each table and of the FACS
}

// parseBlob walks blob, written at base with the RSDP at rsdp, following
// only the pointers in the tables; it checks that every pointer and length
// stays inside the blob.
func parseBlob(blob []byte, base, rsdp uint64) (*parsed, error) {
	at := func(addr uint64, n uint64) ([]byte, error) {
		if addr < base || addr-base > uint64(len(blob)) || n > uint64(len(blob))-(addr-base) {
			return nil, fmt.Errorf("[%#x, +%d) lies outside the blob [%#x, +%d)", addr, n, base, len(blob))
		}
		return blob[addr-base : addr-base+n], nil
	}
	table := func(addr uint64) ([]byte, error) {
		h, err := at(addr, headerLen)
		if err != nil {
			return nil, err
		}
		return at(addr, uint64(binary.LittleEndian.Uint32(h[hdrLength:])))
	}
	p := &parsed{tables: map[string][]byte{}, addrs: map[string]uint64{}}
	var err error
	if p.rsdp, err = at(rsdp, rsdpLen); err != nil {
		return nil, fmt.Errorf("RSDP: %w", err)
	}
	xsdtAddr := binary.LittleEndian.Uint64(p.rsdp[rsdpXSDTAddress:])
	if p.xsdt, err = table(xsdtAddr); err != nil {
		return nil, fmt.Errorf("XSDT: %w", err)
	}
	p.addrs["XSDT"] = xsdtAddr
	for off := headerLen; off+xsdtEntryLen <= len(p.xsdt); off += xsdtEntryLen {
		addr := binary.LittleEndian.Uint64(p.xsdt[off:])
		t, err := table(addr)
		if err != nil {
			return nil, fmt.Errorf("XSDT entry at %d: %w", off, err)
		}
		sig := string(t[:4])
		if _, dup := p.tables[sig]; dup {
			return nil, fmt.Errorf("XSDT lists %s twice", sig)
		}
		p.tables[sig] = t
		p.addrs[sig] = addr
	}
	fadt, ok := p.tables["FACP"]
	if !ok {
		return nil, fmt.Errorf("XSDT lists no FADT")
	}
	dsdtAddr := binary.LittleEndian.Uint64(fadt[fadtXDSDT:])
	if p.tables["DSDT"], err = table(dsdtAddr); err != nil {
		return nil, fmt.Errorf("DSDT: %w", err)
	}
	p.addrs["DSDT"] = dsdtAddr
	// The FACS has the table header's signature and length but no
	// checksum (§5.2.10). Like ACPICA, take X_FIRMWARE_CTRL if it is set,
	// else FIRMWARE_CTRL.
	facsAddr := binary.LittleEndian.Uint64(fadt[fadtXFirmwareCtrl:])
	if facsAddr == 0 {
		facsAddr = uint64(binary.LittleEndian.Uint32(fadt[fadtFirmwareCtrl:]))
	}
	if p.facs, err = table(facsAddr); err != nil {
		return nil, fmt.Errorf("FACS: %w", err)
	}
	p.addrs["FACS"] = facsAddr
	return p, nil
}

// sum returns the byte sum of b modulo 256; a valid table sums to 0.
func sum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return s
}

// madtEntry is one Interrupt Controller Structure of a MADT.
type madtEntry struct {
	typ  byte
	body []byte // the whole structure, type and length included
}

// splitMADT splits a MADT's Interrupt Controller Structures.
func splitMADT(madt []byte) ([]madtEntry, error) {
	var out []madtEntry
	for off := madtEntries; off < len(madt); {
		if off+2 > len(madt) || madt[off+1] < 2 || off+int(madt[off+1]) > len(madt) {
			return nil, fmt.Errorf("MADT structure at %d overruns the table", off)
		}
		n := int(madt[off+1])
		out = append(out, madtEntry{typ: madt[off], body: madt[off : off+n]})
		off += n
	}
	return out, nil
}
