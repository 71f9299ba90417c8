package devices

import (
	"sync"
	"time"
)

// Offsets of the RTC's two ports from its base (0x70): the index port
// selects a CMOS byte, the data port reads or writes it.
const (
	rtcIndexPort = 0
	rtcDataPort  = 1

	// RTCSize is the size to insert an RTC with, at 0x70.
	RTCSize = 2

	// rtcIndexMask selects a CMOS byte; bit 7 of the index port is the
	// PC's NMI mask, not part of the address.
	rtcIndexMask = 0x7F
	rtcNMIMask   = 0x80
)

// CMOS byte indices (Motorola MC146818A datasheet, "Address Map"; the
// century byte is the IBM PC AT convention that ACPI's FADT CENTURY field
// points at).
const (
	rtcSeconds      = 0x00
	rtcSecondsAlarm = 0x01
	rtcMinutes      = 0x02
	rtcMinutesAlarm = 0x03
	rtcHours        = 0x04
	rtcHoursAlarm   = 0x05
	rtcWeekday      = 0x06 // 1-7, Sunday is 1
	rtcDayOfMonth   = 0x07
	rtcMonth        = 0x08
	rtcYear         = 0x09 // 0-99
	rtcRegA         = 0x0A
	rtcRegB         = 0x0B
	rtcRegC         = 0x0C
	rtcRegD         = 0x0D
	rtcCentury      = 0x32

	// RTCCenturyIndex is the CMOS index of the century byte, for the
	// FADT CENTURY field.
	RTCCenturyIndex = rtcCentury
)

// Register A bits (MC146818A, "Register A").
const (
	// rtcUIP, update in progress, is read-only. Updates are never in
	// progress here: reads compute the time from the clock at once.
	rtcUIP = 0x80
	// rtcRegADefault selects the 32.768 kHz time base (DV2-0 = 010) and a
	// 1024 Hz periodic rate (RS3-0 = 0110), as PC firmware programs it.
	rtcRegADefault = 0x26
)

// Register B bits (MC146818A, "Register B").
const (
	rtcSET  = 0x80 // halt updates so the time can be set
	rtcPIE  = 0x40 // periodic interrupt enable
	rtcAIE  = 0x20 // alarm interrupt enable
	rtcUIE  = 0x10 // update-ended interrupt enable
	rtcSQWE = 0x08 // square-wave enable
	rtcDM   = 0x04 // data mode: 1 binary, 0 BCD
	rtc24H  = 0x02 // 1: 24-hour mode; 0: 12-hour mode with bit 7 of hours = PM
	rtcDSE  = 0x01 // daylight savings enable

	// rtcRegBDefault is 24-hour BCD, what PC firmware leaves and what
	// Linux's rtc-cmos expects.
	rtcRegBDefault = rtc24H

	// rtcHourPM is bit 7 of the hours byte in 12-hour mode.
	rtcHourPM = 0x80
)

// Register D bits (MC146818A, "Register D").
const rtcVRT = 0x80 // valid RAM and time: the battery is fine

// RTC is a Motorola MC146818A real-time clock with its 128 bytes of CMOS
// RAM, as found at ports 0x70 (index) and 0x71 (data) of a PC.
//
// The time is the clock function's time (UTC) plus an offset the guest sets
// by writing the time registers, so it advances while the guest is stopped
// and never drifts from the host. Register B's data mode (BCD or binary) and
// 12/24-hour mode are honoured for both reads and writes. While the guest
// holds register B's SET bit, the time registers are frozen and writes
// collect in them; clearing SET starts the clock from what was written, as
// Linux's mc146818_set_time expects. Fields written out of range are
// normalised (day 32 of a month is the first of the next).
//
// No interrupt is raised: register C always reads 0 (no periodic, alarm or
// update-ended event flagged) and the alarm bytes are plain RAM. The weekday
// byte is derived from the date; writes to it are ignored.
//
// RTC is safe for concurrent use.
type RTC struct {
	now func() time.Time

	mu sync.Mutex
	// index is the selected CMOS byte, masked to 7 bits.
	index byte
	// nmiMasked is bit 7 of the last index write. It has no effect: NMIs
	// are the VMM's business, not the RTC's.
	nmiMasked bool
	regA      byte
	regB      byte
	// ram backs the CMOS bytes that are not clock registers.
	ram [128]byte
	// offset is the guest's time minus the clock's, in seconds.
	offset int64
	// frozen holds the time registers while regB has SET.
	frozen rtcTime
}

// rtcTime is the broken-down time behind the clock registers.
type rtcTime struct {
	sec, min, hour  int // hour is 0-23
	mday, mon, year int // year includes the century
	wday            int // 1-7, Sunday is 1
}

// NewRTC returns an RTC that reads the time from now, or from time.Now if
// now is nil.
func NewRTC(now func() time.Time) *RTC {
	if now == nil {
		now = time.Now
	}
	return &RTC{
		now:  now,
		regA: rtcRegADefault,
		regB: rtcRegBDefault,
	}
}

// Read implements Device.Read.
func (r *RTC) Read(offset uint64, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range data {
		off := offset + uint64(i)
		switch {
		case offset >= RTCSize || off >= RTCSize:
			data[i] = 0xFF
		case off == rtcIndexPort:
			// The index port is write-only on PC chipsets.
			data[i] = 0xFF
		default:
			data[i] = r.readCMOS(r.index)
		}
	}
}

// Write implements Device.Write. A 16-bit write at the index port sets the
// index and then writes the data byte, as the ISA bus would split it.
func (r *RTC) Write(offset uint64, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, v := range data {
		off := offset + uint64(i)
		switch {
		case offset >= RTCSize || off >= RTCSize:
		case off == rtcIndexPort:
			r.index = v & rtcIndexMask
			r.nmiMasked = v&rtcNMIMask != 0
		default:
			r.writeCMOS(r.index, v)
		}
	}
}

// RegisterName implements RegisterNamer.
func (r *RTC) RegisterName(offset uint64, write bool) string {
	switch offset {
	case rtcIndexPort:
		return "INDEX"
	case rtcDataPort:
		return "DATA"
	}
	return ""
}

// readCMOS reads CMOS byte i (< 128), with r.mu held.
func (r *RTC) readCMOS(i byte) byte {
	switch i {
	case rtcSeconds, rtcMinutes, rtcHours, rtcWeekday, rtcDayOfMonth, rtcMonth, rtcYear, rtcCentury:
		t := r.current()
		switch i {
		case rtcSeconds:
			return r.encode(t.sec)
		case rtcMinutes:
			return r.encode(t.min)
		case rtcHours:
			return r.encodeHour(t.hour)
		case rtcWeekday:
			return r.encode(t.wday)
		case rtcDayOfMonth:
			return r.encode(t.mday)
		case rtcMonth:
			return r.encode(t.mon)
		case rtcYear:
			return r.encode(t.year)
		default:
			return r.encode(t.year / 100)
		}
	case rtcRegA:
		return r.regA
	case rtcRegB:
		return r.regB
	case rtcRegC:
		// Reading C clears its flags; none are ever set.
		return 0
	case rtcRegD:
		return rtcVRT
	}
	return r.ram[i&rtcIndexMask]
}

// writeCMOS writes v to CMOS byte i (< 128), with r.mu held.
func (r *RTC) writeCMOS(i, v byte) {
	switch i {
	case rtcSeconds, rtcMinutes, rtcHours, rtcDayOfMonth, rtcMonth, rtcYear, rtcCentury:
		t := r.current()
		switch i {
		case rtcSeconds:
			t.sec = r.decode(v)
		case rtcMinutes:
			t.min = r.decode(v)
		case rtcHours:
			t.hour = r.decodeHour(v)
		case rtcDayOfMonth:
			t.mday = r.decode(v)
		case rtcMonth:
			t.mon = r.decode(v)
		case rtcYear:
			t.year = t.year - mod(t.year, 100) + r.decode(v)
		default:
			t.year = r.decode(v)*100 + mod(t.year, 100)
		}
		if r.regB&rtcSET != 0 {
			r.frozen = t
		} else {
			r.start(t)
		}
	case rtcWeekday:
		// Derived from the date.
	case rtcRegA:
		r.regA = v &^ rtcUIP
	case rtcRegB:
		wasSet := r.regB&rtcSET != 0
		if v&rtcSET != 0 {
			if !wasSet {
				r.frozen = r.current()
			}
			// "UIE is cleared to 0 when the SET bit goes high."
			v &^= rtcUIE
		}
		r.regB = v
		if wasSet && v&rtcSET == 0 {
			r.start(r.frozen)
		}
	case rtcRegC, rtcRegD:
		// Read-only.
	default:
		r.ram[i&rtcIndexMask] = v
	}
}

// current returns the time the registers show, with r.mu held.
func (r *RTC) current() rtcTime {
	if r.regB&rtcSET != 0 {
		return r.frozen
	}
	t := time.Unix(r.now().Unix()+r.offset, 0).UTC()
	return rtcTime{
		sec:  t.Second(),
		min:  t.Minute(),
		hour: t.Hour(),
		mday: t.Day(),
		mon:  int(t.Month()),
		year: t.Year(),
		wday: int(t.Weekday()) + 1,
	}
}

// start makes the clock run from t now, with r.mu held. time.Date
// normalises out-of-range fields.
func (r *RTC) start(t rtcTime) {
	d := time.Date(t.year, time.Month(t.mon), t.mday, t.hour, t.min, t.sec, 0, time.UTC)
	r.offset = d.Unix() - r.now().Unix()
}

// encode converts a 0-99 field to register format: BCD unless register B
// selects binary (MC146818A, "Time, Calendar and Alarm Data Modes").
func (r *RTC) encode(v int) byte {
	v = mod(v, 100)
	if r.regB&rtcDM != 0 {
		return byte(v)
	}
	return byte(v/10<<4 | v%10)
}

// decode converts a register byte to a field value. Invalid BCD digits are
// taken at face value (0x1A is 20); the result is normalised later.
func (r *RTC) decode(v byte) int {
	if r.regB&rtcDM != 0 {
		return int(v)
	}
	return int(v>>4)*10 + int(v&0x0F)
}

// encodeHour converts an hour (0-23) to register format. In 12-hour mode
// hours run 12, 1, ..., 11 and bit 7 is set after noon.
func (r *RTC) encodeHour(h int) byte {
	if r.regB&rtc24H != 0 {
		return r.encode(h)
	}
	h12 := h % 12
	if h12 == 0 {
		h12 = 12
	}
	v := r.encode(h12)
	if h >= 12 {
		v |= rtcHourPM
	}
	return v
}

// decodeHour converts an hours byte to an hour (0-23).
func (r *RTC) decodeHour(v byte) int {
	if r.regB&rtc24H != 0 {
		return r.decode(v)
	}
	h := r.decode(v &^ rtcHourPM)
	if h == 12 {
		h = 0
	}
	if v&rtcHourPM != 0 {
		h += 12
	}
	return h
}

// mod is the non-negative remainder of a divided by b > 0.
func mod(a, b int) int {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}
