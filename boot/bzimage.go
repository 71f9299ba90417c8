package boot

import (
	"encoding/binary"
	"fmt"
)

// Offsets of the setup header fields. The header sits at the same offset in
// the bzImage file and in struct boot_params ("hdr" at 0x1f1), so these serve
// both. Source: Documentation/arch/x86/boot.rst, "The Real-Mode Kernel
// Header", and arch/x86/include/uapi/asm/bootparam.h, struct setup_header.
// The protocol version that introduced a field is noted where it is > 2.00.
const (
	hdrStart               = 0x1f1 // first byte of struct setup_header
	hdrSetupSects          = 0x1f1 // u8  setup_sects: size of the setup code in 512-byte sectors, 0 means 4
	hdrSysSize             = 0x1f4 // u32 syssize: protected-mode code size in 16-byte paragraphs (2.04)
	hdrBootFlag            = 0x1fe // u16 boot_flag: 0xAA55
	hdrJump                = 0x200 // u16 jump: x86 short jump; its second byte + 0x202 is the header's end
	hdrMagic               = 0x202 // u32 header: "HdrS"
	hdrVersion             = 0x206 // u16 version: boot protocol version, e.g. 0x020f = 2.15
	hdrTypeOfLoader        = 0x210 // u8  type_of_loader: 0xFF = undefined loader
	hdrLoadFlags           = 0x211 // u8  loadflags
	hdrCode32Start         = 0x214 // u32 code32_start: protected-mode load address
	hdrRamdiskImage        = 0x218 // u32 ramdisk_image: initrd address, low 32 bits
	hdrRamdiskSize         = 0x21c // u32 ramdisk_size: initrd size, low 32 bits
	hdrHeapEndPtr          = 0x224 // u16 heap_end_ptr (2.01), real-mode setup only
	hdrExtLoaderVer        = 0x226 // u8  ext_loader_ver (2.02)
	hdrExtLoaderType       = 0x227 // u8  ext_loader_type (2.02)
	hdrCmdLinePtr          = 0x228 // u32 cmd_line_ptr (2.02): command line address, low 32 bits
	hdrInitrdAddrMax       = 0x22c // u32 initrd_addr_max (2.03): highest address the initrd may occupy
	hdrKernelAlignment     = 0x230 // u32 kernel_alignment (2.05): required alignment if relocatable
	hdrRelocatableKernel   = 0x234 // u8  relocatable_kernel (2.05)
	hdrMinAlignment        = 0x235 // u8  min_alignment (2.10): log2 of the minimum alignment
	hdrXLoadFlags          = 0x236 // u16 xloadflags (2.12)
	hdrCmdlineSize         = 0x238 // u32 cmdline_size (2.06): longest command line, without the NUL
	hdrHardwareSubarch     = 0x23c // u32 hardware_subarch (2.07): 0 = X86_SUBARCH_PC
	hdrHardwareSubarchData = 0x240 // u64 hardware_subarch_data (2.07)
	hdrPayloadOffset       = 0x248 // u32 payload_offset (2.08): from the start of the protected-mode code
	hdrPayloadLength       = 0x24c // u32 payload_length (2.08)
	hdrSetupData           = 0x250 // u64 setup_data (2.09): linked list of struct setup_data
	hdrPrefAddress         = 0x258 // u64 pref_address (2.10): preferred load address
	hdrInitSize            = 0x260 // u32 init_size (2.10): linear memory the kernel needs from its runtime start
	hdrHandoverOffset      = 0x264 // u32 handover_offset (2.11): EFI handover entry
	hdrKernelInfoOffset    = 0x268 // u32 kernel_info_offset (2.15)
	hdrEnd                 = 0x26c // end of struct setup_header as of protocol 2.15
	hdrAreaEnd             = 0x290 // boot_params keeps hdr plus _pad7 up to edd_mbr_sig_buffer at 0x290
)

// Magic numbers of the setup header (boot.rst, "The Real-Mode Kernel Header").
const (
	bootFlagMagic = 0xAA55     // boot_flag
	hdrSMagic     = 0x53726448 // "HdrS" read as a little-endian u32
	minProtocol   = 0x0206     // 2.06: cmdline_size; the oldest protocol we accept
	// synthProtocol is the version written into a synthesised header (for a
	// bare vmlinux): 2.15, the newest defined layout of struct setup_header.
	synthProtocol = 0x020f
)

// loadflags bits (boot.rst, "Details of Header Fields", loadflags).
const (
	loadedHigh = 1 << 0 // LOADED_HIGH: protected-mode code is loaded at 0x100000
)

// xloadflags bits (boot.rst, xloadflags, protocol 2.12).
const (
	// XLFKernel64 (XLF_KERNEL_64) says the kernel has the legacy 64-bit
	// entry point at load address + 0x200.
	XLFKernel64 = 1 << 0
	// XLFCanBeLoadedAbove4G (XLF_CAN_BE_LOADED_ABOVE_4G) says the kernel,
	// boot_params, command line and initrd may live above 4 GiB.
	XLFCanBeLoadedAbove4G = 1 << 1
)

const (
	sectorSize      = 512
	defaultSetupSec = 4        // boot.rst: "if the setup_sects field contains 0, the real value is 4"
	legacyLoadAddr  = 0x100000 // where a non-relocatable bzImage's protected-mode code goes (code32_start)
	entry64Offset   = 0x200    // boot.rst, "64-bit Boot Protocol": 64-bit entry at load address + 0x200
)

// bzImage is a parsed bzImage: the setup header fields this package uses and
// the slices of the file they point at.
//
// This is a small parser of its own rather than u-root's pkg/boot/bzimage:
// that package shells out to lzop and unxz, logs, reads header fields
// without regard to the protocol version that defines them, and requires
// protocol 2.08.
type bzImage struct {
	version         uint16
	setupSects      int
	loadFlags       uint8
	initrdAddrMax   uint32
	kernelAlignment uint32
	relocatable     bool
	minAlignment    uint8
	xloadflags      uint16
	cmdlineSize     uint32
	prefAddress     uint64 // 0x100000 when the protocol predates pref_address
	initSize        uint32 // 0 when the protocol predates init_size
	header          []byte // file[0x1f1:end of header], copied into boot_params.hdr
	pm              []byte // protected-mode kernel: (setup_sects+1)*512 .. + syssize*16
	payload         []byte // compressed payload, nil before protocol 2.08
}

// hasBzImageMagic reports whether b has "HdrS" at 0x202: a bzImage (or an
// older zImage) setup header, whatever else is wrong with it.
func hasBzImageMagic(b []byte) bool {
	return len(b) >= hdrMagic+4 && binary.LittleEndian.Uint32(b[hdrMagic:]) == hdrSMagic
}

// protoString formats a boot protocol version the way boot.rst writes it:
// 0x020f is "2.15" (the low byte is the minor number).
func protoString(v uint16) string { return fmt.Sprintf("%d.%02d", v>>8, v&0xff) }

// parseBzImage parses and checks a bzImage's setup header. It does not
// decompress anything.
func parseBzImage(b []byte) (*bzImage, error) {
	if !hasBzImageMagic(b) {
		return nil, ErrNotKernel
	}
	if len(b) < hdrEnd {
		return nil, errf(ErrTruncated, "file is %d bytes, shorter than the setup header (%#x bytes)", len(b), hdrEnd)
	}
	le := binary.LittleEndian
	if f := le.Uint16(b[hdrBootFlag:]); f != bootFlagMagic {
		return nil, errf(ErrBadImage, "bzImage boot_flag at 0x1fe is %#04x, want 0xaa55", f)
	}
	z := &bzImage{version: le.Uint16(b[hdrVersion:])}
	if z.version < minProtocol {
		return nil, errf(ErrProtocolTooOld, "boot protocol %s is older than %s", protoString(z.version), protoString(minProtocol))
	}
	z.setupSects = int(b[hdrSetupSects])
	if z.setupSects == 0 {
		z.setupSects = defaultSetupSec
	}
	pmStart := (z.setupSects + 1) * sectorSize
	if pmStart > len(b) {
		return nil, errf(ErrTruncated, "setup code needs %d sectors (%d bytes), but the file has only %d bytes", z.setupSects+1, pmStart, len(b))
	}
	// The protected-mode code runs to syssize paragraphs; a signed kernel
	// (Debian's) carries its Authenticode signature after that.
	pmLen := len(b) - pmStart
	if sys := uint64(le.Uint32(b[hdrSysSize:])) * 16; sys != 0 {
		if sys > uint64(pmLen) {
			return nil, errf(ErrTruncated, "syssize says %d bytes of protected-mode code, but only %d follow the setup code", sys, pmLen)
		}
		pmLen = int(sys)
	}
	z.pm = b[pmStart : pmStart+pmLen]

	// The header ends at 0x202 + the byte at 0x201 (boot.rst); boot_params
	// has room up to 0x290, so never copy past that.
	end := min(hdrMagic+int(b[hdrJump+1]), hdrAreaEnd)
	z.header = b[hdrStart:max(end, hdrStart)]

	z.loadFlags = b[hdrLoadFlags]
	z.initrdAddrMax = le.Uint32(b[hdrInitrdAddrMax:])
	z.kernelAlignment = le.Uint32(b[hdrKernelAlignment:])
	z.relocatable = b[hdrRelocatableKernel] != 0
	z.cmdlineSize = le.Uint32(b[hdrCmdlineSize:])
	z.prefAddress = legacyLoadAddr
	if z.version >= 0x0208 {
		off, n := uint64(le.Uint32(b[hdrPayloadOffset:])), uint64(le.Uint32(b[hdrPayloadLength:]))
		if off+n > uint64(len(z.pm)) {
			return nil, errf(ErrTruncated, "payload [%#x, %#x) lies past the %d bytes of protected-mode code", off, off+n, len(z.pm))
		}
		if n != 0 {
			z.payload = z.pm[off : off+n]
		}
	}
	if z.version >= 0x020a {
		z.minAlignment = b[hdrMinAlignment]
		z.prefAddress = le.Uint64(b[hdrPrefAddress:])
		z.initSize = le.Uint32(b[hdrInitSize:])
	}
	if z.version >= 0x020c {
		z.xloadflags = le.Uint16(b[hdrXLoadFlags:])
	}
	return z, nil
}

// runtimeStart is where the kernel runs after it has decompressed itself,
// by the algorithm in boot.rst, "init_size": a relocatable kernel runs at its
// load address (raised to pref_address) aligned up to kernel_alignment, a
// fixed one at pref_address.
func (z *bzImage) runtimeStart(load uint64) (uint64, error) {
	if !z.relocatable {
		return z.prefAddress, nil
	}
	a := uint64(z.kernelAlignment)
	if !isPow2(a) {
		return 0, errf(ErrBadImage, "kernel_alignment %#x is not a power of two", a)
	}
	load = max(load, z.prefAddress)
	if load > fourGiB {
		return 0, errf(ErrBadImage, "pref_address %#x is above 4 GiB", load)
	}
	return alignUp(load, a), nil
}

// initrdLimit is the first address the initrd must stay below: one past
// initrd_addr_max, or no limit if XLF_CAN_BE_LOADED_ABOVE_4G says the kernel
// reads ext_ramdisk_image (boot.rst, initrd_addr_max and xloadflags).
func (z *bzImage) initrdLimit() uint64 {
	if z.xloadflags&XLFCanBeLoadedAbove4G != 0 {
		return ^uint64(0)
	}
	return uint64(z.initrdAddrMax) + 1
}
