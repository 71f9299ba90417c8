package pci

import (
	"encoding/binary"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gvmm/gvmm/devices"
)

type region struct {
	mu     sync.Mutex
	writes []uint64
}

func (r *region) Read(off uint64, data []byte) { clear(data) }
func (r *region) Write(off uint64, data []byte) {
	r.mu.Lock()
	r.writes = append(r.writes, off)
	r.mu.Unlock()
}

type fakeVector struct {
	msgs     []MSIMessage
	triggers int
}

func (v *fakeVector) SetMessage(m MSIMessage) error { v.msgs = append(v.msgs, m); return nil }
func (v *fakeVector) Trigger() error                { v.triggers++; return nil }

const window = 0xC000_0000

func newRoot(t *testing.T) (*Root, *devices.Bus) {
	var mmio devices.Bus
	r, err := NewRoot(&mmio, window, window+0x1000_0000)
	require.NoError(t, err)
	return r, &mmio
}

// conf1 reads size bytes of bus 0 device dev's register reg through ports
// 0xCF8/0xCFC, as Linux's pci_conf1_read does.
func conf1(r *Root, dev, reg uint32, size int) uint32 {
	io := r.ConfigIO()
	var a [4]byte
	binary.LittleEndian.PutUint32(a[:], configEnable|dev<<11|reg&0xFC)
	io.Write(0, a[:])
	d := make([]byte, 4)
	io.Read(configDataOff+uint64(reg&3), d[:size])
	return binary.LittleEndian.Uint32(d)
}

func conf1Write(r *Root, dev, reg uint32, v uint32, size int) {
	io := r.ConfigIO()
	var a [4]byte
	binary.LittleEndian.PutUint32(a[:], configEnable|dev<<11|reg&0xFC)
	io.Write(0, a[:])
	var d [4]byte
	binary.LittleEndian.PutUint32(d[:], v)
	io.Write(configDataOff+uint64(reg&3), d[:size])
}

func ecamRead(r *Root, dev, reg uint32, size int) uint32 {
	d := make([]byte, 4)
	r.ECAM().Read(uint64(dev<<15|reg), d[:size])
	return binary.LittleEndian.Uint32(d)
}

func TestHostBridgeProbe(t *testing.T) {
	r, _ := newRoot(t)
	io := r.ConfigIO()
	// pci_check_type1: CONFIG_ADDRESS reads back what was written.
	var a [4]byte
	binary.LittleEndian.PutUint32(a[:], 0x80000000)
	io.Write(0, a[:])
	io.Read(0, a[:])
	assert.Equal(t, uint32(0x80000000), binary.LittleEndian.Uint32(a[:]))
	// Byte accesses at 0xCF8-0xCFB are not CONFIG_ADDRESS.
	io.Write(3, []byte{1})
	io.Read(0, a[:])
	assert.Equal(t, uint32(0x80000000), binary.LittleEndian.Uint32(a[:]))

	assert.Equal(t, uint32(hostBridgeDevice<<16|hostBridgeVendor), conf1(r, 0, 0, 4))
	assert.Equal(t, uint32(0x0600), conf1(r, 0, 0x0A, 2), "class host bridge")
	assert.Equal(t, uint32(0xFFFFFFFF), conf1(r, 5, 0, 4), "empty slot")
	assert.Equal(t, uint32(hostBridgeVendor), ecamRead(r, 0, 0, 2))
	assert.Equal(t, uint32(0xFFFF), ecamRead(r, 7, 0, 2))
	// Function 1 and bus 1 do not exist.
	d := make([]byte, 4)
	r.ECAM().Read(1<<12, d)
	assert.Equal(t, []byte{0xFF, 0xFF, 0xFF, 0xFF}, d)
	r.ECAM().Read(1<<20, d)
	assert.Equal(t, []byte{0xFF, 0xFF, 0xFF, 0xFF}, d)
	// Crossing the end of a function's space.
	r.ECAM().Read(0xFFE, d)
	assert.Equal(t, []byte{0xFF, 0xFF, 0xFF, 0xFF}, d)
	// With the enable bit clear, CONFIG_DATA reads all ones.
	binary.LittleEndian.PutUint32(a[:], 0)
	io.Write(0, a[:])
	io.Read(configDataOff, d)
	assert.Equal(t, []byte{0xFF, 0xFF, 0xFF, 0xFF}, d)
}

type vendorCap struct{ b [8]byte }

func (c *vendorCap) ID() uint8 { return 0x09 }
func (c *vendorCap) Size() int { return len(c.b) }
func (c *vendorCap) Read(off int, data []byte) {
	for i := range data {
		data[i] = c.b[off+i]
	}
}
func (c *vendorCap) Write(off int, data []byte) { copy(c.b[off:], data) }

func TestFunctionBARs(t *testing.T) {
	r, mmio := newRoot(t)
	reg32, reg64 := &region{}, &region{}
	cap1, cap2 := &vendorCap{}, &vendorCap{}
	cap1.b[2] = 0x42
	f, err := NewFunction(Header{VendorID: 0x1AF4, DeviceID: 0x1042, Revision: 1, Class: ClassStorageSCSI, InterruptPin: 1,
		SubsystemVendorID: 0x1AF4, SubsystemID: 0x1100},
		[]BAR{{Size: 0x4000, Region: reg32}, {}, {Size: 0x1000, Is64: true, Region: reg64}},
		[]Capability{cap1, cap2})
	require.NoError(t, err)
	var moves []string
	f.AddBARHook(func(bar int, addr uint64, mapped bool) {
		if mapped {
			moves = append(moves, "map")
		} else {
			moves = append(moves, "unmap")
		}
	})
	require.NoError(t, r.Add(3, f, "dev3"))
	assert.Equal(t, []string{"map", "map"}, moves)

	assert.Equal(t, uint32(0x1042_1AF4), conf1(r, 3, 0, 4))
	assert.Equal(t, uint32(StatusCapList), conf1(r, 3, RegStatus, 2))
	assert.Equal(t, uint32(CommandMemory|CommandBusMaster), conf1(r, 3, RegCommand, 2))
	assert.Equal(t, uint32(0x1100_1AF4), conf1(r, 3, RegSubsysVendor, 4))
	assert.Equal(t, uint32(1), conf1(r, 3, RegInterruptPin, 1))
	// Capability list: 0x40 -> 0x48 -> end.
	assert.Equal(t, uint32(0x40), conf1(r, 3, RegCapPtr, 1))
	assert.Equal(t, uint32(0x424809), conf1(r, 3, 0x40, 4)&0xFFFFFF)
	assert.Equal(t, uint32(0x0009), conf1(r, 3, 0x48, 2))
	assert.Equal(t, uint32(0x42), conf1(r, 3, 0x42, 1))
	conf1Write(r, 3, 0x40, 0xFFFF_FFFF, 4) // ID and next are read-only
	assert.Equal(t, uint32(0x4809), conf1(r, 3, 0x40, 2))
	assert.Equal(t, uint32(0x09), conf1(r, 3, 0x40, 1))
	assert.Equal(t, byte(0xFF), cap1.b[2])

	bar0 := conf1(r, 3, RegBAR0, 4)
	assert.Equal(t, uint32(window), bar0)
	dev, _, _, ok := mmio.Lookup(window + 0x10)
	require.True(t, ok)
	assert.Equal(t, devices.Device(reg32), dev)
	bar2 := uint64(conf1(r, 3, RegBAR0+8, 4)) | uint64(conf1(r, 3, RegBAR0+12, 4))<<32
	assert.Equal(t, uint64(window+0x4000|barMem64), bar2)

	// Sizing with decoding off, as Linux's __pci_read_base does.
	conf1Write(r, 3, RegCommand, 0, 2)
	assert.Equal(t, "unmap", moves[len(moves)-1])
	_, _, _, ok = mmio.Lookup(window + 0x10)
	assert.False(t, ok)
	conf1Write(r, 3, RegBAR0, 0xFFFF_FFFF, 4)
	assert.Equal(t, uint32(0xFFFF_C000), conf1(r, 3, RegBAR0, 4), "size 16 KiB")
	conf1Write(r, 3, RegBAR0+8, 0xFFFF_FFFF, 4)
	conf1Write(r, 3, RegBAR0+12, 0xFFFF_FFFF, 4)
	assert.Equal(t, uint32(0xFFFF_F000|barMem64), conf1(r, 3, RegBAR0+8, 4))
	assert.Equal(t, uint32(0xFFFF_FFFF), conf1(r, 3, RegBAR0+12, 4))
	conf1Write(r, 3, RegBAR0+4, 0xFFFF_FFFF, 4)
	assert.Equal(t, uint32(0), conf1(r, 3, RegBAR0+4, 4), "absent BAR")
	conf1Write(r, 3, RegExpansionROM, 0xFFFF_FFFF, 4)
	assert.Equal(t, uint32(0), conf1(r, 3, RegExpansionROM, 4), "no ROM")

	// Reprogram: BAR0 moves to 0xD0000000, BAR2 to 0x1_0000_0000.
	conf1Write(r, 3, RegBAR0, 0xD000_0000, 4)
	conf1Write(r, 3, RegBAR0+8, 0, 4)
	conf1Write(r, 3, RegBAR0+12, 1, 4)
	conf1Write(r, 3, RegCommand, CommandMemory, 2)
	_, _, _, ok = mmio.Lookup(window + 0x10)
	assert.False(t, ok, "old place")
	dev, off, _, ok := mmio.Lookup(0xD000_0010)
	require.True(t, ok)
	assert.Equal(t, devices.Device(reg32), dev)
	assert.Equal(t, uint64(0x10), off)
	dev, _, _, ok = mmio.Lookup(1 << 32)
	require.True(t, ok)
	assert.Equal(t, devices.Device(reg64), dev)
	_, addr := f.BAR(2)
	assert.Equal(t, uint64(1<<32), addr)

	// A BAR moved onto another one is not decoded.
	conf1Write(r, 3, RegBAR0, 0xFFFF_C000, 4)
	_, _, _, ok = mmio.Lookup(0xD000_0010)
	assert.False(t, ok)
	// Only 1-, 2- and 4-byte writes reach the command register; a
	// byte write leaves the other byte.
	conf1Write(r, 3, RegCommand+1, 0x04, 1)
	assert.Equal(t, uint32(CommandMemory|CommandINTxDisable), conf1(r, 3, RegCommand, 2))
}

func TestAddErrors(t *testing.T) {
	var mmio devices.Bus
	r, err := NewRoot(&mmio, window, window+0x2000)
	require.NoError(t, err)
	f, err := NewFunction(Header{}, []BAR{{Size: 0x4000, Region: &region{}}}, nil)
	require.NoError(t, err)
	assert.ErrorContains(t, r.Add(1, f, "big"), "does not fit")
	assert.ErrorContains(t, r.Add(0, f, "x"), "taken")
	assert.Error(t, r.Add(32, f, "x"))

	for _, bars := range [][]BAR{
		{{Size: 8, Region: &region{}}},
		{{Size: 0x3000, Region: &region{}}},
		{{Size: 0x1000}},
		{{}, {}, {}, {}, {}, {Size: 0x1000, Is64: true, Region: &region{}}},
		{{Size: 0x1000, Is64: true, Region: &region{}}, {Size: 0x1000, Region: &region{}}},
		make([]BAR, 7),
	} {
		_, err := NewFunction(Header{}, bars, nil)
		assert.Error(t, err)
	}
	_, err = NewFunction(Header{}, nil, []Capability{&vendorCap{}, &bigCap{}})
	assert.Error(t, err)
}

type bigCap struct{ vendorCap }

func (*bigCap) Size() int { return 0xC0 }

func TestMSIX(t *testing.T) {
	vecs := []*fakeVector{{}, {}}
	m, err := NewMSIX([]MSIVector{vecs[0], vecs[1]}, 0, 0x1000, 0x1800)
	require.NoError(t, err)
	f, err := NewFunction(Header{}, []BAR{{Size: 0x2000, Region: &region{}}}, []Capability{m})
	require.NoError(t, err)

	c := make([]byte, 12)
	f.ReadConfig(0x40, c)
	assert.Equal(t, byte(CapIDMSIX), c[0])
	assert.Equal(t, uint16(1), binary.LittleEndian.Uint16(c[2:]), "table size - 1, disabled")
	assert.Equal(t, uint32(0x1000), binary.LittleEndian.Uint32(c[4:]))
	assert.Equal(t, uint32(0x1800), binary.LittleEndian.Uint32(c[8:]))

	assert.False(t, m.Notify(0), "disabled: INTx")
	f.WriteConfig(0x42, []byte{0x01, 0x80}) // enable
	assert.True(t, m.Enabled())

	// Entries start masked: Notify leaves the vector pending.
	assert.True(t, m.Notify(1))
	assert.Zero(t, vecs[1].triggers)
	pba := make([]byte, 8)
	m.ReadPBA(0, pba)
	assert.Equal(t, byte(2), pba[0])

	entry := func(i int, addr uint64, data, ctrl uint32) {
		var b [16]byte
		binary.LittleEndian.PutUint64(b[0:], addr)
		binary.LittleEndian.PutUint32(b[8:], data)
		m.WriteTable(uint64(16*i), b[:8])
		m.WriteTable(uint64(16*i+8), b[8:12])
		m.WriteTable(uint64(16*i+12), b[12:16])
	}
	entry(1, 0xFEE0_0000, 0x41, 0) // program and unmask: the pending one fires
	assert.Equal(t, 1, vecs[1].triggers)
	assert.Equal(t, []MSIMessage{{Address: 0xFEE0_0000, Data: 0x41}}, vecs[1].msgs)
	m.ReadPBA(0, pba)
	assert.Equal(t, byte(0), pba[0])

	assert.True(t, m.Notify(1))
	assert.Equal(t, 2, vecs[1].triggers)
	assert.Len(t, vecs[1].msgs, 1, "unchanged message: no new route")

	tbl := make([]byte, 4)
	m.ReadTable(16+8, tbl)
	assert.Equal(t, uint32(0x41), binary.LittleEndian.Uint32(tbl))
	m.ReadTable(16+9, tbl)
	assert.Equal(t, uint32(0), binary.LittleEndian.Uint32(tbl), "misaligned reads 0")
	m.ReadTable(16*5, tbl)
	assert.Equal(t, uint32(0), binary.LittleEndian.Uint32(tbl), "past the table")
	m.WriteTable(16*5, tbl) // past the table: dropped

	// Function mask.
	f.WriteConfig(0x43, []byte{0xC0})
	assert.True(t, m.Notify(1))
	assert.Equal(t, 2, vecs[1].triggers)
	f.WriteConfig(0x43, []byte{0x80})
	assert.Equal(t, 3, vecs[1].triggers, "pending delivered on function unmask")

	assert.False(t, m.Notify(2), "no such vector")
	assert.False(t, m.Notify(-1))
	_, err = NewMSIX(nil, 0, 0, 0)
	assert.Error(t, err)
	_, err = NewMSIX([]MSIVector{vecs[0]}, 0, 4, 0)
	assert.Error(t, err)
}

func TestINTxGSI(t *testing.T) {
	assert.Equal(t, uint32(17), INTxGSI(1, 1))
	assert.Equal(t, uint32(16), INTxGSI(8, 1))
	assert.Equal(t, uint32(18), INTxGSI(1, 2))
}
