// Package trace records every exit to userspace in a compact binary file
// (gvmm --trace FILE) and reads it back: Dump prints one line per exit,
// Summarize prints the statistics of package stats computed from the file.
//
// # Writing
//
// A Writer gives each vCPU its own vcpu.Observer with its own buffer. The
// Observer encodes exits into the buffer (8 bytes for a typical port access)
// and hands it, full, to a single goroutine that writes it out as a chunk
// tagged with the vCPU. vCPU threads thus share nothing per exit; they meet
// only per chunk, on a channel, and the file I/O happens off their threads.
// Close flushes every buffer and writes an end block, so a reader can tell a
// complete trace from one cut short.
//
// # Reading
//
// A Reader returns the records one by one with the names the writer stored,
// so reading needs no VMM. Dump and Summarize are the readers behind
// `gvmm trace dump` and `gvmm trace summarize`.
//
// # Format
//
// All integers are little-endian; "uvarint" is encoding/binary's unsigned
// varint and "varint" its zigzag signed varint. A file is a header followed
// by blocks: chunks of exit records, in the order vCPUs filled them, and one
// end block.
//
// Header, 36 bytes:
//
//	offset  size  field
//	0       8     magic "GVMMTRC\x00"
//	8       2     format version (1)
//	10      2     flags, 0 (readers reject others)
//	12      4     number of vCPUs
//	16      8     wall-clock time at the start, Unix ns (int64)
//	24      8     monotonic time (vcpu.Now) at the same instant, ns (int64)
//	32      4     CRC-32C of bytes 0-31
//
// Chunk block:
//
//	size     field
//	1        tag 'C'
//	uvarint  vCPU index
//	uvarint  number of exit records in the payload
//	varint   base: time of the chunk's first exit, ns since the header's monotonic time
//	uvarint  payload length, at most 1 MiB
//	n        payload: entries, below
//	4        CRC-32C of the block from the tag to the end of the payload
//
// End block, written once, last, by Close:
//
//	size     field
//	1        tag 'E'
//	uvarint  number of vCPUs
//	uvarint  for each vCPU, the number of exit records written
//	4        CRC-32C of the block from the tag
//
// A payload holds entries. Each starts with a uvarint h; h's low bit tells
// an exit record (0) from a control entry (1).
//
// Exit record, h = key<<3 | raw<<2 | hasCount<<1:
//
//	size     field
//	uvarint  h: key is an id from the vCPU's key table, below
//	varint   time of this exit minus that of the previous exit in the chunk (of the base, for the first)
//	uvarint  handling time, ns (vcpu.Exit.HandleNs)
//	uvarint  time in KVM_RUN before the exit, ns (vcpu.Exit.RunNs)
//	uvarint  data: up to 8 bytes moved, little-endian (I/O and MMIO; else 0)
//	uvarint  repeat count of string I/O, present only if hasCount
//	varint   slot, present only if raw
//	uvarint  offset within the device, present only if raw
//	uvarint  port or address, present only if raw
//	1        access size, present only if raw
//
// Key definition, h = 1. Each vCPU numbers its keys 0, 1, 2... in the order
// it defines them; a key is defined in the vCPU's stream before its first
// use, so reading one vCPU's chunks in order always finds the definition.
//
//	size     field
//	uvarint  h = 1
//	1        exit kind (vcpu.Kind)
//	uvarint  KVM exit reason
//	varint   slot of the device on its bus, -1 when none claims the access
//	uvarint  offset of the register within the device
//	uvarint  port or guest-physical address
//	1        access size in bytes
//	1        emulated instruction (fallback.Op), fallback exits only
//	1        flags: bit 0 raw (records carry slot, offset, address and size themselves)
//	uvarint  length (at most 255), then the device name (from stats.Namer; may be empty)
//	uvarint  length (at most 255), then the register name, or the instruction's name for fallback exits
//
// A key stands for everything constant about an access: for I/O and MMIO the
// device register, port or address and size; for fallback exits the
// instruction; for other exits the reason. Records then carry only what
// varies. Once a vCPU has defined 4096 keys, further accesses use one raw key
// per kind and reason, whose records spell the access out, so that a guest scanning
// address space cannot grow the writer's tables without bound.
//
// Other values of h with the low bit set are reserved; readers reject them.
package trace

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"time"
)

// Format constants.
const (
	// Magic starts every trace file.
	Magic = "GVMMTRC\x00"
	// Version is the format version this package writes and reads.
	Version = 1

	headerSize = 36
	tagChunk   = 'C'
	tagEnd     = 'E'

	entryKeyDef = 1 // h of a key definition

	flagRaw = 1 // key definition flag: records carry the access fields

	// maxPayload bounds a chunk's payload. Writers stay near chunkSize;
	// the bound keeps a corrupt length from making a reader allocate
	// without limit.
	maxPayload = 1 << 20
	// maxVCPUs bounds the header's vCPU count for the same reason; it is
	// KVM's own limit on x86 (KVM_MAX_VCPUS).
	maxVCPUs = 4096
	// maxName bounds a name in a key definition.
	maxName = 255
)

// Errors a Reader returns, wrapped with where and what went wrong.
var (
	// ErrNotTrace means the input does not start with Magic.
	ErrNotTrace = errors.New("not a gvmm exit trace")
	// ErrVersion means the trace was written in a format this package
	// does not know.
	ErrVersion = errors.New("unsupported trace format")
	// ErrTruncated means the input ended early: in the middle of a block,
	// or before the end block (the writer was not closed: gvmm was killed
	// or crashed). Records before the cut were returned.
	ErrTruncated = errors.New("truncated")
	// ErrCorrupt means the input is damaged: a checksum mismatch or a
	// malformed entry.
	ErrCorrupt = errors.New("corrupt")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Header is the information at the start of a trace.
type Header struct {
	// Version is the format version.
	Version uint16
	// VCPUs is the number of vCPUs the VM had.
	VCPUs int
	// Start is the wall-clock time the trace started.
	Start time.Time
	// Mono is the monotonic clock (vcpu.Now) at Start, in ns: the origin
	// of Record.Time.
	Mono int64
}

// Wall converts a Record.Time to wall-clock time.
func (h Header) Wall(t int64) time.Time { return h.Start.Add(time.Duration(t)) }

func appendHeader(b []byte, h Header) []byte {
	b = append(b, Magic...)
	b = binary.LittleEndian.AppendUint16(b, h.Version)
	b = binary.LittleEndian.AppendUint16(b, 0)
	b = binary.LittleEndian.AppendUint32(b, uint32(h.VCPUs))
	b = binary.LittleEndian.AppendUint64(b, uint64(h.Start.UnixNano()))
	b = binary.LittleEndian.AppendUint64(b, uint64(h.Mono))
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}
