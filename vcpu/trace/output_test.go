package trace

import (
	"bytes"
	"strings"
	"testing"

	"github.com/gvmm/gvmm/kvm"
	"github.com/gvmm/gvmm/vcpu"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// smallTrace writes a handful of known exits on two vCPUs.
func smallTrace(t *testing.T) []byte {
	var buf bytes.Buffer
	w := NewWriter(&buf, 2, testNamer{}, opName)
	at := func(us int64) int64 { return w.mono0 + us*1000 }
	exits := []vcpu.Exit{
		{VCPU: 0, Kind: vcpu.KindIOOut, Reason: kvm.ExitIO, Addr: 0x3f8, Size: 1, Count: 1, Data: 0x41, Slot: 0, Offset: 0, Start: at(10), RunNs: 10000, HandleNs: 1500},
		{VCPU: 0, Kind: vcpu.KindIOIn, Reason: kvm.ExitIO, Addr: 0x3fd, Size: 1, Count: 1, Data: 0x60, Slot: 0, Offset: 5, Start: at(12), RunNs: 500, HandleNs: 400},
		{VCPU: 1, Kind: vcpu.KindMMIOWrite, Reason: kvm.ExitMMIO, Addr: 0xd0000050, Size: 4, Count: 1, Data: 0, Slot: 2, Offset: 0x50, Start: at(11), RunNs: 11000, HandleNs: 2500},
		{VCPU: 1, Kind: vcpu.KindIOIn, Reason: kvm.ExitIO, Addr: 0x1f0, Size: 2, Count: 256, Data: 0x1234, Slot: -1, Start: at(20), RunNs: 6000, HandleNs: 900},
		{VCPU: 0, Kind: vcpu.KindFallback, Reason: kvm.ExitInternalError, Op: 3, Slot: -1, Start: at(30), RunNs: 17000, HandleNs: 35000},
		{VCPU: 1, Kind: vcpu.KindOther, Reason: kvm.ExitIRQWindowOpen, Slot: -1, Start: at(40), RunNs: 100, HandleNs: 80},
		{VCPU: 1, Kind: vcpu.KindIntr, Slot: -1, Start: at(2_000_000), RunNs: 1_999_960_000, HandleNs: 120},
	}
	for i := range exits {
		w.VCPU(exits[i].VCPU).Observe(&exits[i])
	}
	require.NoError(t, w.Close())
	return buf.Bytes()
}

func TestDump(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, Dump(bytes.NewReader(smallTrace(t)), &out))
	t.Logf("\n%s", out.String())
	assert.Equal(t, `            TIME VCPU  KIND           DEVICE       REGISTER                 ADDR SIZE               DATA  HANDLE_NS       RUN_NS
     0.000010000    0  io-out         serial0      THR                     0x3f8    1               0x41       1500        10000
     0.000012000    0  io-in          serial0      LSR                     0x3fd    1               0x60        400          500
     0.000030000    0  fallback       -            movbe                       -    -                  -      35000        17000
     0.000011000    1  mmio-write     virtio-blk0  QueueNotify        0xd0000050    4                0x0       2500        11000
     0.000020000    1  io-in          unclaimed    0x1f0                   0x1f0    2             0x1234        900         6000 x256
     0.000040000    1  other          -            IRQ_WINDOW_OPEN             -    -                  -         80          100
     2.000000000    1  eintr          -            -                           -    -                  -        120   1999960000
`, out.String())
}

func TestSummarize(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, Summarize(bytes.NewReader(smallTrace(t)), &out))
	t.Logf("\n%s", out.String())
	s := out.String()
	assert.Regexp(t, `^trace started \S+, 2 vCPUs, 7 records\n7 exits in 2.00s \(3.5/s\) on 2 vCPUs;`, s)
	for _, want := range []string{
		"\nfallback        1  35.0µs  86.4%  35.0µs",
		"\nfallback    -            movbe                1  35.0µs",
		"\nmmio-write  virtio-blk0  QueueNotify          1  2.50µs",
		"\nio-out      serial0      THR                  1  1.50µs",
		"\nio-in       unclaimed    0x1f0                1   900ns",
		"\nio-in       serial0      LSR                  1   400ns",
		"\nother       -            IRQ_WINDOW_OPEN      1    80ns",
		"\neintr 1, kicks 0\n",
	} {
		assert.Contains(t, s, want)
	}
}

func TestSummarizeTruncated(t *testing.T) {
	b := smallTrace(t)
	var out bytes.Buffer
	err := Summarize(bytes.NewReader(b[:len(b)-3]), &out)
	assert.ErrorIs(t, err, ErrTruncated)
	assert.Contains(t, out.String(), "7 records")
	assert.Contains(t, out.String(), "\nwarning: incomplete summary: trace: truncated in the end block")

	out.Reset()
	err = Dump(bytes.NewReader(b[:len(b)-3]), &out)
	assert.ErrorIs(t, err, ErrTruncated)
	assert.Equal(t, 8, strings.Count(out.String(), "\n"), "header and every record before the cut")

	assert.ErrorIs(t, Dump(strings.NewReader("nope"), &out), ErrNotTrace)
	assert.ErrorIs(t, Summarize(strings.NewReader(""), &out), ErrTruncated)
}
