package trace

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/gvmm/gvmm/vcpu"
	"github.com/gvmm/gvmm/vcpu/stats"
	"github.com/stretchr/testify/require"
)

// fuzzSeeds are small traces of every shape: empty, one vCPU, several
// vCPUs with every kind, a full key table, and cut short.
func fuzzSeeds(t testing.TB) map[string][]byte {
	seeds := map[string][]byte{}
	empty, _ := writeTrace(t, 1, 0)
	seeds["empty"] = empty
	few, _ := writeTrace(t, 2, 12)
	seeds["two-vcpus"] = few
	seeds["truncated"] = few[:len(few)*2/3]
	seeds["header-only"] = few[:headerSize]

	var buf bytes.Buffer
	w := NewWriter(&buf, 1, testNamer{}, opName)
	for a := range uint64(maxKeys + 3) {
		e := vcpu.Exit{Kind: vcpu.KindMMIORead, Slot: -1, Addr: a, Size: 1, Start: w.mono0 + int64(a)}
		w.VCPU(0).Observe(&e)
	}
	require.NoError(t, w.Close())
	// Keep the tail, with the raw records, behind a fresh header: the
	// fuzzer then mutates records rather than the 4096 definitions.
	full := buf.Bytes()
	seeds["raw-keys-tail"] = append(bytes.Clone(full[:headerSize]), full[len(full)-200:]...)
	return seeds
}

// TestWriteFuzzSeeds regenerates testdata/fuzz/FuzzReader when
// GVMM_WRITE_FUZZ_SEEDS=1, after a format change.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("GVMM_WRITE_FUZZ_SEEDS") != "1" {
		t.Skip("set GVMM_WRITE_FUZZ_SEEDS=1 to regenerate the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzReader")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	for name, b := range fuzzSeeds(t) {
		data := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "seed-"+name), []byte(data), 0o644))
	}
}

// FuzzReader feeds arbitrary bytes to the reader, with and without checksum
// verification (without, mutations reach the entry decoders), and to Dump's
// formatting and Summarize's replay. Nothing may panic, errors must say what
// kind of damage they found, and the work must stay proportional to the
// input.
func FuzzReader(f *testing.F) {
	for _, b := range fuzzSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(fuzzOne)
}

func fuzzOne(t *testing.T, b []byte) {
	{
		for _, verify := range []bool{true, false} {
			r, err := newReader(bytes.NewReader(b), verify)
			if err != nil {
				if !errors.Is(err, ErrNotTrace) && !errors.Is(err, ErrVersion) && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrCorrupt) {
					t.Fatalf("NewReader: unclassified error %v", err)
				}
				continue
			}
			hdr := r.Header()
			var c *stats.Collector
			if hdr.VCPUs <= 64 {
				c = stats.New(hdr.VCPUs, &replayNamer{devs: map[regKey]string{}, regs: map[regKey]string{}}, nil)
			}
			n := 0
			for {
				rec, err := r.Next()
				if err != nil {
					if !errors.Is(err, io.EOF) && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrCorrupt) {
						t.Fatalf("Next: unclassified error %v", err)
					}
					if _, again := r.Next(); again != err {
						t.Fatalf("Next after %v returned %v", err, again)
					}
					break
				}
				n++
				if n > len(b)/5 {
					t.Fatalf("%d records from %d bytes", n, len(b))
				}
				if rec.Kind >= vcpu.NumKinds || rec.VCPU >= hdr.VCPUs {
					t.Fatalf("bad record %+v", rec)
				}
				writeRecord(io.Discard, &rec)
				if c != nil {
					c.VCPU(rec.VCPU).Observe(&rec.Exit)
				}
			}
			if c != nil {
				_ = c.Report().WriteTable(io.Discard)
			}
		}
	}
}
