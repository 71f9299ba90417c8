package pci

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/gvmm/gvmm/devices"
)

// Configuration header offsets (PCI Local Bus Specification 3.0, section
// 6.1, figure 6-1, type 00h header).
const (
	RegVendorID      = 0x00
	RegDeviceID      = 0x02
	RegCommand       = 0x04
	RegStatus        = 0x06
	RegRevision      = 0x08
	RegClass         = 0x09 // programming interface, subclass, base class
	RegCacheLine     = 0x0C
	RegHeaderType    = 0x0E
	RegBAR0          = 0x10
	RegSubsysVendor  = 0x2C
	RegSubsysID      = 0x2E
	RegExpansionROM  = 0x30
	RegCapPtr        = 0x34
	RegInterruptLine = 0x3C
	RegInterruptPin  = 0x3D

	headerSize = 0x40
	// ConfigSize is the configuration space of a function through ECAM
	// (PCI Express: 4 KiB); mechanism #1 reaches the first 256 bytes.
	ConfigSize = 0x1000
	// legacyConfigSize is where capabilities must end: the conventional
	// 256-byte space.
	legacyConfigSize = 0x100
)

// Command register bits (section 6.2.2).
const (
	CommandIO          = 1 << 0
	CommandMemory      = 1 << 1
	CommandBusMaster   = 1 << 2
	CommandParity      = 1 << 6
	CommandSERR        = 1 << 8
	CommandINTxDisable = 1 << 10
	// commandWritable are the bits a guest can set; the rest read 0.
	commandWritable = CommandIO | CommandMemory | CommandBusMaster | CommandParity | CommandSERR | CommandINTxDisable
)

// StatusCapList is the status register's Capabilities List bit (section
// 6.2.3): the function has a capability list at RegCapPtr.
const StatusCapList = 1 << 4

// BAR flag bits of a memory BAR (section 6.2.5.1): bits 2:1 the type (00
// 32-bit, 10 64-bit), bit 3 prefetchable; bits 3:0 are read-only.
const (
	barMem64         = 0x4
	barPrefetch      = 0x8
	barFlagsMask     = 0xF
	numBARs          = 6
	minMemoryBARSize = 16
)

// Class codes (PCI Code and ID Assignment Specification).
const (
	ClassStorageSCSI  = 0x010000
	ClassStorageOther = 0x018000
	ClassNetEthernet  = 0x020000
	ClassBridgeHost   = 0x060000
)

// Header is the identity of a type-0 function.
type Header struct {
	VendorID, DeviceID             uint16
	SubsystemVendorID, SubsystemID uint16
	Revision                       uint8
	// Class is the 24-bit class code: base class, subclass, programming
	// interface.
	Class uint32
	// InterruptPin is 1 for INTA# (the only pin functions here use), 0
	// for none.
	InterruptPin uint8
}

// BAR describes one memory base address register.
type BAR struct {
	// Size is the BAR's length, a power of 2 of at least 16 bytes.
	Size uint64
	// Is64 makes it a 64-bit BAR, taking this slot and the next.
	Is64 bool
	// Prefetchable sets the prefetchable bit.
	Prefetchable bool
	// Region handles accesses to the BAR, at offsets from its start.
	Region devices.Device
	// Name names the region on the MMIO bus.
	Name string
}

// Capability is one entry of a function's capability list (section 6.7).
// The Function fills in the first two bytes (the ID and the next
// pointer); Read and Write see offsets from the capability's start and
// handle the bytes after those two. They are called with the Function's
// lock held and must not call back into it.
type Capability interface {
	// ID is the capability ID (0x09 vendor-specific, 0x11 MSI-X).
	ID() uint8
	// Size is the capability's length in bytes, header included.
	Size() int
	Read(off int, data []byte)
	Write(off int, data []byte)
}

// BARHook is told where a BAR is now decoded: at addr if mapped, nowhere if
// not. It is called on the vCPU thread that made the change, with the
// Function's lock held: it must not call back into the Function.
type BARHook func(bar int, addr uint64, mapped bool)

type barState struct {
	BAR
	// addr is the address the guest programmed (or firmware assigned).
	addr uint64
	// mapped and at are where the BAR was last decoded.
	mapped bool
	at     uint64
}

type capSlot struct {
	off int
	cap Capability
}

// Function is a type-0 PCI function: its configuration space, BARs and
// capabilities. Safe for concurrent use.
type Function struct {
	mu    sync.Mutex
	hdr   Header
	regs  [headerSize]byte
	bars  [numBARs]barState
	caps  []capSlot
	hooks []BARHook
}

// NewFunction returns a function with the given identity, BARs (index i is
// BAR i; a 64-bit BAR leaves the next index empty) and capabilities, laid
// out from offset 0x40 in order. It fails on a malformed BAR or when the
// capabilities do not fit in the first 256 bytes.
func NewFunction(h Header, bars []BAR, caps []Capability) (*Function, error) {
	f := &Function{hdr: h}
	if len(bars) > numBARs {
		return nil, fmt.Errorf("pci: %d BARs, at most %d", len(bars), numBARs)
	}
	for i, b := range bars {
		if b.Size == 0 {
			continue
		}
		if b.Size < minMemoryBARSize || b.Size&(b.Size-1) != 0 {
			return nil, fmt.Errorf("pci: BAR %d size %#x is not a power of 2 of at least %d", i, b.Size, minMemoryBARSize)
		}
		if b.Region == nil {
			return nil, fmt.Errorf("pci: BAR %d has no region", i)
		}
		if b.Is64 && (i == numBARs-1 || (i+1 < len(bars) && bars[i+1].Size != 0)) {
			return nil, fmt.Errorf("pci: 64-bit BAR %d needs BAR %d free", i, i+1)
		}
		if !b.Is64 && b.Size > 1<<31 {
			return nil, fmt.Errorf("pci: 32-bit BAR %d of %#x bytes", i, b.Size)
		}
		f.bars[i].BAR = b
	}
	le := binary.LittleEndian
	le.PutUint16(f.regs[RegVendorID:], h.VendorID)
	le.PutUint16(f.regs[RegDeviceID:], h.DeviceID)
	f.regs[RegRevision] = h.Revision
	f.regs[RegClass] = byte(h.Class)
	f.regs[RegClass+1] = byte(h.Class >> 8)
	f.regs[RegClass+2] = byte(h.Class >> 16)
	le.PutUint16(f.regs[RegSubsysVendor:], h.SubsystemVendorID)
	le.PutUint16(f.regs[RegSubsysID:], h.SubsystemID)
	f.regs[RegInterruptPin] = h.InterruptPin
	off := headerSize
	for _, c := range caps {
		size := (c.Size() + 3) &^ 3
		if c.Size() < 2 || off+size > legacyConfigSize {
			return nil, fmt.Errorf("pci: capability %#x of %d bytes does not fit at %#x", c.ID(), c.Size(), off)
		}
		f.caps = append(f.caps, capSlot{off: off, cap: c})
		off += size
	}
	if len(f.caps) > 0 {
		le.PutUint16(f.regs[RegStatus:], StatusCapList)
		f.regs[RegCapPtr] = byte(f.caps[0].off)
	}
	for i := range f.bars {
		f.storeBAR(i)
	}
	return f, nil
}

// Header returns the function's identity.
func (f *Function) Header() Header { return f.hdr }

// BAR returns BAR i's description and its programmed address.
func (f *Function) BAR(i int) (BAR, uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if i < 0 || i >= numBARs {
		return BAR{}, 0
	}
	return f.bars[i].BAR, f.bars[i].addr
}

// AddBARHook adds a hook told of every change of where a BAR is decoded.
// Call it before the guest runs.
func (f *Function) AddBARHook(h BARHook) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hooks = append(f.hooks, h)
}

// Assign programs BAR i's address and sets the command register, as
// firmware does before the OS boots, and tells the hooks.
func (f *Function) Assign(i int, addr uint64, command uint16) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if i >= 0 && i < numBARs && f.bars[i].Size != 0 {
		f.bars[i].addr = addr &^ (f.bars[i].Size - 1)
		f.storeBAR(i)
	}
	binary.LittleEndian.PutUint16(f.regs[RegCommand:], command&commandWritable)
	f.update()
}

// Command returns the command register.
func (f *Function) Command() uint16 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return binary.LittleEndian.Uint16(f.regs[RegCommand:])
}

// storeBAR writes BAR i's register image from its address and flags.
func (f *Function) storeBAR(i int) {
	b := &f.bars[i]
	r := f.regs[RegBAR0+4*i:]
	if b.Size == 0 {
		// A 64-bit BAR's upper half is written by the BAR below.
		if i > 0 && f.bars[i-1].Is64 && f.bars[i-1].Size != 0 {
			binary.LittleEndian.PutUint32(r, uint32(f.bars[i-1].addr>>32))
		} else {
			binary.LittleEndian.PutUint32(r, 0)
		}
		return
	}
	lo := uint32(b.addr) &^ barFlagsMask
	if b.Is64 {
		lo |= barMem64
	}
	if b.Prefetchable {
		lo |= barPrefetch
	}
	binary.LittleEndian.PutUint32(r, lo)
	if b.Is64 {
		binary.LittleEndian.PutUint32(f.regs[RegBAR0+4*(i+1):], uint32(b.addr>>32))
	}
}

// update recomputes where each BAR is decoded and tells the hooks of
// changes.
func (f *Function) update() {
	mem := binary.LittleEndian.Uint16(f.regs[RegCommand:])&CommandMemory != 0
	for i := range f.bars {
		b := &f.bars[i]
		if b.Size == 0 {
			continue
		}
		limit := uint64(1) << 32
		if b.Is64 {
			limit = 0 // the whole 64-bit space
		}
		end := b.addr + b.Size
		mapped := mem && b.addr != 0 && end > b.addr && (limit == 0 || end <= limit)
		if mapped == b.mapped && (!mapped || b.at == b.addr) {
			continue
		}
		b.mapped, b.at = mapped, b.addr
		for _, h := range f.hooks {
			h(i, b.addr, mapped)
		}
	}
}

// ReadConfig reads the configuration space at offset off (any offset and
// length: bytes past ConfigSize, and unimplemented registers, read 0).
func (f *Function) ReadConfig(off uint64, data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, start := f.capAt(off, len(data)); c != nil {
		c.cap.Read(start, data)
		for i := range data {
			switch start + i {
			case 0:
				data[i] = c.cap.ID()
			case 1:
				data[i] = f.nextCap(c)
			}
		}
		return
	}
	for i := range data {
		data[i] = f.readByte(off + uint64(i))
	}
}

func (f *Function) readByte(off uint64) byte {
	if off < headerSize {
		return f.regs[off]
	}
	if c, start := f.capAt(off, 1); c != nil {
		var b [1]byte
		switch start {
		case 0:
			return c.cap.ID()
		case 1:
			return f.nextCap(c)
		}
		c.cap.Read(start, b[:])
		return b[0]
	}
	return 0
}

func (f *Function) nextCap(c *capSlot) byte {
	for i := range f.caps {
		if &f.caps[i] == c && i+1 < len(f.caps) {
			return byte(f.caps[i+1].off)
		}
	}
	return 0
}

// capAt returns the capability that holds all of [off, off+n) and off's
// offset in it.
func (f *Function) capAt(off uint64, n int) (*capSlot, int) {
	for i := range f.caps {
		c := &f.caps[i]
		start, size := uint64(c.off), uint64(c.cap.Size())
		if off >= start && off-start+uint64(n) <= size {
			return c, int(off - start)
		}
	}
	return nil, 0
}

// WriteConfig writes the configuration space at offset off. Read-only
// bits, and bytes outside any register, are dropped.
func (f *Function) WriteConfig(off uint64, data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, start := f.capAt(off, len(data)); c != nil {
		if start >= 2 {
			c.cap.Write(start, data)
		} else if start+len(data) > 2 {
			c.cap.Write(2, data[2-start:])
		}
		return
	}
	header := false
	for i, v := range data {
		o := off + uint64(i)
		switch {
		case o >= RegCommand && o < RegCommand+2:
			f.regs[o] = v & byte(uint16(commandWritable)>>(8*(o-RegCommand)))
			header = true
		case o == RegCacheLine || o == RegInterruptLine:
			f.regs[o] = v
		case o >= RegBAR0 && o < RegBAR0+4*numBARs:
			f.regs[o] = v
			header = true
		case o >= headerSize:
			if c, start := f.capAt(o, 1); c != nil && start >= 2 {
				c.cap.Write(start, data[i:i+1])
			}
		}
	}
	if header {
		f.latchBARs()
		f.update()
	}
}

// latchBARs takes the addresses the guest wrote into the BAR registers,
// keeping only the bits a BAR of its size decodes (section 6.2.5.1: writing
// all ones and reading back returns the size), and rewrites the registers.
func (f *Function) latchBARs() {
	le := binary.LittleEndian
	for i := range f.bars {
		b := &f.bars[i]
		if b.Size == 0 {
			continue
		}
		addr := uint64(le.Uint32(f.regs[RegBAR0+4*i:]))
		if b.Is64 {
			addr |= uint64(le.Uint32(f.regs[RegBAR0+4*(i+1):])) << 32
		}
		b.addr = addr &^ (b.Size - 1)
		f.storeBAR(i)
	}
	// Registers of absent BARs read 0 whatever was written: sizing them
	// returns 0, "not implemented".
	for i := range f.bars {
		if f.bars[i].Size == 0 {
			f.storeBAR(i)
		}
	}
}
