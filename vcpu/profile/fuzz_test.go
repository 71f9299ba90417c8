package profile

import (
	"bytes"
	"io"
	"testing"
)

// FuzzRead parses arbitrary profile files: nothing may panic, and what
// parses must write back to a file that parses to the same counts.
func FuzzRead(f *testing.F) {
	f.Add([]byte("gvmm-profile 1\n0 0xffffffff81000000 3\n1 0x401000 1\n"))
	f.Add([]byte("gvmm-profile 1\n"))
	f.Add([]byte("gvmm-profile 1\n0 0x10 18446744073709551615\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Read(bytes.NewReader(b))
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if _, err := p.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		q, err := Read(&buf)
		if err != nil {
			t.Fatalf("rereading %q: %v", buf.String(), err)
		}
		if len(q.Counts()) != len(p.Counts()) {
			t.Fatalf("%d keys, reread %d", len(p.Counts()), len(q.Counts()))
		}
		_ = Report(io.Discard, p, nil, 0)
	})
}

// FuzzSymbols parses arbitrary symbol tables and looks addresses up.
func FuzzSymbols(f *testing.F) {
	f.Add([]byte(systemMap), uint64(0xffffffff81000104))
	f.Add([]byte("0 T zero\nffffffffffffffff T top\n"), uint64(1<<64-1))
	f.Fuzz(func(t *testing.T, b []byte, addr uint64) {
		s, err := ReadSymbols(bytes.NewReader(b))
		if err != nil {
			return
		}
		if name, off, ok := s.Lookup(addr); ok && (name == "" || off > addr) {
			t.Fatalf("Lookup(%#x) = %q, %#x", addr, name, off)
		}
		p := New()
		p.Sample(0, addr)
		_ = Report(io.Discard, p, s, 0)
	})
}
