package blk

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/gvmm/gvmm/virtio"
)

// Request types (virtio 1.2 section 5.2.6: struct virtio_blk_req's type).
const (
	TypeIn          = 0  // VIRTIO_BLK_T_IN: read
	TypeOut         = 1  // VIRTIO_BLK_T_OUT: write
	TypeFlush       = 4  // VIRTIO_BLK_T_FLUSH
	TypeGetID       = 8  // VIRTIO_BLK_T_GET_ID: the device's serial
	TypeDiscard     = 11 // VIRTIO_BLK_T_DISCARD
	TypeWriteZeroes = 13 // VIRTIO_BLK_T_WRITE_ZEROES
)

// Status values, the last byte the device writes (section 5.2.6).
const (
	StatusOK     = 0 // VIRTIO_BLK_S_OK
	StatusIOErr  = 1 // VIRTIO_BLK_S_IOERR
	StatusUnsupp = 2 // VIRTIO_BLK_S_UNSUPP
)

// Layouts (section 5.2.6).
const (
	// headerSize is struct virtio_blk_req's header: le32 type, le32
	// reserved, le64 sector.
	headerSize = 16
	// segmentSize is struct virtio_blk_discard_write_zeroes: le64
	// sector, le32 num_sectors, le32 flags (bit 0: unmap).
	segmentSize = 16
	segUnmap    = 1
	// IDBytes is the length of the GET_ID answer (VIRTIO_BLK_ID_BYTES).
	IDBytes = 20
	// sectorShift: sector numbers count 512-byte units whatever the
	// device's block size (section 5.2.6).
	sectorShift = 9
)

// errNoStatus: a chain without a device-writable byte for the status
// cannot be answered at all.
var errNoStatus = errors.New("request has no device-writable status byte")

// Request is a parsed virtio-blk request. Its buffers alias guest memory.
type Request struct {
	Type   uint32
	Sector uint64
	// Data is the data buffers: for IN (and GET_ID) the device-writable
	// ones before the status byte, for OUT the device-readable ones after
	// the header, for DISCARD and WRITE_ZEROES the segments.
	Data virtio.IOVec
	// status is the byte the device writes last.
	status []byte
	// Err says why the request is malformed; the device answers it with
	// StatusIOErr without doing anything.
	Err error
}

// SetStatus writes the request's status byte.
func (r *Request) SetStatus(s byte) { r.status[0] = s }

// Parse splits chain c into r, reusing r's slices. It fails only when the
// chain has no status byte; every other problem is recorded in r.Err and
// answered with StatusIOErr. The header is copied out of guest memory
// before it is looked at.
func Parse(c *virtio.Chain, r *Request) error {
	r.Type, r.Sector, r.Data, r.status, r.Err = 0, 0, r.Data[:0], nil, nil
	w := c.Writable
	if len(w) == 0 {
		return errNoStatus
	}
	last := w[len(w)-1]
	r.status = last[len(last)-1:]
	var hdr [headerSize]byte
	if c.Readable.ReadAt(hdr[:], 0) != headerSize {
		r.Err = fmt.Errorf("header of %d bytes, want %d", c.Readable.Len(), headerSize)
		return nil
	}
	r.Type = binary.LittleEndian.Uint32(hdr[0:])
	r.Sector = binary.LittleEndian.Uint64(hdr[8:])
	var err error
	switch r.Type {
	case TypeIn, TypeGetID:
		// All of the writable bytes but the status.
		r.Data, err = w.Slice(r.Data, 0, w.Len()-1)
	default:
		// All of the readable bytes after the header; a request with
		// device-writable data besides the status has it ignored.
		r.Data, err = c.Readable.Slice(r.Data, headerSize, c.Readable.Len()-headerSize)
	}
	if err != nil {
		r.Err = err
	}
	return nil
}

// Segment is one range of a DISCARD or WRITE_ZEROES request.
type Segment struct {
	Sector, Sectors uint64
	Unmap           bool
	// Reserved says a reserved flag bit was set.
	Reserved bool
}

// Segments decodes the first len(dst) or fewer segments of a DISCARD or
// WRITE_ZEROES request into dst and returns how many there are in total.
// The data must be a whole number of segments.
func (r *Request) Segments(dst []Segment) (int, error) {
	n := r.Data.Len()
	if n == 0 || n%segmentSize != 0 {
		return 0, fmt.Errorf("%d bytes of segments, not a whole number of %d-byte segments", n, segmentSize)
	}
	count := int(n / segmentSize)
	var b [segmentSize]byte
	for i := 0; i < count && i < len(dst); i++ {
		r.Data.ReadAt(b[:], uint64(i)*segmentSize)
		flags := binary.LittleEndian.Uint32(b[12:])
		dst[i] = Segment{
			Sector:   binary.LittleEndian.Uint64(b[0:]),
			Sectors:  uint64(binary.LittleEndian.Uint32(b[8:])),
			Unmap:    flags&segUnmap != 0,
			Reserved: flags&^segUnmap != 0,
		}
	}
	return count, nil
}
