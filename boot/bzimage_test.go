package boot

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseBzImage(t *testing.T) {
	payload := compress(t, CompressionGzip, tinyELF())
	o := defaultBz(payload)
	z, err := parseBzImage(buildBzImage(o))
	require.NoError(t, err)
	assert.Equal(t, uint16(0x020f), z.version)
	assert.Equal(t, 4, z.setupSects)
	assert.Equal(t, uint32(2047), z.cmdlineSize)
	assert.Equal(t, uint64(0x1000000), z.prefAddress)
	assert.Equal(t, uint32(4*mb), z.initSize)
	assert.Equal(t, uint16(XLFKernel64), z.xloadflags)
	assert.False(t, z.relocatable)
	assert.Equal(t, payload, z.payload)
	assert.Len(t, z.header, hdrEnd-hdrStart, "header runs to 0x202 + the byte at 0x201")
	assert.Equal(t, uint64(0x80000000), z.initrdLimit())

	o.xloadflags |= XLFCanBeLoadedAbove4G
	z, err = parseBzImage(buildBzImage(o))
	require.NoError(t, err)
	assert.Equal(t, ^uint64(0), z.initrdLimit())
}

func TestParseBzImageSetupSectsZero(t *testing.T) {
	// boot.rst: setup_sects 0 means 4.
	o := defaultBz(compress(t, CompressionGzip, tinyELF()))
	o.setupSects = 0
	z, err := parseBzImage(buildBzImage(o))
	require.NoError(t, err)
	assert.Equal(t, 4, z.setupSects)
}

func TestParseBzImageOldProtocols(t *testing.T) {
	// 2.06 and 2.07 have no payload fields; 2.08-2.09 no pref_address.
	for _, v := range []uint16{0x0206, 0x0207, 0x0208, 0x0209, 0x020a, 0x020b} {
		o := defaultBz(compress(t, CompressionGzip, tinyELF()))
		o.version = v
		z, err := parseBzImage(buildBzImage(o))
		require.NoError(t, err, protoString(v))
		assert.Equal(t, v >= 0x0208, z.payload != nil, protoString(v))
		if v < 0x020a {
			assert.Equal(t, uint64(0x100000), z.prefAddress)
			assert.Zero(t, z.initSize)
		}
		if v < 0x020c {
			assert.Zero(t, z.xloadflags)
		}
	}
}

func TestRuntimeStart(t *testing.T) {
	tests := []struct {
		name        string
		relocatable bool
		align       uint32
		pref, load  uint64
		want        uint64
		bad         bool
	}{
		{"fixed kernel runs at pref_address", false, 0x200000, 0x1000000, 0x100000, 0x1000000, false},
		{"relocatable, load below pref", true, 0x200000, 0x1000000, 0x100000, 0x1000000, false},
		{"relocatable, aligned up", true, 0x200000, 0x1000000, 0x1100000, 0x1200000, false},
		{"relocatable, bad alignment", true, 0x300000, 0x1000000, 0x1000000, 0, true},
		{"relocatable, zero alignment", true, 0, 0x1000000, 0x1000000, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			z := &bzImage{relocatable: tt.relocatable, kernelAlignment: tt.align, prefAddress: tt.pref}
			got, err := z.runtimeStart(tt.load)
			if tt.bad {
				require.ErrorIs(t, err, ErrBadImage)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestParseBzImageErrors(t *testing.T) {
	good := buildBzImage(defaultBz(compress(t, CompressionGzip, tinyELF())))
	patch := func(off int, size int, v uint32) []byte {
		b := append([]byte(nil), good...)
		switch size {
		case 1:
			b[off] = byte(v)
		case 2:
			binary.LittleEndian.PutUint16(b[off:], uint16(v))
		case 4:
			binary.LittleEndian.PutUint32(b[off:], v)
		}
		return b
	}
	tests := []struct {
		name  string
		b     []byte
		errIs error
		msg   string
	}{
		{"no magic", patch(hdrMagic, 4, 0), ErrNotKernel, "no bzImage header and no ELF magic"},
		{"empty", nil, ErrNotKernel, ""},
		{"header cut short", good[:0x230], ErrTruncated, "shorter than the setup header"},
		{"bad boot flag", patch(hdrBootFlag, 2, 0x1234), ErrBadImage, "boot_flag"},
		{"protocol 2.04", patch(hdrVersion, 2, 0x0204), ErrProtocolTooOld, "boot protocol 2.04 is older than 2.06"},
		{"protocol 1.00", patch(hdrVersion, 2, 0x0100), ErrProtocolTooOld, "boot protocol 1.00 is older than 2.06"},
		{"setup past the end", patch(hdrSetupSects, 1, 200), ErrTruncated, "setup code needs 201 sectors"},
		{"syssize past the end", patch(hdrSysSize, 4, 0x100000), ErrTruncated, "syssize"},
		{"payload past the end", patch(hdrPayloadLength, 4, 0x7fffffff), ErrTruncated, "payload"},
		{"payload offset past the end", patch(hdrPayloadOffset, 4, 0xffffffff), ErrTruncated, "payload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Probe(tt.b)
			require.ErrorIs(t, err, tt.errIs)
			assert.Contains(t, err.Error(), tt.msg)
			t.Log(err)
		})
	}
}

func TestProbeSynthetic(t *testing.T) {
	o := defaultBz(compress(t, CompressionZstd, tinyELF()))
	o.relocatable, o.xloadflags = true, XLFKernel64|XLFCanBeLoadedAbove4G
	info, err := Probe(buildBzImage(o))
	require.NoError(t, err)
	assert.Equal(t, Info{Format: FormatBzImage, Protocol: 0x020f, Compression: CompressionZstd, CmdlineSize: 2047,
		InitSize: 4 * mb, PrefAddress: 0x1000000, KernelAlignment: 0x200000, Relocatable: true,
		InitrdAddrMax: 0x7fffffff, XLoadFlags: 3}, info)

	info, err = Probe(testKernelELF(true))
	require.NoError(t, err)
	assert.Equal(t, Info{Format: FormatVmlinux, Compression: CompressionNone, CmdlineSize: 2047,
		InitSize: 0x200000 + 200*kib, PrefAddress: 0x1000000, KernelAlignment: 0x200000,
		InitrdAddrMax: 0xffffffff, XLoadFlags: XLFKernel64, Entry: 0x1000000, PVHEntry: 0x1000040}, info)

	o = defaultBz(compress(t, CompressionGzip, tinyELF()))
	o.cmdlineSize = 255
	n, err := CmdlineMax(buildBzImage(o))
	require.NoError(t, err)
	assert.Equal(t, 255, n)
	n, err = CmdlineMax(tinyELF())
	require.NoError(t, err)
	assert.Equal(t, 2047, n)
	_, err = CmdlineMax([]byte("garbage"))
	assert.ErrorIs(t, err, ErrNotKernel)
}
