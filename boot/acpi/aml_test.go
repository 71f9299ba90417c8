package acpi

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAMLPkgLength(t *testing.T) {
	// Expected encodings derived by hand from ACPI 6.5 §20.2.4; the length
	// encoded includes the PkgLength bytes themselves.
	tests := []struct {
		name    string
		bodyLen int
		want    []byte
	}{
		{"empty body", 0, []byte{0x01}},
		{"one byte, largest", 62, []byte{0x3F}},
		{"two bytes, smallest", 63, []byte{0x41, 0x04}},           // 65 = 0x041
		{"two bytes, iasl Scope example", 65, []byte{0x43, 0x04}}, // 67 = 0x043
		{"two bytes, largest", 4093, []byte{0x4F, 0xFF}},          // 4095 = 0xFFF
		{"three bytes, smallest", 4094, []byte{0x81, 0x00, 0x01}},
		{"three bytes, largest", 1<<20 - 4, []byte{0x8F, 0xFF, 0xFF}},
		{"four bytes, smallest", 1<<20 - 3, []byte{0xC1, 0x00, 0x00, 0x01}},
		{"four bytes, largest", 1<<28 - 5, []byte{0xCF, 0xFF, 0xFF, 0xFF}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, amlPkgLength(tt.bodyLen))
		})
	}
	assert.Panics(t, func() { amlPkgLength(1<<28 - 4) }, "beyond the 28-bit limit")
	assert.Panics(t, func() { amlPkgLength(-1) })
}

func TestAMLNameString(t *testing.T) {
	tests := []struct {
		path string
		want []byte
	}{
		{`_S5`, []byte("_S5_")},
		{`\_S5`, []byte("\\_S5_")},
		{`\_S5_`, []byte("\\_S5_")},
		{`V000`, []byte("V000")},
		{`_SB.V000`, append([]byte{0x2E}, "_SB_V000"...)},
		{`\_SB.PCI0.ISA`, append([]byte{'\\', 0x2F, 3}, "_SB_PCI0ISA_"...)},
		{`^PCI0`, []byte("^PCI0")},
		{`^^A`, []byte("^^A___")},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			assert.Equal(t, tt.want, amlNameString(tt.path))
		})
	}
	for _, bad := range []string{"", `\`, "^", "1ABC", "abcd", "TOOLONG", "_SB..X", `^\_SB`, "A-B"} {
		assert.Panics(t, func() { amlNameString(bad) }, "%q", bad)
	}
}

func TestAMLInteger(t *testing.T) {
	// ACPI 6.5 §20.2.3: the shortest of ZeroOp, OneOp and the prefixed
	// constants, little-endian.
	tests := []struct {
		v    uint64
		want []byte
	}{
		{0, []byte{0x00}},
		{1, []byte{0x01}},
		{2, []byte{0x0A, 0x02}},
		{0xFF, []byte{0x0A, 0xFF}},
		{0x100, []byte{0x0B, 0x00, 0x01}},
		{0xFFFF, []byte{0x0B, 0xFF, 0xFF}},
		{0x10000, []byte{0x0C, 0x00, 0x00, 0x01, 0x00}},
		{0xD0000000, []byte{0x0C, 0x00, 0x00, 0x00, 0xD0}},
		{0xFFFFFFFF, []byte{0x0C, 0xFF, 0xFF, 0xFF, 0xFF}},
		{1 << 32, []byte{0x0E, 0, 0, 0, 0, 1, 0, 0, 0}},
		{^uint64(0), []byte{0x0E, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, amlInteger(tt.v), "%#x", tt.v)
	}
}

func TestAMLString(t *testing.T) {
	assert.Equal(t, []byte{0x0D, 'L', 'N', 'R', 'O', '0', '0', '0', '5', 0x00}, amlString("LNRO0005"))
	assert.Equal(t, []byte{0x0D, 0x00}, amlString(""))
	assert.Panics(t, func() { amlString("a\x00b") })
	assert.Panics(t, func() { amlString("é") })
}

func TestAMLTerms(t *testing.T) {
	// Expected bytes are what iasl 20200925 (with -on, keeping root
	// prefixes) compiles the ASL in each name into.
	tests := []struct {
		name string
		got  []byte
		want []byte
	}{
		{
			"Name (\\_S5, Package () {5, 0, 0, 0})",
			amlName(`\_S5`, amlPackage(amlInteger(5), amlInteger(0), amlInteger(0), amlInteger(0))),
			[]byte{0x08, '\\', '_', 'S', '5', '_', 0x12, 0x07, 0x04, 0x0A, 0x05, 0x00, 0x00, 0x00},
		},
		{
			"Package () {}",
			amlPackage(),
			[]byte{0x12, 0x02, 0x00},
		},
		{
			"Buffer () {1, 2, 3}",
			amlBuffer([]byte{1, 2, 3}),
			[]byte{0x11, 0x06, 0x0A, 0x03, 1, 2, 3},
		},
		{
			"Name (_UID, Zero)",
			amlName("_UID", amlInteger(0)),
			[]byte{0x08, '_', 'U', 'I', 'D', 0x00},
		},
		{
			"Scope (\\_SB) {}",
			amlScope(`\_SB`),
			[]byte{0x10, 0x06, '\\', '_', 'S', 'B', '_'},
		},
		{
			"Device (V000) { Name (_UID, One) }",
			amlDevice("V000", amlName("_UID", amlInteger(1))),
			[]byte{0x5B, 0x82, 0x0B, 'V', '0', '0', '0', 0x08, '_', 'U', 'I', 'D', 0x01},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.got)
		})
	}
}

func TestAMLPackageLimits(t *testing.T) {
	elems := make([][]byte, 255)
	for i := range elems {
		elems[i] = amlInteger(0)
	}
	p := amlPackage(elems...)
	// 1 NumElements + 255 ZeroOps = 256 body bytes: a two-byte PkgLength.
	assert.Equal(t, []byte{0x12, 0x42, 0x10, 0xFF}, p[:4])
	assert.Len(t, p, 1+2+256)
	assert.Panics(t, func() { amlPackage(append(elems, amlInteger(0))...) })
}

func TestAMLLargeDevice(t *testing.T) {
	// A body long enough to need a three-byte PkgLength nests correctly.
	big := amlName("BIG_", amlBuffer(make([]byte, 5000)))
	d := amlDevice("DEV0", big)
	require.Equal(t, []byte{0x5B, 0x82}, d[:2])
	body := 4 + len(big)
	total := body + 3
	assert.Equal(t, []byte{0x80 | byte(total&0xF), byte(total >> 4), byte(total >> 12)}, d[2:5])
	assert.Equal(t, "DEV0", string(d[5:9]))
	assert.Len(t, d, 2+total)
	assert.True(t, strings.HasPrefix(string(d[9:]), "\x08BIG_\x11"))
}
