package stats

import (
	"bytes"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gvmm/gvmm/kvm"
	"github.com/gvmm/gvmm/vcpu"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFmtDur(t *testing.T) {
	for _, tc := range []struct {
		ns   int64
		want string
	}{
		{0, "0ns"}, {999, "999ns"}, {1000, "1.00µs"}, {1234, "1.23µs"},
		{12345, "12.3µs"}, {123456, "123µs"}, {999_400, "999µs"}, {999_600, "1.00ms"},
		{45_600_000, "45.6ms"}, {1_500_000_000, "1.50s"}, {125e9, "125s"}, {4000e9, "4000s"},
		{-1500, "-1.50µs"},
	} {
		assert.Equal(t, tc.want, fmtDur(tc.ns), "%d ns", tc.ns)
	}
}

func TestFmtCount(t *testing.T) {
	for _, tc := range []struct {
		n    uint64
		want string
	}{
		{0, "0"}, {999, "999"}, {1000, "1.00k"}, {12345, "12.3k"}, {123456, "123k"},
		{999_600, "1.00M"}, {1_234_567, "1.23M"}, {5e9, "5.00G"},
	} {
		assert.Equal(t, tc.want, fmtCount(tc.n), "%d", tc.n)
	}
	assert.Equal(t, "0.5", fmtRate(0.5))
	assert.Equal(t, "250", fmtRate(250))
	assert.Equal(t, "100k", fmtRate(1e5))
	assert.Equal(t, "12.5%", fmtPct(0.125))
}

// sampleReport builds a report with a fixed clock from a small workload:
// a serial console on two vCPUs, a little MMIO and the odd fallback.
func sampleReport() *Report {
	c := New(2, testNamer{}, opName)
	t0 := time.Unix(1_700_000_000, 0)
	c.SetStart(t0)
	for i := range 3000 {
		v := c.VCPU(i % 2)
		e := ioExit(vcpu.KindIOOut, 0, 0x3f8, 0, 1200+int64(i%50)*10, 4000)
		v.Observe(&e)
		e = ioExit(vcpu.KindIOIn, 0, 0x3fd, 5, 450+int64(i%7), 300)
		v.Observe(&e)
		e = ioExit(vcpu.KindIOIn, 0, 0x3fd, 5, 460, 250)
		v.Observe(&e)
	}
	for range 40 {
		e := ioExit(vcpu.KindIOOut, -1, 0x80, 0, 180, 2000)
		c.VCPU(0).Observe(&e)
	}
	for i := range 25 {
		e := vcpu.Exit{Kind: vcpu.KindMMIOWrite, Slot: -1, Addr: 0xfed00000, Size: 4, HandleNs: 2500 + int64(i)*100, RunNs: 1e6}
		c.VCPU(1).Observe(&e)
	}
	e := vcpu.Exit{Kind: vcpu.KindFallback, Op: 3, HandleNs: 35000, RunNs: 5e6}
	c.VCPU(0).Observe(&e)
	e = vcpu.Exit{Kind: vcpu.KindOther, Reason: kvm.ExitIRQWindowOpen, HandleNs: 90, RunNs: 700}
	c.VCPU(1).Observe(&e)
	for range 12 {
		e = vcpu.Exit{Kind: vcpu.KindIntr, HandleNs: 120, RunNs: 40e6}
		c.VCPU(1).Observe(&e)
	}
	c.Kick(1)
	c.Kick(1)
	for range 1500 {
		c.IRQ(4)
	}
	c.IRQ(8)
	c.EventFD("virtio-blk0 notify")
	return c.ReportAt(t0.Add(2 * time.Second))
}

func TestWriteTable(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, sampleReport().WriteTable(&buf))
	out := buf.String()
	t.Logf("\n%s", out)

	sections := strings.Split(strings.TrimSuffix(out, "\n"), "\n\n")
	require.Len(t, sections, 5, "headline, kinds, registers, vCPUs, counters")
	assert.Equal(t, "9.08k exits in 2.00s (4.54k/s) on 2 vCPUs; in KVM_RUN 524ms (13.1%), handling 7.21ms (0.2%)", sections[0])

	assert.Equal(t, `KIND        COUNT   TOTAL  SHARE    MEAN     P50     P90     P99     MAX
io-out      3.04k  4.34ms  60.2%  1.43µs  1.44µs  1.63µs  1.69µs  1.69µs
io-in       6.00k  2.74ms  38.0%   456ns   456ns   456ns   456ns   460ns
mmio-write     25  92.5µs   1.3%  3.70µs  3.65µs  4.74µs  4.90µs  4.90µs
fallback        1  35.0µs   0.5%  35.0µs  35.0µs  35.0µs  35.0µs  35.0µs
eintr          12  1.44µs   0.0%   120ns   120ns   120ns   120ns   120ns
other           1    90ns   0.0%    90ns    90ns    90ns    90ns    90ns`, sections[1], "kinds by total handling time")

	assert.Equal(t, `KIND        DEVICE     REGISTER         COUNT   TOTAL  SHARE    MEAN     P50     P90     P99     MAX
io-out      serial0    THR              3.00k  4.33ms  60.1%  1.45µs  1.44µs  1.63µs  1.69µs  1.69µs
io-in       serial0    LSR              6.00k  2.74ms  38.0%   456ns   456ns   456ns   456ns   460ns
mmio-write  unclaimed  0xfed00000          25  92.5µs   1.3%  3.70µs  3.65µs  4.74µs  4.90µs  4.90µs
fallback    -          movbe                1  35.0µs   0.5%  35.0µs  35.0µs  35.0µs  35.0µs  35.0µs
io-out      unclaimed  0x80                40  7.20µs   0.1%   180ns   180ns   180ns   180ns   180ns
other       -          IRQ_WINDOW_OPEN      1    90ns   0.0%    90ns    90ns    90ns    90ns    90ns`, sections[2], "registers by total handling time")

	assert.Equal(t, `VCPU  EXITS  EXITS/S  KVM_RUN   RUN%  HANDLING  HANDLE%  RUN P50  RUN P99  RUN MAX  KICKS
0     4.54k    2.27k   11.9ms   0.6%    3.57ms     0.2%    296ns   4.03µs   5.00ms      0
1     4.54k    2.27k    512ms  25.6%    3.64ms     0.2%    296ns   4.03µs   40.0ms      2
all   9.08k    4.54k    524ms  13.1%    7.21ms     0.2%    296ns   4.03µs   40.0ms      2`, sections[3], "per-vCPU summary")

	assert.Equal(t, "eintr 12, kicks 2\nirqs by gsi: 4: 1.50k, 8: 1\neventfd signals: virtio-blk0 notify: 1", sections[4])

	// Every table is aligned: right-aligned last columns end in the same
	// rune column on every line, whatever the units ("µs" is 2 bytes).
	for _, sec := range sections[1:4] {
		lines := strings.Split(sec, "\n")
		w := utf8.RuneCountInString(lines[0])
		for _, l := range lines {
			assert.Equal(t, w, utf8.RuneCountInString(l), "line %q", l)
			assert.Equal(t, strings.TrimRight(l, " "), l, "no trailing blanks")
		}
	}
}

func TestWriteTableEmpty(t *testing.T) {
	c := New(1, nil, nil)
	var buf bytes.Buffer
	require.NoError(t, c.Report().WriteTable(&buf))
	assert.Contains(t, buf.String(), "no exits yet")
	assert.Contains(t, buf.String(), "eintr 0, kicks 0")
}

func TestWriteTableManyRegisters(t *testing.T) {
	c := New(1, nil, nil)
	for a := range uint64(maxRegisterRows + 5) {
		e := vcpu.Exit{Kind: vcpu.KindMMIORead, Slot: -1, Addr: 0x1000 + a, HandleNs: 1000 - int64(a)}
		c.VCPU(0).Observe(&e)
	}
	var buf bytes.Buffer
	require.NoError(t, c.Report().WriteTable(&buf))
	assert.Contains(t, buf.String(), "(5 more rows: 5 exits, 4.84µs)\n")
	assert.NotContains(t, buf.String(), "0x1022", "the smallest rows are folded")
}
