package pci

import "encoding/binary"

// Virtio structure PCI capabilities (virtio 1.2 section 4.1.4): struct
// virtio_pci_cap { u8 cap_vndr; u8 cap_next; u8 cap_len; u8 cfg_type;
// u8 bar; u8 id; u8 padding[2]; le32 offset; le32 length; }, 16 bytes,
// followed by le32 notify_off_multiplier for the notification capability
// (section 4.1.4.4) and u8 pci_cfg_data[4] for the PCI configuration access
// capability (section 4.1.4.9).
const (
	capVendor    = 0x09 // PCI_CAP_ID_VNDR
	capLen       = 16
	notifyCapLen = 20
	pciCfgCapLen = 20

	cfgTypeCommon = 1 // VIRTIO_PCI_CAP_COMMON_CFG
	cfgTypeNotify = 2 // VIRTIO_PCI_CAP_NOTIFY_CFG
	cfgTypeISR    = 3 // VIRTIO_PCI_CAP_ISR_CFG
	cfgTypeDevice = 4 // VIRTIO_PCI_CAP_DEVICE_CFG
	cfgTypePCI    = 5 // VIRTIO_PCI_CAP_PCI_CFG

	capOffBar    = 4
	capOffOffset = 8
	capOffLength = 12
	capOffExtra  = 16
)

// structCap is a virtio structure capability pointing into a BAR.
type structCap struct {
	cfgType        uint8
	bar            uint8
	offset, length uint32
	// multiplier is notify_off_multiplier (notification capability only).
	multiplier uint32
}

func (c *structCap) ID() uint8 { return capVendor }

func (c *structCap) Size() int {
	if c.cfgType == cfgTypeNotify {
		return notifyCapLen
	}
	return capLen
}

func (c *structCap) bytes() []byte {
	b := make([]byte, c.Size())
	b[2] = byte(c.Size())
	b[3] = c.cfgType
	b[capOffBar] = c.bar
	binary.LittleEndian.PutUint32(b[capOffOffset:], c.offset)
	binary.LittleEndian.PutUint32(b[capOffLength:], c.length)
	if c.cfgType == cfgTypeNotify {
		binary.LittleEndian.PutUint32(b[capOffExtra:], c.multiplier)
	}
	return b
}

func (c *structCap) Read(off int, data []byte) { readBytes(c.bytes(), off, data) }

// Write drops everything: these capabilities are read-only (section
// 4.1.4.1: "The driver MUST NOT write into any field of the capability
// structure").
func (c *structCap) Write(int, []byte) {}

func readBytes(src []byte, off int, data []byte) {
	for i := range data {
		if o := off + i; o >= 0 && o < len(src) {
			data[i] = src[o]
		} else {
			data[i] = 0
		}
	}
}

// pciCfgCap is the PCI configuration access capability (section 4.1.4.9):
// the driver writes bar, offset and length into the capability, and a read
// or write of pci_cfg_data accesses that BAR range. It lets a driver without
// a mapping of the BAR reach the structures.
type pciCfgCap struct {
	regs [pciCfgCapLen]byte
	// access reads or writes the BAR 0 structures.
	access func(off uint64, data []byte, write bool)
}

func (c *pciCfgCap) ID() uint8 { return capVendor }
func (c *pciCfgCap) Size() int { return pciCfgCapLen }

// window returns the BAR 0 range pci_cfg_data maps now, if the driver
// programmed a valid one: BAR 0, length 1, 2 or 4, offset aligned to it.
func (c *pciCfgCap) window() (uint64, int, bool) {
	bar := c.regs[capOffBar]
	off := binary.LittleEndian.Uint32(c.regs[capOffOffset:])
	n := binary.LittleEndian.Uint32(c.regs[capOffLength:])
	if bar != 0 || (n != 1 && n != 2 && n != 4) || off%n != 0 {
		return 0, 0, false
	}
	return uint64(off), int(n), true
}

func (c *pciCfgCap) Read(off int, data []byte) {
	c.regs[2], c.regs[3] = pciCfgCapLen, cfgTypePCI
	if off == capOffExtra {
		if a, n, ok := c.window(); ok && n <= len(data) {
			clear(data)
			c.access(a, data[:n], false)
			return
		}
	}
	readBytes(c.regs[:], off, data)
}

func (c *pciCfgCap) Write(off int, data []byte) {
	if off == capOffExtra {
		if a, n, ok := c.window(); ok && n <= len(data) {
			c.access(a, data[:n], true)
		}
		return
	}
	for i, v := range data {
		// bar, offset and length are writable; the rest is read-only.
		if o := off + i; o == capOffBar || (o >= capOffOffset && o < capOffExtra) {
			c.regs[o] = v
		}
	}
}
