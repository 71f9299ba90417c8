package boot

import "encoding/binary"

// Offsets in struct boot_params outside the setup header
// (arch/x86/include/uapi/asm/bootparam.h and Documentation/arch/x86/zero-page.rst).
const (
	zeroPageSize      = 0x1000
	bpACPIRSDPAddr    = 0x070 // u64 acpi_rsdp_addr (protocol 2.14)
	bpExtRamdiskImage = 0x0c0 // u32 ext_ramdisk_image: initrd address, high 32 bits
	bpExtRamdiskSize  = 0x0c4 // u32 ext_ramdisk_size: initrd size, high 32 bits
	bpExtCmdLinePtr   = 0x0c8 // u32 ext_cmd_line_ptr: command line address, high 32 bits
	bpE820Entries     = 0x1e8 // u8  e820_entries
	bpSentinel        = 0x1ef // u8  sentinel: must stay 0, or the kernel scrubs boot_params
	bpE820Table       = 0x2d0 // struct boot_e820_entry e820_table[128]
	bpE820EntrySize   = 20    // {addr u64, size u64, type u32}, packed
)

// Values the loader writes into the header.
const (
	loaderUndefined = 0xff     // type_of_loader: "undefined" boot loader (boot.rst, type_of_loader)
	defaultAlign    = 0x200000 // kernel_alignment for a synthesised header: CONFIG_PHYSICAL_ALIGN default
)

// zeroPage describes what goes into the zero page.
type zeroPage struct {
	header      []byte // setup header from the bzImage (file bytes 0x1f1..), nil for a bare vmlinux
	cmdline     uint64 // address of the command line
	cmdlineSize uint32 // for a synthesised header
	initrd      Range  // Size 0: none
	rsdp        uint64
	e820        []E820Entry
	code32Start uint32 // 0: keep the header's
}

// build returns the 4096 bytes of struct boot_params.
func (z zeroPage) build() ([]byte, error) {
	if len(z.e820) > MaxE820Entries {
		return nil, errf(ErrConfig, "%d e820 entries, the zero page holds %d", len(z.e820), MaxE820Entries)
	}
	b := make([]byte, zeroPageSize)
	le := binary.LittleEndian
	if z.header != nil {
		// boot.rst, "64-bit Boot Protocol": the setup header is copied from
		// the kernel file into boot_params.hdr; the rest of boot_params
		// starts zeroed.
		copy(b[hdrStart:hdrAreaEnd], z.header)
	} else {
		// No setup header (bare vmlinux): write the fields a kernel checks.
		le.PutUint16(b[hdrBootFlag:], bootFlagMagic)
		le.PutUint32(b[hdrMagic:], hdrSMagic)
		le.PutUint16(b[hdrVersion:], synthProtocol)
		le.PutUint32(b[hdrKernelAlignment:], defaultAlign)
		le.PutUint16(b[hdrXLoadFlags:], XLFKernel64)
		le.PutUint32(b[hdrCmdlineSize:], z.cmdlineSize)
		le.PutUint32(b[hdrInitrdAddrMax:], fourGiB-1)
	}
	// boot.rst, "Details of Header Fields": fields a boot loader must set.
	b[hdrTypeOfLoader] = loaderUndefined
	b[hdrExtLoaderVer] = 0
	b[hdrExtLoaderType] = 0
	// LOADED_HIGH: the protected-mode code is at 0x100000 or above. The
	// other writable bits (QUIET_FLAG, KEEP_SEGMENTS, CAN_USE_HEAP) concern
	// the real-mode setup code, which never runs here.
	b[hdrLoadFlags] = loadedHigh
	if z.code32Start != 0 {
		le.PutUint32(b[hdrCode32Start:], z.code32Start)
	}
	le.PutUint32(b[hdrHardwareSubarch:], 0) // X86_SUBARCH_PC
	le.PutUint64(b[hdrHardwareSubarchData:], 0)
	le.PutUint64(b[hdrSetupData:], 0) // no setup_data list
	le.PutUint32(b[hdrCmdLinePtr:], uint32(z.cmdline))
	le.PutUint32(b[bpExtCmdLinePtr:], uint32(z.cmdline>>32))
	le.PutUint32(b[hdrRamdiskImage:], uint32(z.initrd.Start))
	le.PutUint32(b[hdrRamdiskSize:], uint32(z.initrd.Size))
	le.PutUint32(b[bpExtRamdiskImage:], uint32(z.initrd.Start>>32))
	le.PutUint32(b[bpExtRamdiskSize:], uint32(z.initrd.Size>>32))
	le.PutUint64(b[bpACPIRSDPAddr:], z.rsdp)
	b[bpSentinel] = 0
	b[bpE820Entries] = uint8(len(z.e820))
	for i, e := range z.e820 {
		o := bpE820Table + i*bpE820EntrySize
		le.PutUint64(b[o:], e.Addr)
		le.PutUint64(b[o+8:], e.Size)
		le.PutUint32(b[o+16:], uint32(e.Type))
	}
	return b, nil
}
