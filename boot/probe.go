package boot

import "fmt"

// Kernel formats, as reported in Info and Setup.
const (
	FormatBzImage = "bzImage"
	FormatVmlinux = "vmlinux"
)

// vmlinuxCmdlineMax is the longest command line a bare vmlinux takes:
// COMMAND_LINE_SIZE (2048 on x86, arch/x86/include/asm/setup.h) minus the
// terminating NUL, which is what a bzImage built from it reports in
// cmdline_size.
const vmlinuxCmdlineMax = 2048 - 1

// Info is what Probe learns from a kernel file without loading it. For a
// bzImage the fields are the setup header's (boot.rst, "The Real-Mode Kernel
// Header"); fields newer than the image's protocol are zero. For an ELF
// vmlinux, Protocol is 0 and the header fields are the values Load assumes.
type Info struct {
	Format          string // FormatBzImage or FormatVmlinux
	Protocol        uint16 // boot protocol version, e.g. 0x020f; 0 for a vmlinux
	Compression     string // payload compression (Compression* constants); "none" for a vmlinux
	CmdlineSize     uint32 // longest command line, without the NUL
	InitSize        uint32 // init_size (2.10); for a vmlinux, its memory footprint
	PrefAddress     uint64 // pref_address (2.10); for a vmlinux, its lowest p_paddr
	KernelAlignment uint32 // kernel_alignment (2.05)
	Relocatable     bool   // relocatable_kernel (2.05)
	InitrdAddrMax   uint32 // initrd_addr_max: highest address the initrd may occupy
	XLoadFlags      uint16 // xloadflags (2.12), XLF* bits
	Entry           uint64 // vmlinux: physical 64-bit entry (e_entry); 0 for a bzImage
	PVHEntry        uint64 // vmlinux: XEN_ELFNOTE_PHYS32_ENTRY, 0 if none; 0 for a bzImage (it would need decompressing)
}

// kernelImage is a parsed kernel file: exactly one of bz and elf is set.
type kernelImage struct {
	bz  *bzImage
	elf *elfImage
}

// parseKernel recognises and parses a kernel file.
func parseKernel(b []byte) (*kernelImage, error) {
	switch {
	case hasELFMagic(b):
		e, err := parseELF(b)
		if err != nil {
			return nil, fmt.Errorf("ELF vmlinux: %w", err)
		}
		return &kernelImage{elf: e}, nil
	case hasBzImageMagic(b):
		z, err := parseBzImage(b)
		if err != nil {
			return nil, fmt.Errorf("bzImage: %w", err)
		}
		return &kernelImage{bz: z}, nil
	}
	return nil, ErrNotKernel
}

// cmdlineMax is the longest command line the kernel accepts, capped by the
// space at CmdlineAddr below the EBDA.
func (k *kernelImage) cmdlineMax() int {
	n := uint64(vmlinuxCmdlineMax)
	if k.bz != nil {
		n = uint64(k.bz.cmdlineSize)
	}
	return int(min(n, cmdlineAreaSz-1))
}

// Probe parses a kernel file (bzImage or ELF vmlinux) without loading or
// decompressing it, so a front end can validate the kernel, the command line
// length and the initrd early.
func Probe(kernel []byte) (Info, error) {
	k, err := parseKernel(kernel)
	if err != nil {
		return Info{}, err
	}
	if e := k.elf; e != nil {
		return Info{
			Format:          FormatVmlinux,
			Compression:     CompressionNone,
			CmdlineSize:     uint32(k.cmdlineMax()),
			InitSize:        uint32(min(e.end-e.start, 1<<32-1)),
			PrefAddress:     e.start,
			KernelAlignment: defaultAlign,
			InitrdAddrMax:   fourGiB - 1,
			XLoadFlags:      XLFKernel64,
			Entry:           e.entry,
			PVHEntry:        e.pvhEntry,
		}, nil
	}
	z := k.bz
	comp := CompressionUnknown
	if z.payload != nil {
		comp = compressionName(z.payload)
	}
	return Info{
		Format:          FormatBzImage,
		Protocol:        z.version,
		Compression:     comp,
		CmdlineSize:     z.cmdlineSize,
		InitSize:        z.initSize,
		PrefAddress:     z.prefAddress,
		KernelAlignment: z.kernelAlignment,
		Relocatable:     z.relocatable,
		InitrdAddrMax:   z.initrdAddrMax,
		XLoadFlags:      z.xloadflags,
	}, nil
}

// CmdlineMax returns the longest command line (in bytes, without the
// terminating NUL) that the kernel accepts: cmdline_size for a bzImage,
// 2047 for a bare vmlinux.
func CmdlineMax(kernel []byte) (int, error) {
	k, err := parseKernel(kernel)
	if err != nil {
		return 0, err
	}
	return k.cmdlineMax(), nil
}

// Extract returns the ELF vmlinux inside a kernel file: the decompressed
// payload of a bzImage (boot.rst, payload_offset and payload_length,
// protocol 2.08), or the file itself when it is already a vmlinux. Other
// loaders can then enter the kernel without running its decompressor, for
// example through its PVH note.
func Extract(kernel []byte) ([]byte, error) {
	k, err := parseKernel(kernel)
	if err != nil {
		return nil, err
	}
	if k.elf != nil {
		return kernel, nil
	}
	if k.bz.payload == nil {
		return nil, fmt.Errorf("bzImage protocol %#x has no payload fields (2.08 or later needed)", k.bz.version)
	}
	elf, _, err := decompressPayload(k.bz.payload)
	if err != nil {
		return nil, err
	}
	if !hasELFMagic(elf) {
		return nil, fmt.Errorf("bzImage payload is not an ELF vmlinux")
	}
	return elf, nil
}
