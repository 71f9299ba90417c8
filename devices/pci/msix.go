package pci

import (
	"encoding/binary"
	"fmt"
	"sync"
)

// MSIMessage is what a message-signalled interrupt writes: Data to
// Address (PCI Local Bus Specification 3.0, section 6.8.2.4; on x86 the
// address selects the local APIC and the data the vector, Intel SDM vol.
// 3A section 10.11).
type MSIMessage struct {
	Address uint64
	Data    uint32
}

// MSIVector is one interrupt vector the platform delivers for a device.
// The VMM implements it; a device knows only that it can route and trigger
// it. Its methods may be called from any goroutine.
type MSIVector interface {
	// SetMessage routes the vector to msg. MSIX calls it before the first
	// Trigger after the guest programs or unmasks the entry.
	SetMessage(msg MSIMessage) error
	// Trigger delivers the interrupt.
	Trigger() error
}

// MSI-X capability layout (section 6.8.2): ID, next, message control
// (bits 10:0 table size - 1, bit 14 function mask, bit 15 enable), table
// offset/BIR, PBA offset/BIR.
const (
	CapIDMSIX        = 0x11
	msixCapSize      = 12
	msixCtrlOff      = 2
	msixTableOff     = 4
	msixPBAOff       = 8
	msixEnable       = 1 << 15
	msixFunctionMask = 1 << 14
	// MSIXEntrySize is the size of one table entry: message address low
	// and high, message data, vector control (bit 0: masked).
	MSIXEntrySize = 16
	// MaxMSIXVectors is the largest table the capability can describe.
	MaxMSIXVectors = 2048
	vectorMasked   = 1
)

// MSIXTableSize returns the bytes a table of n entries occupies.
func MSIXTableSize(n int) uint64 { return uint64(n) * MSIXEntrySize }

// MSIXPBASize returns the bytes the pending bit array of n vectors
// occupies, in whole quadwords (section 6.8.2.10).
func MSIXPBASize(n int) uint64 { return uint64((n+63)/64) * 8 }

type msixEntry struct {
	addr    uint64
	data    uint32
	ctrl    uint32
	routed  bool
	route   MSIMessage
	pending bool
}

// MSIX is an MSI-X capability with its table and pending bit array. The
// table and PBA live in a BAR that the device's region handler forwards to
// ReadTable, WriteTable and ReadPBA. Safe for concurrent use: vCPUs program
// the table while device workers call Notify.
type MSIX struct {
	mu       sync.Mutex
	entries  []msixEntry
	vectors  []MSIVector
	ctrl     uint16
	tableBIR uint32 // offset | BAR index
	pbaBIR   uint32
	// routeErr is the last routing failure, for diagnostics.
	routeErr error
}

// NewMSIX returns the capability for len(vectors) vectors whose table is at
// tableOff and whose PBA is at pbaOff in BAR bar. Every entry starts masked
// and the capability disabled, as after reset (section 6.8.2.9).
func NewMSIX(vectors []MSIVector, bar int, tableOff, pbaOff uint32) (*MSIX, error) {
	n := len(vectors)
	switch {
	case n == 0 || n > MaxMSIXVectors:
		return nil, fmt.Errorf("pci: MSI-X table of %d vectors: 1 to %d", n, MaxMSIXVectors)
	case bar < 0 || bar >= numBARs:
		return nil, fmt.Errorf("pci: MSI-X in BAR %d", bar)
	case tableOff%8 != 0 || pbaOff%8 != 0:
		return nil, fmt.Errorf("pci: MSI-X table at %#x, PBA at %#x: not 8-byte aligned", tableOff, pbaOff)
	}
	m := &MSIX{entries: make([]msixEntry, n), vectors: vectors,
		tableBIR: tableOff | uint32(bar), pbaBIR: pbaOff | uint32(bar)}
	for i := range m.entries {
		m.entries[i].ctrl = vectorMasked
	}
	return m, nil
}

// ID implements Capability.
func (m *MSIX) ID() uint8 { return CapIDMSIX }

// Size implements Capability.
func (m *MSIX) Size() int { return msixCapSize }

// Read implements Capability.
func (m *MSIX) Read(off int, data []byte) {
	m.mu.Lock()
	var b [msixCapSize]byte
	binary.LittleEndian.PutUint16(b[msixCtrlOff:], m.ctrl|uint16(len(m.entries)-1))
	m.mu.Unlock()
	binary.LittleEndian.PutUint32(b[msixTableOff:], m.tableBIR)
	binary.LittleEndian.PutUint32(b[msixPBAOff:], m.pbaBIR)
	for i := range data {
		if o := off + i; o >= 0 && o < msixCapSize {
			data[i] = b[o]
		} else {
			data[i] = 0
		}
	}
}

// Write implements Capability: only the enable and function mask bits of
// message control are writable.
func (m *MSIX) Write(off int, data []byte) {
	m.mu.Lock()
	var fire []MSIVector
	for i, v := range data {
		switch off + i {
		case msixCtrlOff:
			// Bits 7:0 are the read-only table size.
		case msixCtrlOff + 1:
			m.ctrl = uint16(v&0xC0) << 8
			fire = m.deliverPendingLocked(fire)
		}
	}
	m.mu.Unlock()
	m.fire(fire)
}

// Enabled reports whether the guest enabled MSI-X: the device must then
// signal through Notify rather than INTx (section 6.8.2.3).
func (m *MSIX) Enabled() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ctrl&msixEnable != 0
}

// Vectors returns the table size.
func (m *MSIX) Vectors() int { return len(m.entries) }

// Notify signals vector v: it is delivered now if MSI-X is enabled and
// neither the function nor the vector is masked, and otherwise left pending
// (the PBA bit is set) until the guest unmasks it. It returns false if
// MSI-X is disabled or v is not in the table, so the caller can fall back
// to INTx.
func (m *MSIX) Notify(v int) bool {
	m.mu.Lock()
	if m.ctrl&msixEnable == 0 || v < 0 || v >= len(m.entries) {
		m.mu.Unlock()
		return false
	}
	e := &m.entries[v]
	if m.ctrl&msixFunctionMask != 0 || e.ctrl&vectorMasked != 0 {
		e.pending = true
		m.mu.Unlock()
		return true
	}
	vec := m.routeLocked(v)
	m.mu.Unlock()
	if vec != nil {
		// Delivered outside the lock: the guest masking the vector at
		// this instant races as it would on hardware.
		_ = vec.Trigger()
	}
	return true
}

// routeLocked hands entry v's message to its vector if it changed since
// the last time, and returns the vector to trigger (nil if routing
// failed).
func (m *MSIX) routeLocked(v int) MSIVector {
	e := &m.entries[v]
	msg := MSIMessage{Address: e.addr, Data: e.data}
	if !e.routed || e.route != msg {
		if err := m.vectors[v].SetMessage(msg); err != nil {
			m.routeErr = fmt.Errorf("MSI-X vector %d: %w", v, err)
			e.routed = false
			return nil
		}
		e.routed, e.route = true, msg
	}
	return m.vectors[v]
}

// deliverPendingLocked collects the vectors whose pending bit can now be
// delivered (enabled, unmasked), clearing their bits.
func (m *MSIX) deliverPendingLocked(fire []MSIVector) []MSIVector {
	if m.ctrl&msixEnable == 0 || m.ctrl&msixFunctionMask != 0 {
		return fire
	}
	for i := range m.entries {
		e := &m.entries[i]
		if e.ctrl&vectorMasked != 0 {
			continue
		}
		// Route unmasked vectors now, so that the first Notify costs no
		// routing update.
		vec := m.routeLocked(i)
		if e.pending && vec != nil {
			e.pending = false
			fire = append(fire, vec)
		}
	}
	return fire
}

func (m *MSIX) fire(vecs []MSIVector) {
	for _, v := range vecs {
		_ = v.Trigger()
	}
}

// RouteError returns the last failure to route a vector, or nil.
func (m *MSIX) RouteError() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.routeErr
}

// ReadTable reads the MSI-X table at offset off from its start. Accesses
// must be 4 or 8 bytes, naturally aligned (section 6.8.2); others read as
// zero.
func (m *MSIX) ReadTable(off uint64, data []byte) {
	clear(data)
	if !aligned(off, len(data)) {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := 0; i < len(data); i += 4 {
		o := off + uint64(i)
		e := int(o / MSIXEntrySize)
		if e >= len(m.entries) {
			return
		}
		binary.LittleEndian.PutUint32(data[i:], m.entries[e].dword(int(o%MSIXEntrySize)/4))
	}
}

// WriteTable writes the MSI-X table at offset off from its start. A write
// that unmasks a vector with its pending bit set delivers it.
func (m *MSIX) WriteTable(off uint64, data []byte) {
	if !aligned(off, len(data)) {
		return
	}
	m.mu.Lock()
	var fire []MSIVector
	for i := 0; i < len(data); i += 4 {
		o := off + uint64(i)
		idx := int(o / MSIXEntrySize)
		if idx >= len(m.entries) {
			break
		}
		e := &m.entries[idx]
		v := binary.LittleEndian.Uint32(data[i:])
		switch (o % MSIXEntrySize) / 4 {
		case 0:
			e.addr = e.addr&^0xFFFFFFFF | uint64(v)
		case 1:
			e.addr = e.addr&0xFFFFFFFF | uint64(v)<<32
		case 2:
			e.data = v
		case 3:
			// Only the mask bit is defined; the rest are reserved.
			e.ctrl = v & vectorMasked
		}
		if m.ctrl&msixEnable != 0 && m.ctrl&msixFunctionMask == 0 && e.ctrl&vectorMasked == 0 {
			vec := m.routeLocked(idx)
			if e.pending && vec != nil {
				e.pending = false
				fire = append(fire, vec)
			}
		}
	}
	m.mu.Unlock()
	m.fire(fire)
}

// ReadPBA reads the pending bit array at offset off from its start.
func (m *MSIX) ReadPBA(off uint64, data []byte) {
	clear(data)
	if !aligned(off, len(data)) {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range data {
		bit := (off + uint64(i)) * 8
		for b := uint64(0); b < 8; b++ {
			if e := bit + b; e < uint64(len(m.entries)) && m.entries[e].pending {
				data[i] |= 1 << b
			}
		}
	}
}

func (e *msixEntry) dword(i int) uint32 {
	switch i {
	case 0:
		return uint32(e.addr)
	case 1:
		return uint32(e.addr >> 32)
	case 2:
		return e.data
	}
	return e.ctrl
}

func aligned(off uint64, n int) bool {
	return (n == 4 || n == 8) && off%uint64(n) == 0
}
