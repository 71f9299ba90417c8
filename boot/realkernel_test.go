package boot

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The real kernels that `make guest` puts in GUEST_DIR (default
// ../.cache/guest): bzImage (6.1 minimal, gzip) with its stripped vmlinux
// (ELF with a PVH note), the CI pair, and Debian's signed cloud kernel (LZ4,
// relocatable). Which of them are there depends on where make guest found
// them (guest/README.md); tests of absent ones skip.
func guestDir() string {
	if d := os.Getenv("GUEST_DIR"); d != "" {
		return d
	}
	return filepath.Join("..", ".cache", "guest")
}

func readGuestFile(t testing.TB, name string) []byte {
	t.Helper()
	guestDir := guestDir()
	b, err := os.ReadFile(filepath.Join(guestDir, name))
	if os.IsNotExist(err) {
		t.Skipf("%s not present", filepath.Join(guestDir, name))
	}
	require.NoError(t, err)
	return b
}

func TestRealKernelProbe(t *testing.T) {
	tests := []struct {
		file        string
		format      string
		compression string
		protocol    uint16
		relocatable bool
		pvh         bool
	}{
		{"bzImage", FormatBzImage, CompressionGzip, 0x020f, false, false},
		{"bzImage-ci", FormatBzImage, CompressionGzip, 0x020f, false, false},
		{"vmlinuz-debian-cloud", FormatBzImage, CompressionLZ4, 0x020f, true, false},
		{"vmlinux", FormatVmlinux, CompressionNone, 0, false, true},
		{"vmlinux-ci", FormatVmlinux, CompressionNone, 0, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			info, err := Probe(readGuestFile(t, tt.file))
			require.NoError(t, err)
			t.Logf("%+v", info)
			assert.Equal(t, tt.format, info.Format)
			assert.Equal(t, tt.compression, info.Compression)
			assert.Equal(t, tt.protocol, info.Protocol)
			assert.Equal(t, tt.relocatable, info.Relocatable)
			assert.Equal(t, uint32(2047), info.CmdlineSize)
			assert.Equal(t, uint64(0x1000000), info.PrefAddress)
			assert.Equal(t, tt.pvh, info.PVHEntry != 0)
			if tt.format == FormatBzImage {
				assert.NotZero(t, info.XLoadFlags&XLFKernel64)
				assert.NotZero(t, info.InitSize)
			} else {
				assert.Equal(t, uint64(0x1000000), info.Entry)
			}
		})
	}
}

// TestRealKernelLoad loads every real kernel in every entry it supports
// into a 1 GiB guest and checks the result.
func TestRealKernelLoad(t *testing.T) {
	initrd := bytes.Repeat([]byte("initrd"), 300*kib)
	tests := []struct {
		file   string
		entry  EntryMode
		want   EntryMode
		errIs  error
		protoc bool
	}{
		{"bzImage", Auto, Linux64, nil, false},
		{"bzImage", PVH, PVH, nil, false},
		{"bzImage", Protocol, Protocol, nil, true},
		{"bzImage-ci", Auto, Linux64, nil, false},
		{"vmlinuz-debian-cloud", Auto, Linux64, nil, false},
		{"vmlinuz-debian-cloud", PVH, PVH, nil, false},
		{"vmlinuz-debian-cloud", Protocol, Protocol, nil, true},
		{"vmlinux", Auto, Linux64, nil, false},
		{"vmlinux", PVH, PVH, nil, false},
		{"vmlinux", Protocol, 0, ErrUnsupported, false},
		{"vmlinux-ci", PVH, PVH, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.file+"/"+tt.entry.String(), func(t *testing.T) {
			kernel := readGuestFile(t, tt.file)
			ram := ramLayout(1 * gib)
			mem := newFakeMem(ram)
			s, err := Load(mem, Config{Kernel: kernel, Initrd: initrd, Cmdline: "console=ttyS0", RAM: ram, RSDP: 0xE0000, Entry: tt.entry})
			if tt.errIs != nil {
				require.ErrorIs(t, err, tt.errIs)
				t.Log(err)
				return
			}
			require.NoError(t, err)
			t.Logf("entry %v at %#x, kernel [%#x, %#x), initrd %v, %s/%s, decompressed in %v",
				s.Entry, s.Kernel.Entry, s.Kernel.Start, s.Kernel.End, s.Initrd, s.Format, s.Compression, s.DecompressTime)
			assert.Equal(t, tt.want, s.Entry)
			assert.Equal(t, s.Kernel.Entry, s.CPU.RIP)
			assert.Equal(t, "console=ttyS0\x00", string(mem.read(CmdlineAddr, 14)))
			assert.Equal(t, initrd, mem.read(s.Initrd.Start, len(initrd)))
			assert.False(t, overlaps(s.Initrd.Start, s.Initrd.Size, s.Kernel.Start, s.Kernel.End-s.Kernel.Start))
			switch s.Entry {
			case Protocol:
				assert.Equal(t, s.Kernel.Entry, uint64(mem.u32(ZeroPageAddr+hdrCode32Start))+0x200)
			case PVH:
				assert.Equal(t, uint32(hvmStartMagic), mem.u32(StartInfoAddr))
				assert.Equal(t, uint64(s.Initrd.Start), mem.u64(pvhModlistAddr))
			default:
				assert.Equal(t, uint64(0x1000000), s.Kernel.Entry)
				assert.Equal(t, "HdrS", string(mem.read(ZeroPageAddr+hdrMagic, 4)))
			}
		})
	}
}

// TestRealBzImageMatchesVmlinux checks host decompression end to end: the
// kernel memory after loading a bzImage must equal that after loading the
// vmlinux it was built from (same build, so the same segments).
func TestRealBzImageMatchesVmlinux(t *testing.T) {
	for _, pair := range [][2]string{{"bzImage", "vmlinux"}, {"bzImage-ci", "vmlinux-ci"}} {
		t.Run(pair[0], func(t *testing.T) {
			bz, vm := readGuestFile(t, pair[0]), readGuestFile(t, pair[1])
			ram := ramLayout(512 * mb)
			m1, m2 := newFakeMem(ram), newFakeMem(ram)
			s1, err := Load(m1, Config{Kernel: bz, RAM: ram})
			require.NoError(t, err)
			s2, err := Load(m2, Config{Kernel: vm, RAM: ram})
			require.NoError(t, err)
			e, err := parseELF(vm)
			require.NoError(t, err)
			assert.Equal(t, s2.Kernel.Entry, s1.Kernel.Entry)
			n := int(e.end - e.start)
			if !bytes.Equal(m1.read(e.start, n), m2.read(e.start, n)) {
				t.Fatalf("kernel memory [%#x, %#x) differs between %s and %s", e.start, e.end, pair[0], pair[1])
			}
		})
	}
}

// TestRealDecompressTime logs how long host-side decompression of each real
// bzImage takes (the in-guest decompressor took minutes on the PVM host; see
// README-measurements.md).
func TestRealDecompressTime(t *testing.T) {
	for _, f := range []string{"bzImage", "bzImage-ci", "vmlinuz-debian-cloud"} {
		t.Run(f, func(t *testing.T) {
			z, err := parseBzImage(readGuestFile(t, f))
			require.NoError(t, err)
			start := time.Now()
			out, name, err := decompressPayload(z.payload)
			d := time.Since(start)
			require.NoError(t, err)
			t.Logf("%s: %s payload %.1f MiB -> %.1f MiB in %v (%.0f MiB/s of output)", f, name,
				float64(len(z.payload))/mb, float64(len(out))/mb, d, float64(len(out))/mb/d.Seconds())
		})
	}
}

func BenchmarkDecompressReal(b *testing.B) {
	for _, f := range []string{"bzImage", "vmlinuz-debian-cloud"} {
		b.Run(f, func(b *testing.B) {
			z, err := parseBzImage(readGuestFile(b, f))
			require.NoError(b, err)
			b.SetBytes(int64(len(z.payload)))
			for b.Loop() {
				if _, _, err := decompressPayload(z.payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
