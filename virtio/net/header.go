package net

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/gvmm/gvmm/virtio"
)

// struct virtio_net_hdr (virtio 1.2 section 5.1.6). With VIRTIO_F_VERSION_1
// the header always has num_buffers, whether or not MRG_RXBUF is
// negotiated, so it is 12 bytes in both directions; the tap is given the
// same size (TUNSETVNETHDRSZ), so the two layouts are one.
const (
	// HeaderSize is the length of the header before every frame.
	HeaderSize = 12

	hdrFlags      = 0  // u8
	hdrGSOType    = 1  // u8
	hdrHdrLen     = 2  // le16
	hdrGSOSize    = 4  // le16
	hdrCSumStart  = 6  // le16
	hdrCSumOffset = 8  // le16
	hdrNumBuffers = 10 // le16
)

// Header flags (section 5.1.6).
const (
	FlagNeedsCSum = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM: checksum [csum_start, end) into csum_start+csum_offset
	FlagDataValid = 2 // VIRTIO_NET_HDR_F_DATA_VALID: the checksum was checked (device to driver only)
	FlagRSCInfo   = 4 // VIRTIO_NET_HDR_F_RSC_INFO (device to driver only, with GUEST_RSC)
)

// GSO types (section 5.1.6).
const (
	GSONone  = 0    // VIRTIO_NET_HDR_GSO_NONE
	GSOTCPv4 = 1    // VIRTIO_NET_HDR_GSO_TCPV4
	GSOUDP   = 3    // VIRTIO_NET_HDR_GSO_UDP (UFO)
	GSOTCPv6 = 4    // VIRTIO_NET_HDR_GSO_TCPV6
	GSOECN   = 0x80 // VIRTIO_NET_HDR_GSO_ECN, or-ed into the type
)

// Frame sizes.
const (
	// ethHeader is an Ethernet header without a VLAN tag (IEEE 802.3).
	ethHeader = 14
	// MaxFrame is the largest frame either way: a 64 KiB IP packet (the
	// largest GSO frame) after an Ethernet header and one 802.1Q tag.
	MaxFrame = ethHeader + 4 + 65535
)

// Header is a virtio_net_hdr copied out of guest memory.
type Header struct {
	Flags, GSOType     uint8
	HdrLen, GSOSize    uint16
	CSumStart, CSumOff uint16
	NumBuffers         uint16
}

// DecodeHeader reads a header from its 12 wire bytes.
func DecodeHeader(b *[HeaderSize]byte) Header {
	le := binary.LittleEndian
	return Header{
		Flags: b[hdrFlags], GSOType: b[hdrGSOType],
		HdrLen: le.Uint16(b[hdrHdrLen:]), GSOSize: le.Uint16(b[hdrGSOSize:]),
		CSumStart: le.Uint16(b[hdrCSumStart:]), CSumOff: le.Uint16(b[hdrCSumOffset:]),
		NumBuffers: le.Uint16(b[hdrNumBuffers:]),
	}
}

// Encode writes h as its 12 wire bytes.
func (h Header) Encode(b *[HeaderSize]byte) {
	le := binary.LittleEndian
	b[hdrFlags], b[hdrGSOType] = h.Flags, h.GSOType
	le.PutUint16(b[hdrHdrLen:], h.HdrLen)
	le.PutUint16(b[hdrGSOSize:], h.GSOSize)
	le.PutUint16(b[hdrCSumStart:], h.CSumStart)
	le.PutUint16(b[hdrCSumOffset:], h.CSumOff)
	le.PutUint16(b[hdrNumBuffers:], h.NumBuffers)
}

// ErrMalformed is wrapped by every reason ParseTX gives to drop a frame.
var ErrMalformed = errors.New("malformed frame")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// TXFrame is a frame the driver transmits: its header, checked and copied
// out of guest memory, and the Ethernet frame after it, as buffers that
// alias guest memory.
type TXFrame struct {
	Header Header
	// Wire is Header as it goes to the backend: checked, with
	// num_buffers zeroed. The backend gets this copy, never the guest's
	// bytes, which the guest could change after the check.
	Wire [HeaderSize]byte
	// Frame is the Ethernet frame.
	Frame virtio.IOVec
	// Len is Frame's length.
	Len int
}

// ParseTX splits the device-readable buffers of a transmit chain into a
// header and a frame and checks the header against the negotiated features
// (section 5.1.6.2, "Packet Transmission", and its driver requirements).
// f.Frame reuses its slice. Any error wraps ErrMalformed: the frame is
// dropped.
func ParseTX(readable virtio.IOVec, features uint64, f *TXFrame) error {
	f.Frame = f.Frame[:0]
	total := readable.Len()
	if total < HeaderSize+ethHeader {
		return malformed("%d bytes, shorter than a header and an Ethernet header", total)
	}
	if total > HeaderSize+MaxFrame {
		return malformed("%d-byte frame, longer than %d", total-HeaderSize, MaxFrame)
	}
	readable.ReadAt(f.Wire[:], 0)
	h := DecodeHeader(&f.Wire)
	f.Len = int(total - HeaderSize)
	if err := checkTX(h, f.Len, features); err != nil {
		return err
	}
	h.NumBuffers = 0
	h.Encode(&f.Wire)
	f.Header = h
	var err error
	f.Frame, err = readable.Slice(f.Frame, HeaderSize, uint64(f.Len))
	if err != nil {
		// Unreachable: Len comes from the same buffers.
		return malformed("%v", err)
	}
	return nil
}

// checkTX checks a transmit header (section 5.1.6.2.1: the driver sets
// only NEEDS_CSUM, only with VIRTIO_NET_F_CSUM, with csum_start and
// csum_offset inside the frame; a GSO type only with the matching HOST_
// feature, the ECN bit only with HOST_ECN, and then NEEDS_CSUM and a
// gso_size).
func checkTX(h Header, frameLen int, features uint64) error {
	if h.Flags&^FlagNeedsCSum != 0 {
		return malformed("header flags %#x: only NEEDS_CSUM may be set on transmit", h.Flags)
	}
	if h.Flags&FlagNeedsCSum != 0 {
		if features&FeatureCSum == 0 {
			return malformed("NEEDS_CSUM without VIRTIO_NET_F_CSUM")
		}
		// The checksum field (2 bytes at csum_start+csum_offset) lies in
		// the frame.
		if int(h.CSumStart)+int(h.CSumOff)+2 > frameLen {
			return malformed("checksum at %d+%d outside a %d-byte frame", h.CSumStart, h.CSumOff, frameLen)
		}
	}
	if int(h.HdrLen) > frameLen {
		return malformed("hdr_len %d beyond a %d-byte frame", h.HdrLen, frameLen)
	}
	gso := h.GSOType &^ GSOECN
	if gso == GSONone {
		if h.GSOType&GSOECN != 0 {
			return malformed("ECN bit without a GSO type")
		}
		return nil
	}
	var need uint64
	switch gso {
	case GSOTCPv4:
		need = FeatureHostTSO4
	case GSOTCPv6:
		need = FeatureHostTSO6
	case GSOUDP:
		need = FeatureHostUFO
	default:
		return malformed("unknown GSO type %#x", h.GSOType)
	}
	if features&need == 0 {
		return malformed("GSO type %#x without its HOST_ feature", h.GSOType)
	}
	if h.GSOType&GSOECN != 0 && features&FeatureHostECN == 0 {
		return malformed("GSO ECN bit without VIRTIO_NET_F_HOST_ECN")
	}
	if h.Flags&FlagNeedsCSum == 0 {
		return malformed("GSO frame without NEEDS_CSUM")
	}
	if h.GSOSize == 0 {
		return malformed("GSO frame with gso_size 0")
	}
	return nil
}

// Placement is where a received frame of Len bytes (header included) goes
// in the driver's receive buffers: Used[i] bytes into the i-th chain.
// With MRG_RXBUF a frame spans as many chains as it needs, each filled
// before the next (section 5.1.6.4); without it, one chain must hold it
// all.
//
// Place computes it from the chains' capacities; it fails when a chain
// cannot even hold the header (section 5.1.6.3.1: every buffer holds at
// least a header) or when the frame does not fit the chains given.
func Place(frameLen int, capacities []uint64, mergeable bool, used []uint32) ([]uint32, error) {
	used = used[:0]
	if frameLen < HeaderSize {
		return used, malformed("%d-byte received frame, shorter than the header", frameLen)
	}
	left := uint64(frameLen)
	for i, c := range capacities {
		if i == 0 && c < HeaderSize {
			return used, malformed("receive buffer of %d bytes cannot hold the %d-byte header", c, HeaderSize)
		}
		n := min(c, left)
		used = append(used, uint32(n))
		left -= n
		if left == 0 {
			return used, nil
		}
		if !mergeable {
			break
		}
	}
	return used, errShort
}

// errShort: the frame does not fit the chains given (yet).
var errShort = errors.New("frame longer than the receive buffers")
