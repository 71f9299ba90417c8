package pci

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/gvmm/gvmm/devices"
)

// Configuration mechanism #1 (PCI Local Bus Specification 3.0, section
// 3.2.2.3.2): a 32-bit CONFIG_ADDRESS register at port 0xCF8 (bit 31
// enable, bits 23:16 bus, 15:11 device, 10:8 function, 7:2 register) and a
// 32-bit CONFIG_DATA window at 0xCFC-0xCFF.
const (
	ConfigAddressPort = 0xCF8
	// ConfigIOSize covers CONFIG_ADDRESS and CONFIG_DATA.
	ConfigIOSize   = 8
	configEnable   = 1 << 31
	configDataOff  = 4
	configAddrMask = 0x80FF_FFFC
)

// ECAM (PCI Express Base Specification 4.0, section 7.2.2): 4 KiB of
// configuration space per function at bus<<20 | device<<15 | function<<12.
const (
	// ECAMBusSize is the ECAM window of one bus.
	ECAMBusSize = 1 << 20
	// Slots is the number of devices on a bus.
	Slots = 32
)

// Host bridge identity: Red Hat's "QEMU PCIe host bridge" ID (1b36:0008),
// which Linux drives with no quirks, as class 06/00/00 (host bridge), the
// class Linux's mechanism #1 probe looks for (pci_sanity_check).
const (
	hostBridgeVendor = 0x1B36
	hostBridgeDevice = 0x0008
)

// INTxGSIBase is the first I/O APIC pin PCI INTx lines use: pins 16-23 are
// free of ISA IRQs. Device d's INTA# is GSI INTxGSIBase + d%8 (see
// INTxGSI); the ACPI _PRT says the same.
const INTxGSIBase = 16

// INTxGSI returns the GSI that pin (1-4 for INTA#-INTD#) of the device in
// slot routes to: pins rotate across the eight GSIs from INTxGSIBase, as
// the swizzle on PC boards spreads them.
func INTxGSI(slot int, pin uint8) uint32 {
	return INTxGSIBase + uint32((slot+int(pin)-1)%8)
}

// Root is bus 0 behind the host bridge: up to 32 single-function devices,
// reached through mechanism #1 (ConfigIO) and ECAM (ECAM), whose BARs it
// keeps placed on an MMIO bus as the guest moves them.
type Root struct {
	mmio *devices.Bus
	// window is where Add assigns BARs: [start, end), the next one from
	// next.
	start, next, end uint64

	mu    sync.Mutex
	slots [Slots]*Function
	// barSlots[d][i] is the MMIO bus slot of device d's BAR i, or -1.
	barSlots [Slots][numBARs]int

	address atomic.Uint32
}

// NewRoot returns a bus whose device 0 is the host bridge and whose BARs
// are assigned from [windowStart, windowEnd) and placed on mmio.
func NewRoot(mmio *devices.Bus, windowStart, windowEnd uint64) (*Root, error) {
	r := &Root{mmio: mmio, start: windowStart, next: windowStart, end: windowEnd}
	for d := range r.barSlots {
		for i := range r.barSlots[d] {
			r.barSlots[d][i] = -1
		}
	}
	host, err := NewFunction(Header{VendorID: hostBridgeVendor, DeviceID: hostBridgeDevice, Class: ClassBridgeHost}, nil, nil)
	if err != nil {
		return nil, err
	}
	if err := r.Add(0, host, "host-bridge"); err != nil {
		return nil, err
	}
	return r, nil
}

// Add places f in slot, assigns its BARs naturally aligned addresses from
// the window and enables memory decoding and bus mastering, as firmware
// would, and puts the BARs on the MMIO bus under name.
func (r *Root) Add(slot int, f *Function, name string) error {
	if slot < 0 || slot >= Slots {
		return fmt.Errorf("pci: slot %d: must be 0 to %d", slot, Slots-1)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.slots[slot] != nil {
		return fmt.Errorf("pci: slot %d is taken", slot)
	}
	var addrs [numBARs]uint64
	next := r.next
	for i := range f.bars {
		b := f.bars[i].BAR
		if b.Size == 0 {
			continue
		}
		a := (next + b.Size - 1) &^ (b.Size - 1)
		if a < next || a+b.Size > r.end || a+b.Size < a {
			return fmt.Errorf("pci: %s BAR %d (%#x bytes) does not fit in the window [%#x, %#x)", name, i, b.Size, r.start, r.end)
		}
		addrs[i] = a
		next = a + b.Size
	}
	for i := range f.bars {
		b := f.bars[i].BAR
		if b.Size == 0 {
			continue
		}
		n := b.Name
		if n == "" {
			n = fmt.Sprintf("bar%d", i)
		}
		s, err := r.mmio.InsertSlot(b.Region, name+"."+n, addrs[i], b.Size)
		if err != nil {
			return fmt.Errorf("pci: %s: %w", name, err)
		}
		r.mmio.Remove(s) // mapped when decoding is turned on below
		r.barSlots[slot][i] = s
	}
	r.next = next
	r.slots[slot] = f
	slots := r.barSlots[slot]
	// The root's hook runs first: it moves the region on the bus before the
	// device's own hooks (ioeventfds) follow it.
	f.mu.Lock()
	f.hooks = append([]BARHook{func(bar int, addr uint64, mapped bool) {
		s := slots[bar]
		if s < 0 {
			return
		}
		if !mapped {
			r.mmio.Remove(s)
			return
		}
		if err := r.mmio.Move(s, addr); err != nil {
			// Overlapping another device: not decoded, as two
			// devices claiming one address would be undefined.
			r.mmio.Remove(s)
		}
	}}, f.hooks...)
	f.mu.Unlock()
	for i := range f.bars {
		if f.bars[i].Size != 0 {
			f.Assign(i, addrs[i], CommandMemory|CommandBusMaster)
		}
	}
	return nil
}

// Function returns the function in slot, or nil.
func (r *Root) Function(slot int) *Function {
	r.mu.Lock()
	defer r.mu.Unlock()
	if slot < 0 || slot >= Slots {
		return nil
	}
	return r.slots[slot]
}

// Window returns the range BARs are assigned from, [start, end): the
// memory window the host bridge forwards to the bus.
func (r *Root) Window() (start, end uint64) { return r.start, r.end }

// lookup returns the function at bus, device, function; only bus 0
// function 0 of each slot exists.
func (r *Root) lookup(bus, dev, fn uint32) *Function {
	if bus != 0 || fn != 0 || dev >= Slots {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.slots[dev]
}

// access reads or writes reg of the addressed function; absent functions
// read all ones (a master abort) and drop writes.
func (r *Root) access(bus, dev, fn uint32, reg uint64, data []byte, write bool) {
	f := r.lookup(bus, dev, fn)
	if f == nil {
		if !write {
			for i := range data {
				data[i] = 0xFF
			}
		}
		return
	}
	if write {
		f.WriteConfig(reg, data)
	} else {
		f.ReadConfig(reg, data)
	}
}

// ConfigIO returns the device for ports ConfigAddressPort to
// ConfigAddressPort+ConfigIOSize-1.
func (r *Root) ConfigIO() devices.Device { return configIO{r} }

// ECAM returns the device for the ECAM window of bus 0 (ECAMBusSize bytes).
func (r *Root) ECAM() devices.Device { return ecam{r} }

type configIO struct{ r *Root }

func (c configIO) Read(off uint64, data []byte) {
	switch {
	case off == 0 && len(data) == 4:
		binary.LittleEndian.PutUint32(data, c.r.address.Load())
	case off >= configDataOff && off+uint64(len(data)) <= ConfigIOSize:
		a := c.r.address.Load()
		if a&configEnable == 0 {
			for i := range data {
				data[i] = 0xFF
			}
			return
		}
		c.r.access(a>>16&0xFF, a>>11&0x1F, a>>8&0x7, uint64(a&0xFC)+off-configDataOff, data, false)
	default:
		// Byte and word accesses to 0xCF8-0xCFB are not CONFIG_ADDRESS
		// (section 3.2.2.3.2); nothing else is there.
		for i := range data {
			data[i] = 0xFF
		}
	}
}

func (c configIO) Write(off uint64, data []byte) {
	switch {
	case off == 0 && len(data) == 4:
		c.r.address.Store(binary.LittleEndian.Uint32(data) & configAddrMask)
	case off >= configDataOff && off+uint64(len(data)) <= ConfigIOSize:
		a := c.r.address.Load()
		if a&configEnable == 0 {
			return
		}
		c.r.access(a>>16&0xFF, a>>11&0x1F, a>>8&0x7, uint64(a&0xFC)+off-configDataOff, data, true)
	}
}

type ecam struct{ r *Root }

func (e ecam) decode(off uint64, n int) (bus, dev, fn uint32, reg uint64, ok bool) {
	reg = off & (ConfigSize - 1)
	// An access must not cross into the next function's space.
	if reg+uint64(n) > ConfigSize {
		return 0, 0, 0, 0, false
	}
	return uint32(off >> 20), uint32(off>>15) & 0x1F, uint32(off>>12) & 0x7, reg, true
}

func (e ecam) Read(off uint64, data []byte) {
	bus, dev, fn, reg, ok := e.decode(off, len(data))
	if !ok {
		for i := range data {
			data[i] = 0xFF
		}
		return
	}
	e.r.access(bus, dev, fn, reg, data, false)
}

func (e ecam) Write(off uint64, data []byte) {
	if bus, dev, fn, reg, ok := e.decode(off, len(data)); ok {
		e.r.access(bus, dev, fn, reg, data, true)
	}
}
