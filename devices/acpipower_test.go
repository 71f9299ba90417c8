package devices

import (
	"encoding/binary"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
)

type acpiCalls struct{ poweroffs, resets int }

func newTestACPIPower() (*ACPIPower, *acpiCalls) {
	c := &acpiCalls{}
	return NewACPIPower(func() { c.poweroffs++ }, func() { c.resets++ }), c
}

func outw(d Device, off uint64, v uint16) {
	d.Write(off, binary.LittleEndian.AppendUint16(nil, v))
}

func inw(d Device, off uint64) uint16 {
	var b [2]byte
	d.Read(off, b[:])
	return binary.LittleEndian.Uint16(b[:])
}

func TestACPIPowerSleep(t *testing.T) {
	slp := func(typ uint16) uint16 { return typ<<acpiSlpTypShift | acpiSlpEn }
	tests := []struct {
		name    string
		value   uint16 // written to PM1 control
		want    acpiCalls
		wantWak bool
	}{
		{"S5", slp(ACPISleepTypeS5), acpiCalls{poweroffs: 1}, false},
		{"S5 as Linux writes it, with SCI_EN", 0x3401, acpiCalls{poweroffs: 1}, false},
		{"S5 with reserved bits", slp(ACPISleepTypeS5) | 0xC3FC, acpiCalls{poweroffs: 1}, false},
		{"S5 without SLP_EN", ACPISleepTypeS5 << acpiSlpTypShift, acpiCalls{}, false},
		{"S3 is not entered", slp(3), acpiCalls{}, true},
		{"S0", slp(0), acpiCalls{}, true},
		{"type 7", slp(7), acpiCalls{}, true},
		{"no SLP_EN", 0xDFFF, acpiCalls{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, calls := newTestACPIPower()
			outw(a, acpiPM1Control, tt.value)
			assert.Equal(t, tt.want, *calls)
			sts := inw(a, acpiPM1Status)
			assert.Equal(t, tt.wantWak, sts&acpiWakSts != 0, "PM1 status = %#x", sts)
		})
	}
}

func TestACPIPowerLinuxPoweroff(t *testing.T) {
	// ACPICA's acpi_hw_legacy_sleep: clear WAK_STS, read PM1 control, write
	// it with SLP_TYP, then with SLP_TYP and SLP_EN.
	a, calls := newTestACPIPower()
	outw(a, acpiPM1Status, acpiWakSts)
	cnt := inw(a, acpiPM1Control)
	assert.Equal(t, uint16(acpiSCIEn), cnt)
	cnt = cnt&^(acpiSlpTypMask|acpiSlpEn) | ACPISleepTypeS5<<acpiSlpTypShift
	outw(a, acpiPM1Control, cnt)
	assert.Equal(t, uint16(0x1401), cnt)
	assert.Equal(t, acpiCalls{}, *calls, "SLP_TYP alone does nothing")
	assert.Equal(t, uint16(0x1401), inw(a, acpiPM1Control), "SLP_TYP reads back")
	outw(a, acpiPM1Control, cnt|acpiSlpEn)
	assert.Equal(t, acpiCalls{poweroffs: 1}, *calls)
	assert.Equal(t, uint16(0x1401), inw(a, acpiPM1Control), "SLP_EN reads 0")

	// SLP_TYP and SLP_EN share the high byte: a byte write powers off too.
	outb(a, acpiPM1Control+1, 0x34)
	assert.Equal(t, acpiCalls{poweroffs: 2}, *calls)
}

func TestACPIPowerWakeStatus(t *testing.T) {
	a, _ := newTestACPIPower()
	assert.Zero(t, inw(a, acpiPM1Status))
	outw(a, acpiPM1Control, 3<<acpiSlpTypShift|acpiSlpEn)
	assert.Equal(t, uint16(acpiWakSts), inw(a, acpiPM1Status))
	outw(a, acpiPM1Status, 0x7FFF)
	assert.Equal(t, uint16(acpiWakSts), inw(a, acpiPM1Status), "writing 0 to WAK_STS leaves it")
	outb(a, acpiPM1Status+1, 0x80)
	assert.Zero(t, inw(a, acpiPM1Status), "writing 1 clears WAK_STS")
	outw(a, acpiPM1Status, 0xFFFF)
	assert.Zero(t, inw(a, acpiPM1Status), "no other status bit is ever set")
}

func TestACPIPowerEnable(t *testing.T) {
	a, calls := newTestACPIPower()
	assert.Zero(t, inw(a, acpiPM1Enable))
	// ACPICA's acpi_enable_event(ACPI_EVENT_GLOBAL): set GBL_EN, read it
	// back.
	outw(a, acpiPM1Enable, 1<<5)
	assert.Equal(t, uint16(1<<5), inw(a, acpiPM1Enable), "GBL_EN sticks")
	outw(a, acpiPM1Enable, 0xFFFF)
	assert.Equal(t, uint16(0x4721), inw(a, acpiPM1Enable), "defined bits only")
	outb(a, acpiPM1Enable+1, 0)
	assert.Equal(t, uint16(0x0021), inw(a, acpiPM1Enable), "a byte write changes its half only")
	assert.Zero(t, inw(a, acpiPM1Status), "enables raise no status")
	assert.Equal(t, acpiCalls{}, *calls)
}

func TestACPIPowerControl(t *testing.T) {
	a, _ := newTestACPIPower()
	assert.Equal(t, uint16(acpiSCIEn), inw(a, acpiPM1Control), "SCI_EN reads 1")
	outw(a, acpiPM1Control, 0)
	assert.Equal(t, uint16(acpiSCIEn), inw(a, acpiPM1Control), "SCI_EN cannot be cleared")
	outw(a, acpiPM1Control, 0xDFFF)
	assert.Equal(t, uint16(0x1C03), inw(a, acpiPM1Control), "BM_RLD and SLP_TYP stick, GBL_RLS and reserved bits read 0")
}

func TestACPIPowerReset(t *testing.T) {
	tests := []struct {
		name   string
		offset uint64
		data   []byte
		want   acpiCalls
	}{
		{"reset", acpiReset, []byte{ACPIResetValue}, acpiCalls{resets: 1}},
		{"other reset value", acpiReset, []byte{0x06}, acpiCalls{}},
		{"16-bit at the reset register", acpiReset, []byte{ACPIResetValue, 0}, acpiCalls{resets: 1}},
		{"reserved byte", acpiReset + 1, []byte{ACPIResetValue}, acpiCalls{}},
		{"beyond the registers", ACPIPowerSize, []byte{ACPIResetValue}, acpiCalls{}},
		// Misaligned: SLP_EN|SLP_TYP=5 at 0x605, the reset value at 0x606.
		{"16-bit across PM1 control and reset", acpiPM1Control + 1, []byte{0x34, ACPIResetValue}, acpiCalls{poweroffs: 1, resets: 1}},
		{"32-bit at PM1 control", acpiPM1Control, []byte{0x01, 0x34, ACPIResetValue, 0xFF}, acpiCalls{poweroffs: 1, resets: 1}},
		{"wraps around offset 0", ^uint64(0), []byte{ACPIResetValue, ACPIResetValue}, acpiCalls{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, calls := newTestACPIPower()
			a.Write(tt.offset, tt.data)
			assert.Equal(t, tt.want, *calls)
		})
	}
	NewACPIPower(nil, nil).Write(acpiPM1Control, []byte{0x01, 0x34, ACPIResetValue})
}

func TestACPIPowerReads(t *testing.T) {
	a, _ := newTestACPIPower()
	buf := make([]byte, 10)
	a.Read(0, buf)
	assert.Equal(t, []byte{0, 0, 0, 0, acpiSCIEn, 0, 0, 0xFF, 0xFF, 0xFF}, buf)
	var d [4]byte
	a.Read(3, d[:])
	assert.Equal(t, []byte{0, acpiSCIEn, 0, 0}, d[:], "misaligned 32-bit read")
	a.Read(^uint64(0), d[:2])
	assert.Equal(t, []byte{0xFF, 0xFF}, d[:2])
	a.Read(0, nil)

	for off, want := range []string{"PM1_STS", "PM1_STS", "PM1_EN", "PM1_EN", "PM1_CNT", "PM1_CNT", "RESET", "", ""} {
		assert.Equal(t, want, a.RegisterName(uint64(off), true), "offset %d", off)
	}
}

func TestACPIPowerCallbacksUnlocked(t *testing.T) {
	// Callbacks run without the device lock: one that reads the device
	// (as a VMM dumping state might) must not deadlock.
	var a *ACPIPower
	var got uint16
	a = NewACPIPower(func() { got = inw(a, acpiPM1Control) }, func() { inw(a, acpiPM1Status) })
	a.Write(acpiPM1Control, []byte{0x01, 0x34, ACPIResetValue})
	assert.Equal(t, uint16(0x1401), got)
}

func TestACPIPowerConcurrent(t *testing.T) {
	var mu sync.Mutex
	var offs int
	a := NewACPIPower(func() { mu.Lock(); offs++; mu.Unlock() }, nil)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				outw(a, acpiPM1Enable, uint16(j))
				outw(a, acpiPM1Control, 0x3401)
				outw(a, acpiPM1Control, 0x2C01)
				outw(a, acpiPM1Status, acpiWakSts)
				inw(a, acpiPM1Status)
				a.RegisterName(uint64(j%8), true)
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, 4*200, offs)
}

func FuzzACPIPower(f *testing.F) {
	f.Add([]byte{0x48, 0x00, 0x80, 0x4C, 0x01, 0x14, 0x4C, 0x01, 0x34, 0x08})
	f.Fuzz(func(t *testing.T, in []byte) {
		a, calls := newTestACPIPower()
		decodeFuzzOps(in, func(op fuzzOp) {
			if op.kind == fuzzHost {
				return
			}
			before := *calls
			var wantOff, wantReset int
			if op.kind == fuzzWrite {
				for i, v := range op.data {
					switch off := op.offset + uint64(i); {
					case op.offset >= ACPIPowerSize || off >= ACPIPowerSize:
					case off == acpiPM1Control+1 && v&0x3C == 0x34: // SLP_EN, SLP_TYP 5
						wantOff++
					case off == acpiReset && v == ACPIResetValue:
						wantReset++
					}
				}
				a.Write(op.offset, op.data)
			} else {
				a.Read(op.offset, op.data)
				for i, v := range op.data {
					off := op.offset + uint64(i)
					if op.offset >= ACPIPowerSize || off >= ACPIPowerSize || off == acpiReset+1 {
						if v != 0xFF {
							t.Fatalf("read %#x at offset %#x, want 0xFF", v, off)
						}
					}
				}
			}
			if calls.poweroffs-before.poweroffs != wantOff || calls.resets-before.resets != wantReset {
				t.Fatalf("write %x at %#x: %d poweroffs, %d resets; want %d, %d", op.data, op.offset,
					calls.poweroffs-before.poweroffs, calls.resets-before.resets, wantOff, wantReset)
			}
			// Register invariants after every access.
			if sts := inw(a, acpiPM1Status); sts&^acpiWakSts != 0 {
				t.Fatalf("PM1 status %#x: only WAK_STS can be set", sts)
			}
			if en := inw(a, acpiPM1Enable); en&^acpiPM1EnableBits != 0 {
				t.Fatalf("PM1 enable %#x: reserved bits set", en)
			}
			if cnt := inw(a, acpiPM1Control); cnt&acpiSCIEn == 0 || cnt&^(acpiSCIEn|acpiPM1ControlStored) != 0 {
				t.Fatalf("PM1 control %#x: SCI_EN clear or write-only/reserved bits set", cnt)
			}
			if r := inb(a, acpiReset); r != 0 {
				t.Fatalf("reset register reads %#x", r)
			}
		})
	})
}
