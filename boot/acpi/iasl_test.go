package acpi

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests hand the tables to ACPICA's iasl, the reference ASL compiler
// and table disassembler (Debian/Ubuntu package acpica-tools). They are
// skipped when iasl is not installed.

// iaslPath returns the path of iasl or skips the test.
func iaslPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("iasl")
	if err != nil {
		t.Skip("iasl not found in PATH; install acpica-tools to cross-check the tables with ACPICA")
	}
	return p
}

// runIASL runs iasl with args in dir and returns its combined output.
func runIASL(t *testing.T, iasl, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(iasl, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "iasl %s:\n%s", strings.Join(args, " "), out)
	return string(out)
}

// iaslComplaint matches what iasl prints, to its output or into a
// disassembly, when a table is malformed: ACPI errors and firmware
// warnings, "**** ..." annotations, "Invalid ..." subtable notes.
var iaslComplaint = regexp.MustCompile(`(?i)error|warning|\*\*\*\*|invalid|incorrect|unknown`)

func TestIASLDisassemble(t *testing.T) {
	iasl := iaslPath(t)
	for _, tt := range []struct{ cpus, devices int }{{1, 0}, {2, 1}, {300, 8}} {
		t.Run(fmt.Sprintf("%d CPUs, %d devices", tt.cpus, tt.devices), func(t *testing.T) {
			_, p := build(t, testConfig(tt.cpus, tt.devices))
			dir := t.TempDir()
			tables := map[string][]byte{"XSDT": p.xsdt, "FACS": p.facs}
			for sig, tab := range p.tables {
				tables[sig] = tab
			}
			for sig, tab := range tables {
				dat := filepath.Join(dir, sig+".dat")
				require.NoError(t, os.WriteFile(dat, tab, 0o644))
				out := runIASL(t, iasl, dir, "-d", dat)
				assert.NotRegexp(t, iaslComplaint, out, "iasl -d %s", sig)
				dsl, err := os.ReadFile(filepath.Join(dir, sig+".dsl"))
				require.NoError(t, err)
				assert.NotRegexp(t, iaslComplaint, string(dsl), "%s disassembly", sig)
			}

			dsl, err := os.ReadFile(filepath.Join(dir, "DSDT.dsl"))
			require.NoError(t, err)
			assert.Contains(t, string(dsl), "Name (\\_S5, Package (0x04)")
			assert.Equal(t, tt.devices, strings.Count(string(dsl), `Name (_HID, "LNRO0005")`))
			assert.Equal(t, tt.devices, strings.Count(string(dsl), "Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive"))

			fadt, err := os.ReadFile(filepath.Join(dir, "FACP.dsl"))
			require.NoError(t, err)
			assertFields(t, string(fadt),
				"Hardware Reduced (V5) : 0",
				"WBINVD instruction is operational (V1) : 1",
				"All CPUs support C1 (V1) : 1",
				"Control Method Power Button (V1) : 1",
				"Control Method Sleep Button (V1) : 1",
				"Reset Register Supported (V2) : 1",
				"8042 Present on ports 60/64 (V2) : 1",
				"VGA Not Present (V4) : 1",
				"SCI Interrupt : 0009",
				"SMI Command Port : 00000000",
				"PM1A Event Block Address : 00000600",
				"PM1A Control Block Address : 00000604",
				"PM1 Event Block Length : 04",
				"PM1 Control Block Length : 02",
				"PM Timer Block Address : 00000000",
				"PM Timer Block Length : 00",
				"Value to cause reset : 01",
				"FADT Minor Revision : 05",
			)

			facs, err := os.ReadFile(filepath.Join(dir, "FACS.dsl"))
			require.NoError(t, err)
			assertFields(t, string(facs),
				`Signature : "FACS"`,
				"Length : 00000040",
				"Global Lock : 00000000",
				"Version : 02",
			)

			madt, err := os.ReadFile(filepath.Join(dir, "APIC.dsl"))
			require.NoError(t, err)
			xapic := min(tt.cpus, 255)
			assert.Equal(t, xapic, strings.Count(string(madt), "[Processor Local APIC]"))
			assert.Equal(t, tt.cpus-xapic, strings.Count(string(madt), "[Processor Local x2APIC]"))
			assert.Equal(t, 1, strings.Count(string(madt), "[I/O APIC]"))
			assert.Equal(t, 1, strings.Count(string(madt), "[Interrupt Source Override]"))
			assertFields(t, string(madt),
				"Source : 09",
				"Interrupt : 00000009",
				"Flags (decoded below) : 000D",
				"Polarity : 1",
				"Trigger Mode : 3",
			)
		})
	}
}

// assertFields checks that an iasl disassembly shows each "Name : Value"
// line of want, however iasl aligns it.
func assertFields(t *testing.T, dsl string, want ...string) {
	t.Helper()
	for _, w := range want {
		assert.Regexp(t, strings.ReplaceAll(regexp.QuoteMeta(w), " ", `\s+`), dsl)
	}
}

// TestIASLCatchesFADTMismatch makes sure the disassembly check above can
// fail: iasl runs ACPICA's FADT conversion (acpi_tb_create_local_fadt), and
// a 32-bit block address or a GAS width that disagrees with the X_ field
// draws the same firmware warnings a Linux guest would print.
func TestIASLCatchesFADTMismatch(t *testing.T) {
	iasl := iaslPath(t)
	for _, tt := range []struct {
		name   string
		modify func(f []byte)
	}{
		{"address mismatch", func(f []byte) { binary.LittleEndian.PutUint32(f[fadtPM1aEvtBlk:], 0x700) }},
		{"length mismatch", func(f []byte) { f[fadtXPM1aCntBlk+gasBitWidth] = 8 }},
		{"required block missing", func(f []byte) { f[fadtPM1EvtLen] = 0 }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, p := build(t, testConfig(1, 0))
			f := bytes.Clone(p.tables["FACP"])
			tt.modify(f)
			finishTable(f)
			dir := t.TempDir()
			require.NoError(t, os.WriteFile(filepath.Join(dir, "FACP.dat"), f, 0o644))
			out := runIASL(t, iasl, dir, "-d", "FACP.dat")
			assert.Regexp(t, iaslComplaint, out)
		})
	}
}

// referenceDSDT returns ASL for the DSDT buildDSDT makes from cfg, written
// the way a firmware author would.
func referenceDSDT(cfg Config) string {
	var b strings.Builder
	fmt.Fprintf(&b, "DefinitionBlock (\"\", \"DSDT\", 2, %q, \"GVMMDSDT\", 1)\n{\n", oemID)
	b.WriteString("    Name (\\_S5, Package () { 5, 0, 0, 0 })\n")
	if len(cfg.VirtioMMIO) > 0 {
		b.WriteString("    Scope (\\_SB)\n    {\n")
		for i, d := range cfg.VirtioMMIO {
			fmt.Fprintf(&b, `        Device (V%03X)
        {
            Name (_HID, "LNRO0005")
            Name (_UID, %d)
            Name (_CRS, ResourceTemplate ()
            {
                Memory32Fixed (ReadWrite, 0x%08X, 0x%08X)
                Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) { %d }
            })
        }
`, i, i, d.Addr, d.Size, d.IRQ)
		}
		b.WriteString("    }\n")
	}
	b.WriteString("}\n")
	return b.String()
}

func TestIASLCompileMatchesDSDT(t *testing.T) {
	iasl := iaslPath(t)
	// 0 devices: \_S5 only; 2: Scope with a two-byte PkgLength; 100: a
	// Scope over 4 KiB, with a three-byte PkgLength.
	for _, devices := range []int{0, 2, 100} {
		t.Run(fmt.Sprintf("%d devices", devices), func(t *testing.T) {
			cfg := testConfig(1, devices)
			dir := t.TempDir()
			asl := filepath.Join(dir, "ref.asl")
			require.NoError(t, os.WriteFile(asl, []byte(referenceDSDT(cfg)), 0o644))
			// -on keeps the root prefixes (\_S5, \_SB) that iasl would
			// otherwise drop as redundant at the root scope.
			out := runIASL(t, iasl, dir, "-on", "-p", "ref", asl)
			assert.Contains(t, out, "0 Errors, 0 Warnings, 0 Remarks")
			want, err := os.ReadFile(filepath.Join(dir, "ref.aml"))
			require.NoError(t, err)

			got := buildDSDT(cfg)
			// iasl leaves each End Tag checksum zero (§6.4.2.9 allows it);
			// buildDSDT computes it. Zero ours to compare the rest.
			for _, d := range cfg.VirtioMMIO {
				tag := append(amlInterrupt(virtioMMIOInterruptFlags, d.IRQ), resEndTag)
				i := bytes.Index(got, tag)
				require.GreaterOrEqual(t, i, 0)
				got[i+len(tag)] = 0
			}
			// The header differs in the creator fields and so the checksum.
			assert.Equal(t, want[:hdrChecksum], got[:hdrChecksum], "header up to the checksum")
			assert.Equal(t, want[hdrOEMID:hdrCreatorID], got[hdrOEMID:hdrCreatorID], "OEM fields")
			assert.Equal(t, want[headerLen:], got[headerLen:], "AML")
		})
	}
}
