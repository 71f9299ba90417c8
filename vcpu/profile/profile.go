package profile

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// header is the first line of a profile file; the number is the format
// version.
const header = "gvmm-profile 1"

// maxLine bounds a line of a profile file or symbol table, so a corrupt
// file cannot make a reader buffer without limit.
const maxLine = 4096

// Key is one sampled location.
type Key struct {
	// VCPU is the vCPU index.
	VCPU int
	// RIP is the guest-virtual instruction pointer.
	RIP uint64
}

// maxKeys bounds the distinct (vCPU, RIP) pairs a Profile keeps, 2^20,
// about 64 MiB of map: the guest chooses its RIPs, and a long run of code
// that never repeats an address (a JIT) must not grow the VMM without
// limit. Samples at new addresses beyond it are only counted, as Dropped.
// A variable so that tests can lower it.
var maxKeys = 1 << 20

// Profile accumulates samples. It is safe for concurrent use: every vCPU
// thread adds its own samples.
type Profile struct {
	mu      sync.Mutex
	counts  map[Key]uint64
	dropped uint64
}

// New returns an empty profile.
func New() *Profile { return &Profile{counts: map[Key]uint64{}} }

// Sample records that vCPU vcpu was at rip.
func (p *Profile) Sample(vcpu int, rip uint64) {
	k := Key{vcpu, rip}
	p.mu.Lock()
	if _, ok := p.counts[k]; ok || len(p.counts) < maxKeys {
		p.counts[k]++
	} else {
		p.dropped++
	}
	p.mu.Unlock()
}

// Dropped returns how many samples were not kept because the profile
// already held 2^20 addresses.
func (p *Profile) Dropped() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dropped
}

// Counts returns a copy of the samples.
func (p *Profile) Counts() map[Key]uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[Key]uint64, len(p.counts))
	for k, n := range p.counts {
		out[k] = n
	}
	return out
}

// Since returns the samples p has beyond those of an earlier snapshot of
// the same run, base: what the guest did between the two. Counts that base
// has more of (a snapshot of another run) are dropped, not made negative.
func (p *Profile) Since(base *Profile) *Profile {
	old := base.Counts()
	out := New()
	for k, n := range p.Counts() {
		if n > old[k] {
			out.counts[k] = n - old[k]
		}
	}
	return out
}

// WriteTo writes the profile in its file format, sorted by vCPU and RIP.
func (p *Profile) WriteTo(w io.Writer) (int64, error) {
	c := p.Counts()
	keys := make([]Key, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].VCPU != keys[j].VCPU {
			return keys[i].VCPU < keys[j].VCPU
		}
		return keys[i].RIP < keys[j].RIP
	})
	bw := bufio.NewWriter(w)
	n, _ := fmt.Fprintln(bw, header)
	total := int64(n)
	for _, k := range keys {
		n, _ = fmt.Fprintf(bw, "%d %#x %d\n", k.VCPU, k.RIP, c[k])
		total += int64(n)
	}
	return total, bw.Flush()
}

// Read parses a profile file written by WriteTo.
func Read(r io.Reader) (*Profile, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 256), maxLine)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("profile: %w", err)
		}
		return nil, errors.New("profile: empty file")
	}
	if strings.TrimSpace(sc.Text()) != header {
		return nil, fmt.Errorf("profile: not a gvmm profile (first line %.40q, want %q)", sc.Text(), header)
	}
	p := New()
	for line := 2; sc.Scan(); line++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			return nil, fmt.Errorf("profile: line %d: want \"vcpu rip count\", got %d fields", line, len(f))
		}
		vcpu, err1 := strconv.ParseUint(f[0], 10, 16)
		rip, err2 := strconv.ParseUint(f[1], 0, 64)
		n, err3 := strconv.ParseUint(f[2], 10, 64)
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, fmt.Errorf("profile: line %d: %w", line, err)
		}
		k := Key{int(vcpu), rip}
		if p.counts[k]+n < n {
			return nil, fmt.Errorf("profile: line %d: count overflows", line)
		}
		p.counts[k] += n
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	return p, nil
}
