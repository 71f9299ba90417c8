package virtio_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gvmm/gvmm/memory"
	"github.com/gvmm/gvmm/virtio"
	"github.com/gvmm/gvmm/virtio/virtiotest"
)

const ringBase = 0x10000

func newGuest(t testing.TB) *memory.Guest {
	g, err := memory.New(memory.MinSize)
	require.NoError(t, err)
	t.Cleanup(func() { g.Close() })
	return g
}

func newQueue(t testing.TB, g *memory.Guest, size uint16, features uint64) (*virtiotest.Driver, *virtio.Queue) {
	d := virtiotest.NewDriver(g, ringBase, size, features, 1<<20)
	q, err := virtio.NewQueue(g, d.Config())
	require.NoError(t, err)
	return d, q
}

func TestNewQueueRejects(t *testing.T) {
	g := newGuest(t)
	good := virtiotest.NewDriver(g, ringBase, 8, 0, 0).Config()
	for _, tc := range []struct {
		name string
		edit func(c *virtio.QueueConfig)
	}{
		{"size 0", func(c *virtio.QueueConfig) { c.Size = 0 }},
		{"size not a power of 2", func(c *virtio.QueueConfig) { c.Size = 6 }},
		{"size too big", func(c *virtio.QueueConfig) { c.Size = 0xFFFF }},
		{"desc misaligned", func(c *virtio.QueueConfig) { c.Desc += 8 }},
		{"avail misaligned", func(c *virtio.QueueConfig) { c.Driver++ }},
		{"used misaligned", func(c *virtio.QueueConfig) { c.Device += 2 }},
		{"desc outside RAM", func(c *virtio.QueueConfig) { c.Desc = memory.MinSize }},
		{"desc runs past RAM", func(c *virtio.QueueConfig) { c.Desc = memory.MinSize - 16 }},
		{"avail outside RAM", func(c *virtio.QueueConfig) { c.Driver = 1 << 40 }},
		{"used outside RAM", func(c *virtio.QueueConfig) { c.Device = ^uint64(0) &^ 3 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.edit(&c)
			_, err := virtio.NewQueue(g, c)
			assert.ErrorIs(t, err, virtio.ErrBroken)
		})
	}
	_, err := virtio.NewQueue(g, good)
	assert.NoError(t, err)
}

func TestPopPush(t *testing.T) {
	g := newGuest(t)
	for _, features := range []uint64{0, virtio.FeatureIndirectDesc | virtio.FeatureEventIdx} {
		d, q := newQueue(t, g, 8, features)
		var c virtio.Chain
		ok, err := q.Pop(&c)
		require.NoError(t, err)
		assert.False(t, ok, "empty queue")

		hdr := d.Put([]byte("header--"))
		data := d.Alloc(4096, 4096)
		status := d.Alloc(1, 1)
		chains := [][]virtiotest.Desc{
			{{Addr: hdr, Len: 8}, {Addr: data, Len: 4096, Write: true}, {Addr: status, Len: 1, Write: true}},
			{{Addr: hdr, Len: 8}, {Addr: data, Len: 0}, {Addr: data, Len: 512}},
		}
		for i, descs := range chains {
			var head uint16
			if features&virtio.FeatureIndirectDesc != 0 && i == 1 {
				head, ok = d.AddIndirect(descs...)
			} else {
				head, ok = d.Add(descs...)
			}
			require.True(t, ok)
			assert.True(t, q.Pending())
			ok, err = q.Pop(&c)
			require.NoError(t, err)
			require.True(t, ok)
			assert.Equal(t, head, c.Head)
			var r, w uint64
			for _, x := range descs {
				if x.Write {
					w += uint64(x.Len)
				} else {
					r += uint64(x.Len)
				}
			}
			assert.Equal(t, r, c.Readable.Len())
			assert.Equal(t, w, c.Writable.Len())
			b := make([]byte, 8)
			assert.Equal(t, 8, c.Readable.ReadAt(b, 0))
			assert.Equal(t, "header--", string(b))
			require.NoError(t, q.Push(c.Head, uint32(w)))
			h, n, ok := d.Used()
			require.True(t, ok)
			assert.Equal(t, head, h)
			assert.Equal(t, uint32(w), n)
		}
		ok, err = q.Pop(&c)
		require.NoError(t, err)
		assert.False(t, ok)
		assert.Equal(t, 8, d.Free(), "every descriptor came back")
	}
}

// TestPopWraps cycles more chains than the queue size through the rings,
// so that the 16-bit indices and the ring slots wrap around.
func TestPopWraps(t *testing.T) {
	g := newGuest(t)
	d, q := newQueue(t, g, 4, virtio.FeatureEventIdx)
	buf := d.Alloc(64, 16)
	var c virtio.Chain
	for i := 0; i < 70000; i++ {
		head, ok := d.Add(virtiotest.Desc{Addr: buf, Len: 64, Write: true})
		require.True(t, ok, "round %d", i)
		ok, err := q.Pop(&c)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, head, c.Head)
		require.NoError(t, q.Push(c.Head, 64))
		_, _, ok = d.Used()
		require.True(t, ok)
	}
	last, used := q.State()
	assert.Equal(t, uint16(70000%65536), last)
	assert.Equal(t, uint16(70000%65536), used)
}

func TestPopMalformed(t *testing.T) {
	const size = 8
	all := virtio.FeatureIndirectDesc
	for _, tc := range []struct {
		name     string
		features uint64
		// setup writes the malformed chain and publishes its head.
		setup func(d *virtiotest.Driver)
	}{
		{"loop", all, func(d *virtiotest.Driver) {
			d.WriteRawDesc(0, 0x1000, 8, 1, 1)
			d.WriteRawDesc(1, 0x1000, 8, 1, 0)
			d.Publish(0)
		}},
		{"self loop", all, func(d *virtiotest.Driver) {
			d.WriteRawDesc(3, 0x1000, 8, 1, 3)
			d.Publish(3)
		}},
		{"next out of range", all, func(d *virtiotest.Driver) {
			d.WriteRawDesc(0, 0x1000, 8, 1, size)
			d.Publish(0)
		}},
		{"head out of range", all, func(d *virtiotest.Driver) { d.Publish(size + 3) }},
		{"buffer outside RAM", all, func(d *virtiotest.Driver) {
			d.WriteRawDesc(0, memory.MinSize, 8, 0, 0)
			d.Publish(0)
		}},
		{"buffer crosses end of RAM", all, func(d *virtiotest.Driver) {
			d.WriteRawDesc(0, memory.MinSize-4, 8, 0, 0)
			d.Publish(0)
		}},
		{"buffer wraps address space", all, func(d *virtiotest.Driver) {
			d.WriteRawDesc(0, ^uint64(0)-3, 8, 0, 0)
			d.Publish(0)
		}},
		{"huge length", all, func(d *virtiotest.Driver) {
			d.WriteRawDesc(0, 0x1000, 0xFFFFFFFF, 2, 0)
			d.Publish(0)
		}},
		{"readable after writable", all, func(d *virtiotest.Driver) {
			d.WriteRawDesc(0, 0x1000, 8, 1|2, 1)
			d.WriteRawDesc(1, 0x1000, 8, 0, 0)
			d.Publish(0)
		}},
		{"indirect not negotiated", 0, func(d *virtiotest.Driver) {
			d.WriteRawDesc(0, 0x1000, 16, 4, 0)
			d.Publish(0)
		}},
		{"indirect with next", all, func(d *virtiotest.Driver) {
			d.WriteRawDesc(0, 0x1000, 16, 4|1, 1)
			d.Publish(0)
		}},
		{"indirect length not a multiple of 16", all, func(d *virtiotest.Driver) {
			d.WriteRawDesc(0, 0x1000, 24, 4, 0)
			d.Publish(0)
		}},
		{"indirect empty", all, func(d *virtiotest.Driver) {
			d.WriteRawDesc(0, 0x1000, 0, 4, 0)
			d.Publish(0)
		}},
		{"indirect longer than queue", all, func(d *virtiotest.Driver) {
			d.WriteRawDesc(0, 0x1000, 16*(size+1), 4, 0)
			d.Publish(0)
		}},
		{"indirect table outside RAM", all, func(d *virtiotest.Driver) {
			d.WriteRawDesc(0, memory.MinSize-16, 32, 4, 0)
			d.Publish(0)
		}},
		{"nested indirect", all, func(d *virtiotest.Driver) {
			inner := make([]byte, 16)
			tbl := d.Put(inner)
			outer := make([]byte, 16)
			copy(outer, []byte{byte(tbl), byte(tbl >> 8), byte(tbl >> 16), 0, 0, 0, 0, 0, 16, 0, 0, 0, 4, 0})
			d.WriteRawDesc(0, d.Put(outer), 16, 4, 0)
			d.Publish(0)
		}},
		{"indirect loop", all, func(d *virtiotest.Driver) {
			// Two entries pointing at each other.
			tbl := make([]byte, 32)
			tbl[8], tbl[12], tbl[14] = 8, 1, 1
			tbl[16+8], tbl[16+12], tbl[16+14] = 8, 1, 0
			for i := 0; i < 2; i++ {
				tbl[16*i] = 0x00
				tbl[16*i+1] = 0x10
			}
			d.WriteRawDesc(0, d.Put(tbl), 32, 4, 0)
			d.Publish(0)
		}},
		{"avail idx too far ahead", all, func(d *virtiotest.Driver) { d.SetAvailIdx(size + 1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGuest(t)
			d, q := newQueue(t, g, size, tc.features)
			tc.setup(d)
			var c virtio.Chain
			ok, err := q.Pop(&c)
			assert.False(t, ok)
			require.ErrorIs(t, err, virtio.ErrBroken)
			assert.ErrorIs(t, q.Err(), virtio.ErrBroken)
			// Broken for good.
			_, err = q.Pop(&c)
			assert.ErrorIs(t, err, virtio.ErrBroken)
			assert.Error(t, q.Push(0, 0))
			assert.False(t, q.Pending())
			assert.False(t, q.NeedsInterrupt())
			assert.False(t, q.EnableNotifications())
		})
	}
}

func TestNotificationsWithoutEventIdx(t *testing.T) {
	g := newGuest(t)
	d, q := newQueue(t, g, 8, 0)
	buf := d.Alloc(16, 16)
	var c virtio.Chain

	q.DisableNotifications()
	assert.Equal(t, uint16(1), d.UsedFlags(), "VIRTQ_USED_F_NO_NOTIFY while processing")
	assert.False(t, q.EnableNotifications(), "nothing new")
	assert.Equal(t, uint16(0), d.UsedFlags())

	d.Add(virtiotest.Desc{Addr: buf, Len: 16})
	q.DisableNotifications()
	assert.True(t, q.EnableNotifications(), "a chain arrived meanwhile")

	assert.False(t, q.NeedsInterrupt(), "nothing pushed")
	ok, err := q.Pop(&c)
	require.True(t, ok)
	require.NoError(t, err)
	require.NoError(t, q.Push(c.Head, 0))
	assert.True(t, q.NeedsInterrupt())
	assert.False(t, q.NeedsInterrupt(), "once per push")

	d.SetAvailFlags(1) // VIRTQ_AVAIL_F_NO_INTERRUPT
	d.Add(virtiotest.Desc{Addr: buf, Len: 16})
	ok, err = q.Pop(&c)
	require.True(t, ok)
	require.NoError(t, err)
	require.NoError(t, q.Push(c.Head, 0))
	assert.False(t, q.NeedsInterrupt(), "the driver asked for none")
}

func TestNotificationsWithEventIdx(t *testing.T) {
	g := newGuest(t)
	d, q := newQueue(t, g, 8, virtio.FeatureEventIdx)
	buf := d.Alloc(16, 16)
	var c virtio.Chain
	pushOne := func() {
		t.Helper()
		_, ok := d.Add(virtiotest.Desc{Addr: buf, Len: 16})
		require.True(t, ok)
		ok, err := q.Pop(&c)
		require.True(t, ok)
		require.NoError(t, err)
		require.NoError(t, q.Push(c.Head, 0))
		_, _, ok = d.Used()
		require.True(t, ok)
	}

	q.DisableNotifications()
	assert.Equal(t, uint16(0), d.UsedFlags(), "no flags with EVENT_IDX")
	d.Add(virtiotest.Desc{Addr: buf, Len: 16})
	assert.True(t, q.EnableNotifications())
	assert.Equal(t, uint16(0), d.AvailEvent(), "avail_event is the next index the device looks at")
	ok, err := q.Pop(&c)
	require.True(t, ok)
	require.NoError(t, err)
	require.NoError(t, q.Push(c.Head, 0))
	d.Used()
	assert.False(t, q.EnableNotifications())
	assert.Equal(t, uint16(1), d.AvailEvent())

	// used_event 0: the driver wants an interrupt when used.idx passes 0;
	// that was the first push above.
	d.SetUsedEvent(0)
	assert.True(t, q.NeedsInterrupt(), "used.idx moved 0 -> 1 past used_event 0")
	pushOne()
	assert.False(t, q.NeedsInterrupt(), "used_event 0 already passed")
	d.SetUsedEvent(4)
	pushOne() // used.idx 3
	assert.False(t, q.NeedsInterrupt())
	pushOne() // 4
	assert.False(t, q.NeedsInterrupt())
	pushOne() // 5: passes 4
	assert.True(t, q.NeedsInterrupt())
}
