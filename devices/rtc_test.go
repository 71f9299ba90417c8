package devices

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func cmosRead(r *RTC, index byte) byte {
	outb(r, rtcIndexPort, index)
	return inb(r, rtcDataPort)
}

func cmosWrite(r *RTC, index, v byte) {
	outb(r, rtcIndexPort, index)
	outb(r, rtcDataPort, v)
}

// rtcTestTime is a Thursday afternoon in a leap year, in a zone other than
// UTC to check that the RTC runs on UTC.
var rtcTestTime = time.Date(2024, time.February, 29, 13, 45, 7, 500_000_000, time.UTC).In(time.FixedZone("X", -5*3600))

func newTestRTC() (*RTC, *fakeClock) {
	c := &fakeClock{t: rtcTestTime}
	return NewRTC(c.now), c
}

func TestRTCTimeFormats(t *testing.T) {
	tests := []struct {
		name string
		regB byte
		// seconds, minutes, hours, weekday, day, month, year, century
		want [8]byte
	}{
		{"24h BCD", rtc24H, [8]byte{0x07, 0x45, 0x13, 5, 0x29, 0x02, 0x24, 0x20}},
		{"24h binary", rtc24H | rtcDM, [8]byte{7, 45, 13, 5, 29, 2, 24, 20}},
		{"12h BCD", 0, [8]byte{0x07, 0x45, 0x81, 5, 0x29, 0x02, 0x24, 0x20}},
		{"12h binary", rtcDM, [8]byte{7, 45, 0x81, 5, 29, 2, 24, 20}},
	}
	indices := [8]byte{rtcSeconds, rtcMinutes, rtcHours, rtcWeekday, rtcDayOfMonth, rtcMonth, rtcYear, rtcCentury}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newTestRTC()
			cmosWrite(r, rtcRegB, tt.regB)
			assert.Equal(t, tt.regB, cmosRead(r, rtcRegB))
			var got [8]byte
			for i, idx := range indices {
				got[i] = cmosRead(r, idx)
			}
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestRTC12HourClock(t *testing.T) {
	tests := []struct {
		hour     int
		bcd, bin byte
	}{
		{0, 0x12, 12},
		{1, 0x01, 1},
		{11, 0x11, 11},
		{12, 0x92, 0x8C},
		{13, 0x81, 0x81},
		{23, 0x91, 0x8B},
	}
	for _, tt := range tests {
		c := &fakeClock{t: time.Date(2030, 1, 1, tt.hour, 0, 0, 0, time.UTC)}
		r := NewRTC(c.now)
		cmosWrite(r, rtcRegB, 0)
		assert.Equal(t, tt.bcd, cmosRead(r, rtcHours), "hour %d BCD", tt.hour)
		cmosWrite(r, rtcRegB, rtcDM)
		assert.Equal(t, tt.bin, cmosRead(r, rtcHours), "hour %d binary", tt.hour)

		// Writing the value back in the same mode keeps the hour.
		r = NewRTC(c.now)
		cmosWrite(r, rtcRegB, 0)
		cmosWrite(r, rtcHours, tt.bcd)
		cmosWrite(r, rtcRegB, rtc24H|rtcDM)
		assert.Equal(t, byte(tt.hour), cmosRead(r, rtcHours), "hour %d round trip", tt.hour)
	}
}

func TestRTCStatusRegisters(t *testing.T) {
	r, _ := newTestRTC()
	assert.Equal(t, byte(0x26), cmosRead(r, rtcRegA))
	assert.Equal(t, byte(0x02), cmosRead(r, rtcRegB))
	assert.Equal(t, byte(0x00), cmosRead(r, rtcRegC))
	assert.Equal(t, byte(0x80), cmosRead(r, rtcRegD))

	cmosWrite(r, rtcRegA, 0xFF)
	assert.Equal(t, byte(0x7F), cmosRead(r, rtcRegA), "UIP is read-only")
	cmosWrite(r, rtcRegC, 0xFF)
	cmosWrite(r, rtcRegD, 0x00)
	assert.Equal(t, byte(0x00), cmosRead(r, rtcRegC))
	assert.Equal(t, byte(0x80), cmosRead(r, rtcRegD))

	// Index bit 7 masks NMIs; it does not select a byte.
	outb(r, rtcIndexPort, rtcNMIMask|rtcRegD)
	assert.Equal(t, byte(0x80), inb(r, rtcDataPort))
	assert.Equal(t, byte(0xFF), inb(r, rtcIndexPort), "the index port is write-only")
}

func TestRTCSetTime(t *testing.T) {
	r, c := newTestRTC()
	// As Linux's mc146818_set_time: SET, divider reset, fields, restore.
	cmosWrite(r, rtcRegB, rtc24H|rtcSET|rtcUIE)
	assert.Equal(t, byte(rtc24H|rtcSET), cmosRead(r, rtcRegB), "SET clears UIE")
	cmosWrite(r, rtcRegA, 0x70|0x06)
	cmosWrite(r, rtcYear, 0x99)
	cmosWrite(r, rtcMonth, 0x12)
	cmosWrite(r, rtcDayOfMonth, 0x31)
	cmosWrite(r, rtcHours, 0x23)
	cmosWrite(r, rtcMinutes, 0x59)
	cmosWrite(r, rtcSeconds, 0x58)
	cmosWrite(r, rtcCentury, 0x19)

	// Frozen while SET is held.
	c.advance(time.Hour)
	assert.Equal(t, byte(0x58), cmosRead(r, rtcSeconds))
	assert.Equal(t, byte(0x19), cmosRead(r, rtcCentury))

	cmosWrite(r, rtcRegB, rtc24H)
	cmosWrite(r, rtcRegA, 0x26)
	c.advance(3 * time.Second)
	want := map[byte]byte{
		rtcSeconds: 0x01, rtcMinutes: 0x00, rtcHours: 0x00, rtcWeekday: 0x07, // Saturday
		rtcDayOfMonth: 0x01, rtcMonth: 0x01, rtcYear: 0x00, rtcCentury: 0x20,
	}
	for idx, v := range want {
		assert.Equal(t, v, cmosRead(r, idx), "CMOS %#x", idx)
	}
}

func TestRTCWriteFieldWhileRunning(t *testing.T) {
	r, c := newTestRTC()
	cmosWrite(r, rtcRegB, rtc24H|rtcDM)
	cmosWrite(r, rtcMinutes, 10)
	cmosWrite(r, rtcYear, 30)
	c.advance(61 * time.Second)
	assert.Equal(t, byte(8), cmosRead(r, rtcSeconds))
	assert.Equal(t, byte(11), cmosRead(r, rtcMinutes))
	assert.Equal(t, byte(13), cmosRead(r, rtcHours))
	assert.Equal(t, byte(30), cmosRead(r, rtcYear))
	assert.Equal(t, byte(20), cmosRead(r, rtcCentury))
	assert.Equal(t, byte(3), cmosRead(r, rtcMonth), "2030 is no leap year: Feb 29 is Mar 1")
	assert.Equal(t, byte(1), cmosRead(r, rtcDayOfMonth))
}

func TestRTCInvalidFieldsNormalise(t *testing.T) {
	r, _ := newTestRTC()
	cmosWrite(r, rtcRegB, rtc24H|rtcSET)
	cmosWrite(r, rtcMonth, 0xFF) // BCD "15 15": 165
	cmosWrite(r, rtcDayOfMonth, 0x00)
	cmosWrite(r, rtcHours, 0x99)
	cmosWrite(r, rtcRegB, rtc24H)
	for idx := range byte(0x10) {
		cmosRead(r, idx)
	}
	// Still a valid BCD date.
	for _, idx := range []byte{rtcSeconds, rtcMinutes, rtcHours, rtcDayOfMonth, rtcMonth, rtcYear} {
		v := cmosRead(r, idx)
		assert.LessOrEqual(t, v&0x0F, byte(9), "CMOS %#x = %#x", idx, v)
		assert.LessOrEqual(t, v>>4, byte(9), "CMOS %#x = %#x", idx, v)
	}
}

func TestRTCRAM(t *testing.T) {
	r, _ := newTestRTC()
	for _, idx := range []byte{rtcSecondsAlarm, rtcMinutesAlarm, rtcHoursAlarm, 0x0E, 0x40, 0x7F} {
		cmosWrite(r, idx, idx^0xA5)
	}
	for _, idx := range []byte{rtcSecondsAlarm, rtcMinutesAlarm, rtcHoursAlarm, 0x0E, 0x40, 0x7F} {
		assert.Equal(t, idx^0xA5, cmosRead(r, idx), "CMOS %#x", idx)
	}
	// Index 0xC0 is 0x40 with NMIs masked.
	assert.Equal(t, byte(0x40^0xA5), cmosRead(r, 0xC0))
}

func TestRTCWideAccess(t *testing.T) {
	r, _ := newTestRTC()
	// outw(0x70, data<<8 | index) sets the index and writes the data.
	r.Write(0, []byte{0x50, 0x77})
	assert.Equal(t, byte(0x77), cmosRead(r, 0x50))
	buf := make([]byte, 4)
	r.Read(0, buf)
	assert.Equal(t, []byte{0xFF, 0x77, 0xFF, 0xFF}, buf)
	r.Write(2, []byte{0x51})
	r.Write(^uint64(0), []byte{0x51, 0x00})
	assert.Equal(t, byte(0x77), cmosRead(r, 0x50))
	assert.Equal(t, "INDEX", r.RegisterName(0, true))
	assert.Equal(t, "DATA", r.RegisterName(1, false))
	assert.Empty(t, r.RegisterName(2, false))
}

func TestRTCDefaultClock(t *testing.T) {
	r := NewRTC(nil)
	cmosWrite(r, rtcRegB, rtc24H|rtcDM)
	before := time.Now().UTC()
	year := int(cmosRead(r, rtcCentury))*100 + int(cmosRead(r, rtcYear))
	require.InDelta(t, before.Year(), year, 1)
}

func FuzzRTC(f *testing.F) {
	f.Add([]byte{0x40, 0x0B, 0x41, 0x86, 0x40, 0x09, 0x41, 0x99, 0x40, 0x0B, 0x41, 0x06, 0x01})
	f.Fuzz(func(t *testing.T, in []byte) {
		c := &fakeClock{t: rtcTestTime}
		r := NewRTC(c.now)
		decodeFuzzOps(in, func(op fuzzOp) {
			switch op.kind {
			case fuzzRead:
				r.Read(op.offset, op.data)
			case fuzzWrite:
				r.Write(op.offset, op.data)
			case fuzzHost:
				c.advance(time.Duration(op.arg) * 37 * time.Hour)
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.index > rtcIndexMask {
				t.Fatalf("index %#x beyond CMOS", r.index)
			}
			if r.regA&rtcUIP != 0 {
				t.Fatal("UIP set")
			}
			if v := r.readCMOS(rtcRegD); v != rtcVRT {
				t.Fatalf("register D = %#x", v)
			}
			if v := r.readCMOS(rtcRegC); v != 0 {
				t.Fatalf("register C = %#x", v)
			}
			if r.regB&rtcSET == 0 {
				if tm := r.current(); tm.year < 0 || tm.year > 1_000_000 {
					t.Fatalf("year %d", tm.year)
				}
			}
		})
	})
}
