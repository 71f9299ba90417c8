package net

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gvmm/gvmm/virtio"
	"github.com/gvmm/gvmm/virtio/virtiotest"
)

// The stream tests run the device's workers against a driver that
// notifies and waits as Linux's virtio_net does (drivers/net/virtio_net.c
// on drivers/virtio/virtio_ring.c): it kicks only when the device's
// avail_event or NO_NOTIFY flag asks for it, and sleeps until an interrupt
// once it has re-enabled them and found nothing new. A notification the
// device forgets to ask for, or an interrupt it forgets to send, leaves
// both sides waiting: the test then fails instead of hanging.

// stallTimeout is how long the driver waits for an interrupt before it
// declares the device stalled.
const stallTimeout = 10 * time.Second

// streamFrames returns n frames (header and Ethernet frame), from a few
// bytes (TCP acknowledgements) to 64 KiB segments, whose contents depend on
// their index.
func streamFrames(n int, maxLen int) [][]byte {
	rng := rand.New(rand.NewSource(int64(n)))
	var out [][]byte
	for i := range n {
		var size int
		switch rng.Intn(4) {
		case 0:
			size = 60 + rng.Intn(40)
		case 1:
			size = 1514
		default:
			size = 60 + rng.Intn(maxLen-60)
		}
		h := Header{}
		if size > 1514 {
			h = Header{Flags: FlagNeedsCSum, GSOType: GSOTCPv4, GSOSize: 1448, HdrLen: 54, CSumStart: 34, CSumOff: 16}
		}
		out = append(out, append(hdr(h), ethFrame(size, byte(i))...))
	}
	return out
}

// TestReceiveStreamLinuxDriver streams frames of every size through the
// receive worker to a driver that posts Linux's smallest mergeable buffers
// (1536 bytes), refills only when more than half a NAPI budget of them is
// free, kicks only when the device asks, and handles interrupts as NAPI
// does. Every frame must arrive whole and in order.
func TestReceiveStreamLinuxDriver(t *testing.T) {
	for _, c := range []struct {
		name     string
		features uint64
	}{
		{"EVENT_IDX", allFeatures},
		{"flags", allFeatures &^ virtio.FeatureEventIdx},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, c.features, false)
			frames := streamFrames(1500, 65000)
			go func() {
				for _, f := range frames {
					r.be.rx <- f
				}
			}()
			d := r.rx
			const bufSize, napiBudget = 1536, 64
			var pool []uint64
			for range d.Size {
				pool = append(pool, d.Alloc(bufSize, 64))
			}
			bufOf := map[uint16]uint64{}
			refill := func() {
				for d.Free() > 0 {
					a := pool[len(pool)-1]
					pool = pool[:len(pool)-1]
					head, ok := d.Add(virtiotest.Desc{Addr: a, Len: bufSize, Write: true})
					require.True(t, ok)
					bufOf[head] = a
				}
				if d.KickNeeded() {
					require.NoError(t, r.rxKick.Signal())
				}
			}
			refill()
			var got [][]byte
			var cur []byte
			left := 0
			for len(got) < len(frames) {
				select {
				case <-r.irq.wake[rxQueue]:
				case err := <-r.failed:
					t.Fatalf("device failed: %v", err)
				case <-time.After(stallTimeout):
					t.Fatalf("stalled: %d of %d frames received, %d buffers free, avail_event %d, avail.idx %d",
						len(got), len(frames), d.Free(), d.AvailEvent(), d.AvailIdx())
				}
				// virtnet_poll: take up to a budget of buffers, refill
				// when more than half a budget is free, and sleep again
				// only when interrupts are back on and nothing came
				// meanwhile.
				for {
					d.DisableInterrupts()
					n := 0
					for ; n < napiBudget; n++ {
						head, l, ok := d.Used()
						if !ok {
							break
						}
						a := bufOf[head]
						pool = append(pool, a)
						b := d.Get(a, int(l))
						if left == 0 {
							require.GreaterOrEqual(t, len(b), HeaderSize, "frame %d", len(got))
							left = int(binary.LittleEndian.Uint16(b[hdrNumBuffers:]))
							require.Positive(t, left, "frame %d: num_buffers", len(got))
							cur = nil
						}
						cur = append(cur, b...)
						if left--; left == 0 {
							got = append(got, cur)
						}
					}
					if d.Free() > napiBudget/2 {
						refill()
					}
					if n == napiBudget {
						continue
					}
					if !d.EnableInterrupts() {
						break
					}
				}
			}
			for i, f := range frames {
				want := append([]byte(nil), f...)
				want[hdrNumBuffers], want[hdrNumBuffers+1] = got[i][hdrNumBuffers], got[i][hdrNumBuffers+1]
				require.True(t, bytes.Equal(want, got[i]), "frame %d (%d bytes) arrives whole", i, len(f))
				require.Equal(t, (len(f)+bufSize-1)/bufSize, int(binary.LittleEndian.Uint16(got[i][hdrNumBuffers:])), "frame %d: num_buffers", i)
			}
			s := r.dev.Stats()
			require.Equal(t, uint64(len(frames)), s.RXFrames)
			require.Zero(t, s.RXDropped+s.RXMalformed)
		})
	}
}

// TestTransmitStreamLinuxDriver streams frames through the transmit worker
// from a driver that transmits as Linux's start_xmit does with NAPI
// transmit completions: before each frame it reclaims what the device has
// used and asks for an interrupt only once three quarters of what is
// outstanding is done; when the ring is full it stops and sleeps until an
// interrupt. Every frame must reach the backend, in order, and every chain
// come back.
func TestTransmitStreamLinuxDriver(t *testing.T) {
	for _, c := range []struct {
		name     string
		features uint64
	}{
		{"EVENT_IDX", allFeatures},
		{"flags", allFeatures &^ virtio.FeatureEventIdx},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, c.features, false)
			frames := streamFrames(3000, 16000)
			d := r.tx
			// A slot per chain of two descriptors: header, then frame.
			const slot = HeaderSize + 16000
			var pool []uint64
			for range d.Size / 2 {
				pool = append(pool, d.Alloc(slot, 64))
			}
			slotOf := map[uint16]uint64{}
			reclaim := func() {
				for {
					head, _, ok := d.Used()
					if !ok {
						return
					}
					a, ok := slotOf[head]
					require.True(t, ok, "used head %d was never made available", head)
					delete(slotOf, head)
					pool = append(pool, a)
				}
			}
			wait := func(what string) {
				select {
				case <-r.irq.wake[txQueue]:
				case err := <-r.failed:
					t.Fatalf("device failed: %v", err)
				case <-time.After(stallTimeout):
					t.Fatalf("stalled %s: %d frames sent, %d chains outstanding, avail_event %d, avail.idx %d",
						what, len(r.be.sent()), len(slotOf), d.AvailEvent(), d.AvailIdx())
				}
			}
			for i := 0; i < len(frames); {
				// free_old_xmit_skbs, then virtqueue_enable_cb_delayed
				// until it finds nothing more to reclaim.
				d.DisableInterrupts()
				reclaim()
				for d.EnableInterruptsDelayed() {
					d.DisableInterrupts()
					reclaim()
				}
				if len(pool) == 0 {
					// The ring is full: netif_stop_subqueue until a
					// transmit interrupt (virtnet_poll_tx) frees some.
					if !d.EnableInterrupts() {
						wait(fmt.Sprintf("with the ring full at frame %d", i))
					}
					continue
				}
				f := frames[i]
				a := pool[len(pool)-1]
				pool = pool[:len(pool)-1]
				d.Mem.WriteAt(f, int64(a))
				head, ok := d.Add(virtiotest.Desc{Addr: a, Len: HeaderSize}, virtiotest.Desc{Addr: a + HeaderSize, Len: uint32(len(f) - HeaderSize)})
				require.True(t, ok)
				slotOf[head] = a
				i++
				if d.KickNeeded() {
					require.NoError(t, r.txKick.Signal())
				}
			}
			// The last completions.
			for len(slotOf) > 0 {
				reclaim()
				if len(slotOf) > 0 && !d.EnableInterrupts() {
					wait("for the last completions")
				}
			}
			sent := r.be.sent()
			require.Len(t, sent, len(frames))
			for i, f := range frames {
				require.True(t, bytes.Equal(f, sent[i]), "frame %d (%d bytes) sent as given", i, len(f))
			}
			s := r.dev.Stats()
			require.Equal(t, uint64(len(frames)), s.TXFrames)
			require.Zero(t, s.TXMalformed+s.TXErrors)
		})
	}
}
