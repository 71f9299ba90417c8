package devices

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// nopDevice is a Device that does nothing; id tells instances apart.
type nopDevice struct{ id int }

func (*nopDevice) Read(uint64, []byte)  {}
func (*nopDevice) Write(uint64, []byte) {}

func TestBusInsert(t *testing.T) {
	type insert struct {
		name       string
		base, size uint64
		wantErr    bool
	}
	tests := []struct {
		name    string
		inserts []insert
	}{
		{"disjoint", []insert{{"a", 0x10, 0x10, false}, {"b", 0x30, 0x10, false}, {"c", 0x00, 0x10, false}}},
		{"adjacent below and above", []insert{{"a", 0x10, 0x10, false}, {"b", 0x20, 0x10, false}, {"c", 0x0, 0x10, false}}},
		{"zero size", []insert{{"a", 0x10, 0, true}}},
		{"same base", []insert{{"a", 0x10, 0x10, false}, {"b", 0x10, 1, true}}},
		{"overlaps end of previous", []insert{{"a", 0x10, 0x10, false}, {"b", 0x1F, 0x10, true}}},
		{"overlaps start of next", []insert{{"a", 0x10, 0x10, false}, {"b", 0x08, 0x9, true}}},
		{"contains existing", []insert{{"a", 0x10, 0x10, false}, {"b", 0x0, 0x100, true}}},
		{"inside existing", []insert{{"a", 0x10, 0x10, false}, {"b", 0x14, 0x2, true}}},
		{"gap fits exactly", []insert{{"a", 0x10, 0x10, false}, {"b", 0x30, 0x10, false}, {"c", 0x20, 0x10, false}}},
		{"gap too small", []insert{{"a", 0x10, 0x10, false}, {"b", 0x30, 0x10, false}, {"c", 0x20, 0x11, true}}},
		{"top of address space", []insert{{"a", math.MaxUint64 - 0xF, 0x10, false}, {"b", math.MaxUint64, 1, true}}},
		{"wraps", []insert{{"a", math.MaxUint64 - 0xF, 0x11, true}}},
		{"whole address space", []insert{{"a", 0, math.MaxUint64, false}, {"b", math.MaxUint64, 1, false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b Bus
			ok := 0
			for i, in := range tt.inserts {
				err := b.Insert(&nopDevice{id: i}, in.name, in.base, in.size)
				if in.wantErr {
					require.Error(t, err, "insert %q", in.name)
					continue
				}
				require.NoError(t, err, "insert %q", in.name)
				ok++
			}
			require.Equal(t, ok, b.Slots())
		})
	}
}

func TestBusInsertNil(t *testing.T) {
	var b Bus
	require.Error(t, b.Insert(nil, "nil", 0, 1))
}

func TestBusLookup(t *testing.T) {
	var b Bus
	com1, kbd, top := &nopDevice{1}, &nopDevice{2}, &nopDevice{3}
	// Insert out of address order: slots follow insertion order.
	require.NoError(t, b.Insert(com1, "com1", 0x3F8, 8))
	require.NoError(t, b.Insert(kbd, "i8042", 0x60, 5))
	require.NoError(t, b.Insert(top, "top", math.MaxUint64-1, 2))

	tests := []struct {
		addr    uint64
		dev     Device
		offset  uint64
		slot    int
		claimed bool
	}{
		{0x0, nil, 0, -1, false},
		{0x5F, nil, 0, -1, false},
		{0x60, kbd, 0, 1, true},
		{0x64, kbd, 4, 1, true},
		{0x65, nil, 0, -1, false},
		{0x3F7, nil, 0, -1, false},
		{0x3F8, com1, 0, 0, true},
		{0x3FD, com1, 5, 0, true},
		{0x3FF, com1, 7, 0, true},
		{0x400, nil, 0, -1, false},
		{math.MaxUint64 - 2, nil, 0, -1, false},
		{math.MaxUint64 - 1, top, 0, 2, true},
		{math.MaxUint64, top, 1, 2, true},
	}
	for _, tt := range tests {
		dev, off, slot, ok := b.Lookup(tt.addr)
		assert.Equal(t, tt.claimed, ok, "addr %#x", tt.addr)
		assert.Equal(t, tt.slot, slot, "addr %#x", tt.addr)
		assert.Equal(t, tt.offset, off, "addr %#x", tt.addr)
		if tt.dev == nil {
			assert.Nil(t, dev, "addr %#x", tt.addr)
		} else {
			assert.Same(t, tt.dev, dev, "addr %#x", tt.addr)
		}
	}
}

func TestBusEmpty(t *testing.T) {
	var b Bus
	_, _, slot, ok := b.Lookup(0x3F8)
	assert.False(t, ok)
	assert.Equal(t, -1, slot)
	assert.Zero(t, b.Slots())
	assert.Empty(t, b.SlotName(0))
	assert.Nil(t, b.SlotDevice(0))
	assert.Zero(t, b.SlotBase(0))
}

func TestBusSlots(t *testing.T) {
	var b Bus
	devs := []*nopDevice{{0}, {1}, {2}}
	require.NoError(t, b.Insert(devs[0], "high", 0x600, 3))
	require.NoError(t, b.Insert(devs[1], "low", 0x60, 5))
	require.NoError(t, b.Insert(devs[2], "mid", 0x70, 2))
	require.Equal(t, 3, b.Slots())

	want := []struct {
		name       string
		base, size uint64
	}{{"high", 0x600, 3}, {"low", 0x60, 5}, {"mid", 0x70, 2}}
	for i, w := range want {
		assert.Equal(t, w.name, b.SlotName(i))
		assert.Equal(t, w.base, b.SlotBase(i))
		assert.Equal(t, w.size, b.SlotSize(i))
		assert.Same(t, devs[i], b.SlotDevice(i))
	}
	for _, bad := range []int{-1, 3, math.MaxInt} {
		assert.Empty(t, b.SlotName(bad))
		assert.Nil(t, b.SlotDevice(bad))
		assert.Zero(t, b.SlotBase(bad))
		assert.Zero(t, b.SlotSize(bad))
	}
}

func TestBusLookupDoesNotAllocate(t *testing.T) {
	var b Bus
	for i := range 64 {
		require.NoError(t, b.Insert(&nopDevice{i}, "dev", uint64(i)*0x100, 0x10))
	}
	addrs := []uint64{0, 0x5, 0x10, 0x1005, 0x3F0F, 0x3F10, math.MaxUint64}
	allocs := testing.AllocsPerRun(1000, func() {
		for _, a := range addrs {
			b.Lookup(a)
		}
	})
	require.Zero(t, allocs)
}

// TestBusConcurrentLookup runs Lookups against Inserts; run with -race.
func TestBusConcurrentLookup(t *testing.T) {
	var b Bus
	require.NoError(t, b.Insert(&nopDevice{}, "first", 0, 1))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i < 200; i++ {
			if err := b.Insert(&nopDevice{i}, "dev", uint64(i)*4, 2); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i := 0; i < 10000; i++ {
		if _, off, _, ok := b.Lookup(uint64(i % 800)); ok && off > 1 {
			t.Fatalf("offset %d beyond a 2-byte range", off)
		}
	}
	<-done
	require.Equal(t, 200, b.Slots())
}

func BenchmarkBusLookup(b *testing.B) {
	var bus Bus
	for i := range 16 {
		if err := bus.Insert(&nopDevice{i}, "dev", uint64(i)*0x100, 0x10); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		bus.Lookup(uint64(i) & 0xFFF)
	}
}

func TestBusMoveRemove(t *testing.T) {
	var b Bus
	a, c := &nopDevice{id: 1}, &nopDevice{id: 2}
	sa, err := b.InsertSlot(a, "a", 0x1000, 0x100)
	require.NoError(t, err)
	sc, err := b.InsertSlot(c, "c", 0x3000, 0x100)
	require.NoError(t, err)
	assert.Equal(t, []int{0, 1}, []int{sa, sc})

	require.NoError(t, b.Move(sa, 0x2000))
	_, _, _, ok := b.Lookup(0x1000)
	assert.False(t, ok, "old range gone")
	dev, off, slot, ok := b.Lookup(0x2010)
	require.True(t, ok)
	assert.Equal(t, Device(a), dev)
	assert.Equal(t, uint64(0x10), off)
	assert.Equal(t, sa, slot)
	assert.Equal(t, uint64(0x2000), b.SlotBase(sa))

	assert.Error(t, b.Move(sa, 0x2F80), "overlaps c")
	_, _, _, ok = b.Lookup(0x2000)
	assert.True(t, ok, "a failed move leaves the device where it was")
	assert.Error(t, b.Move(sa, math.MaxUint64-0x10), "wraps")
	assert.Error(t, b.Move(5, 0), "no such slot")

	b.Remove(sa)
	assert.False(t, b.Mapped(sa))
	_, _, _, ok = b.Lookup(0x2000)
	assert.False(t, ok)
	assert.Equal(t, 2, b.Slots(), "slots stay")
	assert.Equal(t, "a", b.SlotName(sa))
	b.Remove(sa) // again: nothing
	b.Remove(9)  // no such slot: nothing

	require.NoError(t, b.Move(sa, 0x1000), "a removed slot maps again")
	assert.True(t, b.Mapped(sa))
	_, _, slot, ok = b.Lookup(0x1000)
	assert.True(t, ok)
	assert.Equal(t, sa, slot)
	_, _, slot, ok = b.Lookup(0x3000)
	assert.True(t, ok)
	assert.Equal(t, sc, slot)
}
