package net

import (
	"encoding/binary"
	"testing"

	"github.com/gvmm/gvmm/virtio"
	"github.com/gvmm/gvmm/virtio/virtiotest"
)

// FuzzFrame feeds the frame and header code arbitrary input, as a
// malicious driver or a surprising backend would: the transmit parser
// (ParseTX) on a chain split where the fuzzer says, the receive placement
// (Place) on buffer sizes it chooses, and then both through a live device
// (a transmit chain taken, checked and written; a received frame read into
// the chosen buffers). Nothing may panic, an accepted transmit frame must
// be exactly the chain minus a checked header, and a placed frame must
// fill the buffers in order without overflowing one.
//
// Input: byte 0 selects the features (bit 0 MRG_RXBUF, bit 1 CSUM and the
// HOST_ offloads), byte 1 the number of cuts (0-3) of the transmit chain,
// then the cuts and the receive buffer sizes (three le16 each); the rest
// is the transmit chain's bytes, header first, also used as the received
// frame.
func FuzzFrame(f *testing.F) {
	seed := func(sel, cuts byte, pos, bufs [3]uint16, h Header, frame []byte) []byte {
		out := []byte{sel, cuts}
		for _, p := range pos {
			out = binary.LittleEndian.AppendUint16(out, p)
		}
		for _, b := range bufs {
			out = binary.LittleEndian.AppendUint16(out, b)
		}
		return append(append(out, hdr(h)...), frame...)
	}
	f.Add(seed(3, 0, [3]uint16{}, [3]uint16{1526, 1526, 1526}, Header{}, ethFrame(60, 1)))
	f.Add(seed(3, 2, [3]uint16{5, 12, 0}, [3]uint16{100, 64, 1526},
		Header{Flags: FlagNeedsCSum, CSumStart: 34, CSumOff: 16}, ethFrame(200, 2)))
	f.Add(seed(3, 3, [3]uint16{12, 40, 900}, [3]uint16{512, 512, 512},
		Header{Flags: FlagNeedsCSum, GSOType: GSOTCPv4, GSOSize: 1448, HdrLen: 66, CSumStart: 34, CSumOff: 16}, ethFrame(1400, 3)))
	f.Add(seed(2, 1, [3]uint16{3, 0, 0}, [3]uint16{2000, 0, 0},
		Header{Flags: FlagNeedsCSum, GSOType: GSOTCPv6 | GSOECN, GSOSize: 1000, CSumStart: 54, CSumOff: 16}, ethFrame(300, 4)))
	f.Add(seed(1, 0, [3]uint16{}, [3]uint16{8, 4, 2}, Header{Flags: FlagDataValid | FlagRSCInfo}, ethFrame(20, 5)))
	f.Add(seed(0, 1, [3]uint16{65535, 0, 0}, [3]uint16{12, 0, 0}, Header{GSOType: GSOUDP, GSOSize: 0xffff, HdrLen: 0xffff}, nil))

	r := newRig(f, allFeatures, true)
	rNoMrg := newRig(f, allFeatures&^(FeatureMrgRxBuf|FeatureGuestTSO4|FeatureGuestTSO6|FeatureGuestECN), true)
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 14 {
			return
		}
		sel, ncuts := in[0], int(in[1]%4)
		var cuts, bufs [3]int
		for i := range 3 {
			cuts[i] = int(binary.LittleEndian.Uint16(in[2+2*i:]))
			bufs[i] = int(binary.LittleEndian.Uint16(in[8+2*i:]))
		}
		chain := in[14:]
		features := virtio.FeatureVersion1
		if sel&2 != 0 {
			features |= FeatureCSum | FeatureHostTSO4 | FeatureHostTSO6 | FeatureHostECN | FeatureHostUFO
		}
		mergeable := sel&1 != 0

		// The transmit parser.
		var iov virtio.IOVec
		rest := chain
		for _, c := range cuts[:ncuts] {
			c = min(c, len(rest))
			iov = append(iov, rest[:c])
			rest = rest[c:]
		}
		iov = append(iov, rest)
		var fr TXFrame
		if err := ParseTX(iov, features, &fr); err == nil {
			if fr.Len != len(chain)-HeaderSize || int(fr.Frame.Len()) != fr.Len {
				t.Fatalf("frame of %d bytes (%d in buffers) from a %d-byte chain", fr.Len, fr.Frame.Len(), len(chain))
			}
			if binary.LittleEndian.Uint16(fr.Wire[hdrNumBuffers:]) != 0 {
				t.Fatal("num_buffers not zeroed")
			}
			if err := checkTX(DecodeHeader(&fr.Wire), fr.Len, features); err != nil {
				t.Fatalf("the header handed on does not pass the check: %v", err)
			}
			got := make([]byte, fr.Len)
			fr.Frame.ReadAt(got, 0)
			if string(got) != string(chain[HeaderSize:]) {
				t.Fatal("the frame handed on differs from the chain's")
			}
		}

		// The receive placement.
		caps := []uint64{uint64(bufs[0]), uint64(bufs[1]), uint64(bufs[2])}
		used, err := Place(len(chain), caps, mergeable, nil)
		if err == nil {
			sum := 0
			for i, u := range used {
				if uint64(u) > caps[i] {
					t.Fatalf("buffer %d: %d bytes into %d", i, u, caps[i])
				}
				if i < len(used)-1 && uint64(u) != caps[i] {
					t.Fatalf("buffer %d not filled before the next", i)
				}
				sum += int(u)
			}
			if sum != len(chain) || (!mergeable && len(used) != 1) {
				t.Fatalf("placed %d bytes in %d buffers for a %d-byte frame", sum, len(used), len(chain))
			}
		}

		// Both through a live device, on fresh queues.
		d := r
		if !mergeable {
			d = rNoMrg
		}
		d.t = t
		d.restart()
		if len(chain) > 0 {
			var descs []virtiotest.Desc
			for _, b := range iov {
				if len(b) > 0 {
					descs = append(descs, virtiotest.Desc{Addr: d.tx.Put(b), Len: uint32(len(b))})
				}
			}
			if _, ok := d.tx.Add(descs...); ok {
				d.dev.ProcessTX()
			}
		}
		if len(chain) >= HeaderSize && len(chain) <= HeaderSize+MaxFrame {
			for _, b := range bufs {
				if b > 0 {
					d.rx.Add(virtiotest.Desc{Addr: d.rx.Alloc(uint64(b), 8), Len: uint32(b), Write: true})
				}
			}
			// Room for the largest frame after the chosen buffers, so
			// that the device never waits for more.
			d.rx.Add(virtiotest.Desc{Addr: d.rx.Alloc(HeaderSize+MaxFrame, 8), Len: HeaderSize + MaxFrame, Write: true})
			d.be.rx <- chain
			if err := d.dev.Receive(1); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case err := <-d.failed:
			t.Fatalf("device failed: %v", err)
		default:
		}
	})
}
