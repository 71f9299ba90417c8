package boot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Fuzz targets for everything that reads an untrusted kernel file. The seed
// corpus in testdata/fuzz is small synthetic images (regenerate with
// GVMM_BOOT_WRITE_FIXTURES=1 go test -run TestWriteFixtures); f.Add adds the
// same seeds so a plain "go test" runs them too. Run a fuzzer with e.g.
//
//	go test ./boot -run '^$' -fuzz FuzzProbe -fuzztime 60s

// tinyELF is a one-segment vmlinux with a PVH note: the smallest seed.
func tinyELF() []byte {
	return buildELF(0x1000000, []testSeg{{paddr: 0x1000000, data: pseudoCode(256, 3), memsz: 4 * kib}}, pvhNote(0x1000000, 4))
}

// seedKernels returns named small kernel images for the seed corpora.
func seedKernels(t testing.TB) map[string][]byte {
	e := tinyELF()
	small := func(payload []byte) bzOpts {
		o := defaultBz(payload)
		o.setupSects, o.stub = 1, 0x210 // the smallest image that still has a 64-bit entry
		return o
	}
	seeds := map[string][]byte{"elf-pvh": e}
	for _, c := range []string{CompressionGzip, CompressionLZ4, CompressionXZ, CompressionZstd} {
		seeds["bzimage-"+c] = buildBzImage(small(compress(t, c, e)))
	}
	seeds["bzimage-lzo"] = buildBzImage(small(withSize([]byte{0x89, 'L', 'Z', 'O', 0, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3}, 100)))
	return seeds
}

// seedPayloads returns named small compressed payloads.
func seedPayloads(t testing.TB) map[string][]byte {
	data := pseudoCode(512, 9)
	seeds := map[string][]byte{}
	for _, c := range []string{CompressionGzip, CompressionLZ4, CompressionXZ, CompressionZstd, CompressionLZMA} {
		seeds[c] = compress(t, c, data)
	}
	return seeds
}

// writeFuzzSeeds writes the seed corpora under testdata/fuzz.
func writeFuzzSeeds(t *testing.T) {
	write := func(target, name string, args ...string) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		body := "go test fuzz v1\n"
		for _, a := range args {
			body += a + "\n"
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, k := range seedKernels(t) {
		write("FuzzProbe", name, fmt.Sprintf("[]byte(%q)", k))
		write("FuzzLoad", name, fmt.Sprintf("[]byte(%q)", k), "uint16(1000)", `string("console=ttyS0")`, "uint8(0)")
		if hasELFMagic(k) {
			write("FuzzParseELF", name, fmt.Sprintf("[]byte(%q)", k))
		}
	}
	for name, p := range seedPayloads(t) {
		write("FuzzDecompress", name, fmt.Sprintf("[]byte(%q)", p))
	}
}

// checkErr fails unless err wraps one of the package's sentinels: every
// failure must be one a caller can classify.
func checkErr(t *testing.T, err error) {
	t.Helper()
	for _, s := range []error{ErrNotKernel, ErrTruncated, ErrBadImage, ErrProtocolTooOld, ErrUnsupported,
		ErrDecompress, ErrCmdlineTooLong, ErrInitrdTooLarge, ErrNoRoom, ErrConfig} {
		if errors.Is(err, s) {
			return
		}
	}
	t.Fatalf("error wraps no sentinel: %v", err)
}

func FuzzProbe(f *testing.F) {
	for _, k := range seedKernels(f) {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := Probe(b)
		n, err2 := CmdlineMax(b)
		if (err == nil) != (err2 == nil) {
			t.Fatalf("Probe error %v but CmdlineMax error %v", err, err2)
		}
		if err != nil {
			checkErr(t, err)
			return
		}
		if n < 0 || n > cmdlineAreaSz-1 || (info.Format != FormatBzImage && info.Format != FormatVmlinux) {
			t.Fatalf("bad result %+v, cmdline max %d", info, n)
		}
	})
}

func FuzzParseELF(f *testing.F) {
	f.Add(tinyELF())
	f.Add(testKernelELF(true))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := parseELF(b)
		if err != nil {
			checkErr(t, err)
			return
		}
		if !e.insidePhysical(e.entry) || (e.pvhEntry != 0 && !e.insidePhysical(e.pvhEntry)) {
			t.Fatalf("entry %#x / PVH entry %#x outside the segments", e.entry, e.pvhEntry)
		}
		for i, s := range e.segments {
			if uint64(len(s.data)) > s.memsz || s.paddr < e.start || s.paddr+s.memsz > e.end ||
				(i > 0 && s.paddr < e.segments[i-1].paddr+e.segments[i-1].memsz) {
				t.Fatalf("bad segment %d: %#x +%#x (file %d)", i, s.paddr, s.memsz, len(s.data))
			}
		}
	})
}

func FuzzDecompress(f *testing.F) {
	for _, p := range seedPayloads(f) {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		out, _, err := decompressPayload(b)
		if err != nil {
			checkErr(t, err)
			return
		}
		if want := int(b[len(b)-4]) | int(b[len(b)-3])<<8 | int(b[len(b)-2])<<16 | int(b[len(b)-1])<<24; len(out) != want {
			t.Fatalf("decompressed %d bytes, payload declares %d", len(out), want)
		}
	})
}

func FuzzLoad(f *testing.F) {
	for _, k := range seedKernels(f) {
		f.Add(k, uint16(1000), "console=ttyS0", uint8(0))
	}
	ram := []Range{{0, 48 * mb}}
	f.Fuzz(func(t *testing.T, kernel []byte, initrdSize uint16, cmdline string, entry uint8) {
		mem := newFakeMem(ram)
		s, err := Load(mem, Config{Kernel: kernel, Initrd: make([]byte, int(initrdSize)*64), Cmdline: cmdline, RAM: ram, Entry: EntryMode(entry % 5)})
		if err != nil {
			checkErr(t, err)
			return
		}
		if s.Entry == Auto || s.CPU.RIP != s.Kernel.Entry || s.Kernel.Start < HighMemStart ||
			(s.Initrd.Size != 0 && overlaps(s.Initrd.Start, s.Initrd.Size, s.Kernel.Start, s.Kernel.End-s.Kernel.Start)) {
			t.Fatalf("bad setup %+v", s)
		}
	})
}
