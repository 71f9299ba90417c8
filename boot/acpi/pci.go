package acpi

import (
	"encoding/binary"
	"fmt"
)

// PCIHostBridge describes the PCI host bridge: a PCI Express root
// (PNP0A08) whose bus 0 is reached through configuration mechanism #1 at
// ports 0xCF8-0xCFF and through ECAM at ECAMBase (described by the MCFG
// table), with one 32-bit memory window for BARs and INTx routed to GSIs.
//
// The DSDT gets
//
//	Scope (\_SB) {
//	    Device (PCI0) {
//	        Name (_HID, EisaId ("PNP0A08"))    // PCI Express root bridge
//	        Name (_CID, EisaId ("PNP0A03"))    // PCI root bridge
//	        Name (_SEG, 0)
//	        Name (_BBN, 0)
//	        Name (_UID, 0)
//	        Name (_CRS, ResourceTemplate () {
//	            WordBusNumber (ResourceProducer, ..., 0, 0, 0, 0, 1)
//	            IO (Decode16, 0xCF8, 0xCF8, 1, 8)
//	            WordIO (ResourceProducer, ..., 0x0000, 0x0CF7, ..., 0x0CF8)
//	            WordIO (ResourceProducer, ..., 0x0D00, 0xFFFF, ..., 0xF300)
//	            DWordMemory (ResourceProducer, ..., MemStart, MemEnd - 1, ...)
//	        })
//	        Name (_PRT, Package () {
//	            Package () { 0xSSSSFFFF, pin, 0, gsi }, ...   // GSI-based
//	        })
//	    }
//	}
//
// The I/O windows pass the legacy ports (and any I/O BAR) down to the bus,
// as on a PC; gvmm's functions have memory BARs only.
type PCIHostBridge struct {
	// ECAMBase is the guest-physical base of the ECAM window of bus 0
	// (1 MiB), reserved in the e820 map by the VMM.
	ECAMBase uint64
	// MemStart and MemEnd bound the memory window [MemStart, MemEnd) below
	// 4 GiB that BARs are assigned from.
	MemStart, MemEnd uint64
	// INTx maps a device's slot (0-31) and pin (1-4, INTA#-INTD#) to the
	// GSI the pin drives. GSI-based _PRT entries are level-triggered,
	// active-low and shareable (ACPI 6.5 §6.2.13).
	INTx func(slot int, pin uint8) uint32
}

// MCFG (PCI Firmware Specification 3.2 section 4.1.2): the header, 8
// reserved bytes, then 16-byte allocation structures {u64 base, u16
// segment, u8 start bus, u8 end bus, u32 reserved}.
const (
	mcfgRevision  = 1
	mcfgReserved  = 8
	mcfgAllocLen  = 16
	mcfgLen       = headerLen + mcfgReserved + mcfgAllocLen
	pnpPCIExpress = "PNP0A08"
	pnpPCI        = "PNP0A03"
	pciSlots      = 32
)

func buildMCFG(p *PCIHostBridge) []byte {
	t := newTable("MCFG", mcfgRevision, mcfgLen)
	a := t[headerLen+mcfgReserved:]
	binary.LittleEndian.PutUint64(a[0:], p.ECAMBase)
	binary.LittleEndian.PutUint16(a[8:], 0) // PCI segment group 0
	a[10], a[11] = 0, 0                     // buses 0 to 0
	return finishTable(t)
}

func checkPCI(p *PCIHostBridge) error {
	if p == nil {
		return nil
	}
	switch {
	case p.ECAMBase == 0 || p.ECAMBase%(1<<20) != 0:
		return fmt.Errorf("acpi: ECAM base %#x must be non-zero and 1 MiB aligned", p.ECAMBase)
	case p.MemStart >= p.MemEnd || p.MemEnd > 1<<32:
		return fmt.Errorf("acpi: PCI memory window [%#x, %#x) must be non-empty and below 4 GiB", p.MemStart, p.MemEnd)
	case p.INTx == nil:
		return fmt.Errorf("acpi: PCI host bridge without INTx routing")
	}
	return nil
}

// pciDevice returns Device(PCI0).
func pciDevice(p *PCIHostBridge) []byte {
	var prt [][]byte
	for slot := 0; slot < pciSlots; slot++ {
		for pin := uint8(1); pin <= 4; pin++ {
			prt = append(prt, amlPackage(
				amlInteger(uint64(slot)<<16|0xFFFF), // Address: device, any function (§6.2.13)
				amlInteger(uint64(pin-1)),           // Pin: 0 = INTA#
				amlInteger(0),                       // Source: none, a GSI
				amlInteger(uint64(p.INTx(slot, pin))),
			))
		}
	}
	return amlDevice("PCI0",
		amlName("_HID", amlEISAID(pnpPCIExpress)), // §6.1.5
		amlName("_CID", amlEISAID(pnpPCI)),        // §6.1.2
		amlName("_SEG", amlInteger(0)),            // §6.5.6
		amlName("_BBN", amlInteger(0)),            // §6.5.5
		amlName("_UID", amlInteger(0)),            // §6.1.12
		amlName("_CRS", amlResourceTemplate( // §6.2.2
			amlWordAddress(addrBus, 0, 0, 0, 1),
			amlIOPort(0xCF8, 8),
			amlWordAddress(addrIO, ioRangeEntire, 0x0000, 0x0CF7, 0x0CF8),
			amlWordAddress(addrIO, ioRangeEntire, 0x0D00, 0xFFFF, 0xF300),
			amlDWordMemory(uint32(p.MemStart), uint32(p.MemEnd-1)),
		)),
		amlName("_PRT", amlPackageN(prt)), // §6.2.13
	)
}

// amlPackageN is amlPackage for more than 255 elements (VarPackageOp is
// not needed: NumElements is a byte, so at most 255; _PRT has 128).
func amlPackageN(elems [][]byte) []byte { return amlPackage(elems...) }

// amlEISAID encodes a 7-character PNP ID as the 32-bit compressed EISA ID
// integer ASL's EisaId() produces (ACPI 6.5 §6.1.5): three 5-bit letters
// ('A' = 1) and four hex digits, stored big-endian in a DWord.
func amlEISAID(id string) []byte {
	if len(id) != 7 {
		panic(fmt.Sprintf("acpi: EISA ID %q is not 7 characters", id))
	}
	l := func(c byte) uint32 { return uint32(c-'A'+1) & 0x1F }
	hex := func(c byte) uint32 {
		switch {
		case c >= '0' && c <= '9':
			return uint32(c - '0')
		case c >= 'A' && c <= 'F':
			return uint32(c-'A') + 10
		}
		panic(fmt.Sprintf("acpi: EISA ID %q: bad hex digit", id))
	}
	v := l(id[0])<<26 | l(id[1])<<21 | l(id[2])<<16 |
		hex(id[3])<<12 | hex(id[4])<<8 | hex(id[5])<<4 | hex(id[6])
	// The integer's bytes are the ID in big-endian order.
	return amlInteger(uint64(v>>24 | v>>8&0xFF00 | v<<8&0xFF0000 | v<<24&0xFF000000))
}
