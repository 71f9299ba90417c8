package acpi

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// FuzzBuild builds tables for arbitrary vCPU counts, virtio-mmio device
// counts and placements. Build must either fail cleanly or return tables an
// OS can walk, with valid checksums, an aligned FACS, the SCI override and
// exactly the vCPUs and devices asked for. Seeds are in
// testdata/fuzz/FuzzBuild.
func FuzzBuild(f *testing.F) {
	f.Fuzz(func(t *testing.T, cpus int, devices uint16, base uint64, size uint32, devAddr, devSize uint64, irq uint32) {
		cfg := testConfig(cpus, 0)
		cfg.Base = base
		// Up to 16 MiB: room for tens of thousands of vCPUs without
		// letting the fuzzer allocate gigabytes.
		cfg.Size = uint64(size % (16 << 20))
		for i := 0; i < int(devices%0x1100); i++ {
			cfg.VirtioMMIO = append(cfg.VirtioMMIO, MMIODevice{
				Addr: devAddr + uint64(i)*devSize,
				Size: devSize,
				IRQ:  irq + uint32(i),
			})
		}
		blob, rsdp, err := Build(cfg)
		if err != nil {
			if blob != nil || rsdp != 0 {
				t.Fatalf("Build failed (%v) but returned %d bytes and RSDP %#x", err, len(blob), rsdp)
			}
			return
		}
		if rsdp != cfg.Base || uint64(len(blob)) > cfg.Size {
			t.Fatalf("RSDP %#x, %d bytes for base %#x, size %#x", rsdp, len(blob), cfg.Base, cfg.Size)
		}
		p, err := parseBlob(blob, cfg.Base, rsdp)
		if err != nil {
			t.Fatal(err)
		}
		if sum(p.rsdp[:rsdpV1Len]) != 0 || sum(p.rsdp) != 0 {
			t.Fatal("bad RSDP checksum")
		}
		if sum(p.xsdt) != 0 {
			t.Fatal("bad XSDT checksum")
		}
		for sig, tab := range p.tables {
			if sum(tab) != 0 {
				t.Fatalf("bad %s checksum", sig)
			}
		}
		if p.addrs["FACS"]%facsAlign != 0 || !bytes.Equal(p.facs, buildFACS()) {
			t.Fatalf("FACS at %#x: % x", p.addrs["FACS"], p.facs)
		}
		entries, err := splitMADT(p.tables["APIC"])
		if err != nil {
			t.Fatal(err)
		}
		var procs, overrides int
		for _, e := range entries {
			switch e.typ {
			case madtTypeLocalAPIC:
				procs++
			case madtTypeLocalX2APIC:
				if id := binary.LittleEndian.Uint32(e.body[4:]); id <= maxXAPICID {
					t.Fatalf("x2APIC structure for APIC ID %d", id)
				}
				procs++
			case madtTypeIntSrcOverride:
				overrides++
			}
		}
		if overrides != 1 {
			t.Fatalf("%d interrupt source overrides, want the SCI's only", overrides)
		}
		if procs != cpus {
			t.Fatalf("%d processor structures for %d CPUs", procs, cpus)
		}
		s5 := amlName(`\_S5`, amlPackage(amlInteger(SleepTypeS5), amlInteger(0), amlInteger(0), amlInteger(0)))
		if !bytes.HasPrefix(p.tables["DSDT"][headerLen:], s5) {
			t.Fatal("the DSDT does not start with \\_S5")
		}
	})
}
