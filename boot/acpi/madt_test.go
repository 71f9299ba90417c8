package acpi

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMADT(t *testing.T) {
	for _, n := range []int{1, 2, 8, 254, 255, 256, 300} {
		t.Run(fmt.Sprintf("%d CPUs", n), func(t *testing.T) {
			cfg := testConfig(n, 0)
			_, p := build(t, cfg)
			m := p.tables["APIC"]
			le := binary.LittleEndian
			assert.EqualValues(t, 6, m[hdrRevision])
			assert.EqualValues(t, 0xFEE00000, le.Uint32(m[36:]), "local APIC address")
			assert.EqualValues(t, 1, le.Uint32(m[40:]), "flags: PCAT_COMPAT only")
			entries, err := splitMADT(m)
			require.NoError(t, err)

			var ids []uint32
			var ioapics, overrides int
			for _, e := range entries {
				switch e.typ {
				case 0: // Processor Local APIC
					require.Len(t, e.body, 8)
					assert.Equal(t, e.body[2], e.body[3], "UID = APIC ID")
					assert.EqualValues(t, 1, le.Uint32(e.body[4:]), "enabled")
					assert.LessOrEqual(t, e.body[3], byte(254))
					ids = append(ids, uint32(e.body[3]))
				case 9: // Processor Local x2APIC
					require.Len(t, e.body, 16)
					id := le.Uint32(e.body[4:])
					assert.Greater(t, id, uint32(254), "x2APIC entries only above 254")
					assert.Zero(t, le.Uint16(e.body[2:]), "reserved")
					assert.EqualValues(t, 1, le.Uint32(e.body[8:]), "enabled")
					assert.Equal(t, id, le.Uint32(e.body[12:]), "UID = APIC ID")
					ids = append(ids, id)
				case 1: // I/O APIC
					require.Len(t, e.body, 12)
					ioapics++
					assert.EqualValues(t, 0, e.body[2], "I/O APIC ID, as KVM reports")
					assert.EqualValues(t, 0xFEC00000, le.Uint32(e.body[4:]))
					assert.EqualValues(t, 0, le.Uint32(e.body[8:]), "GSI base")
				case 2: // Interrupt Source Override
					require.Len(t, e.body, 10)
					overrides++
					assert.EqualValues(t, 0, e.body[2], "bus 0 (ISA)")
					assert.EqualValues(t, 9, e.body[3], "source: the SCI IRQ")
					assert.EqualValues(t, 9, le.Uint32(e.body[4:]), "GSI 9")
					assert.EqualValues(t, 0x000D, le.Uint16(e.body[8:]), "level-triggered, active-high")
				default:
					t.Errorf("unexpected MADT structure type %d (no NMI entries)", e.typ)
				}
			}
			assert.Len(t, ids, n, "exactly one processor entry per vCPU")
			for i, id := range ids {
				assert.EqualValues(t, i, id, "APIC IDs 0..n-1 in order")
			}
			assert.Equal(t, 1, ioapics)
			assert.Equal(t, 1, overrides, "the SCI override only: no IRQ0 override")
			assert.EqualValues(t, madtLen(n), len(m))
		})
	}
}

func TestMADTSCIOverride(t *testing.T) {
	cfg := testConfig(1, 0)
	cfg.SCIIRQ = 11
	_, p := build(t, cfg)
	entries, err := splitMADT(p.tables["APIC"])
	require.NoError(t, err)
	want := []byte{2, 10, 0, 11, 11, 0, 0, 0, 0x0D, 0x00}
	assert.Equal(t, want, entries[len(entries)-1].body, "override after the I/O APIC")
}
