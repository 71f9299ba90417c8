package boot

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// EntryMode selects how the kernel is entered.
type EntryMode int

const (
	// Auto enters an ELF vmlinux at its 64-bit entry, and a bzImage at the
	// 64-bit entry of its host-decompressed vmlinux (like Linux64), falling
	// back to Protocol when the payload cannot be decompressed on the host.
	Auto EntryMode = iota
	// Linux64 enters the uncompressed kernel at startup_64 (the ELF entry)
	// in 64-bit mode, RSI = zero page. A bzImage is decompressed on the host.
	Linux64
	// PVH enters at the 32-bit XEN_ELFNOTE_PHYS32_ENTRY of the (possibly
	// host-decompressed) vmlinux in flat protected mode, EBX = hvm_start_info.
	PVH
	// Protocol loads a bzImage's protected-mode code and enters its own
	// 64-bit entry at load address + 0x200; the kernel decompresses itself.
	Protocol
)

var entryModeNames = [...]string{Auto: "auto", Linux64: "linux64", PVH: "pvh", Protocol: "protocol"}

// String returns the mode's name as ParseEntryMode accepts it.
func (m EntryMode) String() string {
	if m >= 0 && int(m) < len(entryModeNames) {
		return entryModeNames[m]
	}
	return fmt.Sprintf("EntryMode(%d)", int(m))
}

// ParseEntryMode parses "auto", "linux64", "pvh" or "protocol" (any case).
func ParseEntryMode(s string) (EntryMode, error) {
	for m, n := range entryModeNames {
		if strings.EqualFold(s, n) {
			return EntryMode(m), nil
		}
	}
	return Auto, errf(ErrConfig, "unknown entry mode %q (want auto, linux64, pvh or protocol)", s)
}

// Memory is guest-physical memory: WriteAt writes p at guest-physical
// address gpa. The caller's implementation bounds-checks against its RAM.
// It is io.WriterAt with the offset read as an address.
type Memory interface {
	WriteAt(p []byte, gpa int64) (n int, err error)
}

// Config says what to load.
type Config struct {
	// Kernel is the bzImage or ELF vmlinux file contents.
	Kernel []byte
	// Initrd is the initrd or initramfs file contents; nil or empty for none.
	Initrd []byte
	// Cmdline is the kernel command line, without a terminating NUL.
	Cmdline string
	// RAM lists the usable guest RAM ranges, sorted and non-overlapping,
	// e.g. [0, 3 GiB) and [4 GiB, ...). Load keeps the kernel and initrd
	// above 1 MiB and reports [0x9FC00, 1 MiB) reserved in the e820 map.
	RAM []Range
	// Reserved lists guest-physical ranges outside RAM that the e820 map
	// marks reserved (the PCI ECAM window).
	Reserved []Range
	// RSDP is the guest-physical address of the ACPI RSDP, 0 if none.
	RSDP uint64
	// Entry selects the entry; the zero value is Auto.
	Entry EntryMode
}

// KernelPlacement is where the kernel went.
type KernelPlacement struct {
	// Start and End bound the memory the kernel owns at boot: its loaded
	// segments, and for a bzImage [runtime start, + init_size). The initrd
	// never overlaps [Start, End).
	Start, End uint64
	// Entry is the guest-physical entry point (= CPU.RIP).
	Entry uint64
}

// Setup is the result of Load.
type Setup struct {
	// CPU is the initial state of the boot vCPU.
	CPU CPUState
	// Entry is the entry actually used: never Auto.
	Entry EntryMode
	// Fallback says why Auto fell back to Protocol; empty otherwise.
	Fallback string
	// Kernel is where the kernel went.
	Kernel KernelPlacement
	// Initrd is where the initrd went; Size 0 if there is none.
	Initrd Range
	// CmdlineMax is the longest command line the kernel accepts.
	CmdlineMax int
	// Format is FormatBzImage or FormatVmlinux.
	Format string
	// Compression is the bzImage payload's compression (Compression*
	// constants), "none" for a vmlinux.
	Compression string
	// Protocol is the bzImage's boot protocol version (0x020f = 2.15), 0
	// for a bare vmlinux.
	Protocol uint16
	// DecompressTime is how long host-side decompression took.
	DecompressTime time.Duration
	// E820 is the memory map given to the kernel.
	E820 []E820Entry
}

// kernelPlan is where a kernel's pieces go and how it is entered.
type kernelPlan struct {
	mode     EntryMode
	segments []elfSegment
	entry    uint64
	reserved []Range // memory the kernel owns at boot
	code32   uint32  // Protocol: code32_start for the zero page
}

// Load writes the kernel, initrd, command line and boot structures into
// mem and returns the boot vCPU's initial state. It checks everything
// before it writes anything, so an error leaves mem untouched unless mem
// itself fails.
//
// Besides the kernel and initrd, Load writes: the GDT at GDTAddr and IDT at
// IDTAddr, the command line at CmdlineAddr, and for the 64-bit entries the
// zero page at ZeroPageAddr and page tables at PML4Addr-0xEFFF, or for PVH
// the hvm_start_info at StartInfoAddr. All of [GDTAddr, 0xF000) and the
// command line must be RAM.
func Load(mem Memory, cfg Config) (*Setup, error) {
	if mem == nil {
		return nil, errf(ErrConfig, "nil Memory")
	}
	if err := validateRAM(cfg.RAM); err != nil {
		return nil, err
	}
	if cfg.Entry < Auto || cfg.Entry > Protocol {
		return nil, errf(ErrConfig, "unknown entry mode %d", int(cfg.Entry))
	}
	if i := strings.IndexByte(cfg.Cmdline, 0); i >= 0 {
		return nil, errf(ErrConfig, "command line has a NUL byte at offset %d", i)
	}
	if !ramCovers(cfg.RAM, GDTAddr, lowStructEnd) {
		return nil, errf(ErrNoRoom, "low memory [%#x, %#x) for the GDT, zero page and page tables is not all RAM", GDTAddr, lowStructEnd)
	}

	k, err := parseKernel(cfg.Kernel)
	if err != nil {
		return nil, err
	}
	s := &Setup{CmdlineMax: k.cmdlineMax()}
	if k.bz != nil {
		s.Format, s.Protocol = FormatBzImage, k.bz.version
		s.Compression = CompressionUnknown
		if k.bz.payload != nil {
			s.Compression = compressionName(k.bz.payload)
		}
	} else {
		s.Format, s.Compression = FormatVmlinux, CompressionNone
	}

	plan, err := planKernel(k, cfg.Entry, s)
	if err != nil {
		return nil, err
	}
	if err := checkKernelPlacement(cfg.RAM, plan); err != nil {
		return nil, err
	}
	s.Entry = plan.mode
	s.Kernel = KernelPlacement{Start: plan.reserved[0].Start, End: plan.reserved[0].End(), Entry: plan.entry}
	for _, r := range plan.reserved[1:] {
		s.Kernel.Start, s.Kernel.End = min(s.Kernel.Start, r.Start), max(s.Kernel.End, r.End())
	}

	if len(cfg.Cmdline) > s.CmdlineMax {
		return nil, errf(ErrCmdlineTooLong, "command line is %d bytes, the kernel accepts at most %d (cmdline_size)", len(cfg.Cmdline), s.CmdlineMax)
	}
	cmdline := append([]byte(cfg.Cmdline), 0)
	if !ramCovers(cfg.RAM, CmdlineAddr, CmdlineAddr+uint64(len(cmdline))) {
		return nil, errf(ErrNoRoom, "command line area at %#x is not RAM", CmdlineAddr)
	}

	if n := uint64(len(cfg.Initrd)); n > 0 {
		limit := uint64(fourGiB)
		if k.bz != nil {
			limit = k.bz.initrdLimit()
		}
		kernel := Range{Start: s.Kernel.Start, Size: s.Kernel.End - s.Kernel.Start}
		start, err := placeInitrd(cfg.RAM, n, limit, []Range{kernel})
		if err != nil {
			return nil, err
		}
		s.Initrd = Range{Start: start, Size: n}
	}

	s.E820 = E820(cfg.RAM, cfg.Reserved...)
	if len(s.E820) > MaxE820Entries {
		return nil, errf(ErrConfig, "RAM layout needs %d e820 entries, the zero page holds %d", len(s.E820), MaxE820Entries)
	}

	// Build the boot structures before writing anything.
	var bootData []blob
	add := func(addr uint64, b []byte, what string) { bootData = append(bootData, blob{addr, b, what}) }
	add(CmdlineAddr, cmdline, "command line")
	if plan.mode == PVH {
		s.CPU = pvhCPU(plan.entry)
		si, err := buildStartInfo(CmdlineAddr, s.Initrd, cfg.RSDP, s.E820)
		if err != nil {
			return nil, err
		}
		add(StartInfoAddr, si, "hvm_start_info")
		add(GDTAddr, gdtBytes(bootGDT(descCode32)), "GDT")
	} else {
		s.CPU = longModeCPU(plan.entry)
		zp := zeroPage{
			cmdline:     CmdlineAddr,
			cmdlineSize: uint32(s.CmdlineMax),
			initrd:      s.Initrd,
			rsdp:        cfg.RSDP,
			e820:        s.E820,
			code32Start: plan.code32,
		}
		if k.bz != nil {
			zp.header = k.bz.header
		}
		b, err := zp.build()
		if err != nil {
			return nil, err
		}
		add(ZeroPageAddr, b, "zero page")
		add(PML4Addr, identityPageTables(), "page tables")
		add(GDTAddr, gdtBytes(bootGDT(descCode64)), "GDT")
	}
	add(IDTAddr, make([]byte, bootIDTSize), "IDT")

	for _, seg := range plan.segments {
		if err := writeSegment(mem, seg); err != nil {
			return nil, err
		}
	}
	if s.Initrd.Size != 0 {
		if err := write(mem, s.Initrd.Start, cfg.Initrd, "initrd"); err != nil {
			return nil, err
		}
	}
	for _, d := range bootData {
		if err := write(mem, d.addr, d.b, d.what); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// planKernel decides the entry and where the kernel's pieces go.
func planKernel(k *kernelImage, want EntryMode, s *Setup) (*kernelPlan, error) {
	if e := k.elf; e != nil {
		switch want {
		case Protocol:
			return nil, errf(ErrUnsupported, "the Protocol entry needs a bzImage, not an ELF vmlinux")
		case PVH:
			return pvhPlan(e, nil)
		default:
			return elfPlan(e, nil), nil
		}
	}
	z := k.bz
	if want == Protocol {
		return protocolPlan(z)
	}
	start := time.Now()
	e, err := decompressBzImage(z)
	s.DecompressTime = time.Since(start)
	if err != nil {
		if want != Auto || !errors.Is(err, ErrUnsupported) {
			return nil, fmt.Errorf("bzImage: %w", err)
		}
		p, perr := protocolPlan(z)
		if perr != nil {
			return nil, fmt.Errorf("bzImage: %w; and the in-guest decompressor cannot be used either: %w", err, perr)
		}
		s.Fallback = err.Error()
		return p, nil
	}
	runtime, err := z.runtimeStart(e.start)
	if err != nil {
		return nil, fmt.Errorf("bzImage: %w", err)
	}
	initSize := Range{Start: runtime, Size: uint64(z.initSize)}
	if want == PVH {
		return pvhPlan(e, &initSize)
	}
	return elfPlan(e, &initSize), nil
}

// decompressBzImage decompresses a bzImage's payload and parses the vmlinux
// inside. ErrUnsupported means the host cannot do it (but the kernel's own
// decompressor might).
func decompressBzImage(z *bzImage) (*elfImage, error) {
	if z.payload == nil {
		return nil, errf(ErrUnsupported, "boot protocol %s has no payload_offset/payload_length (2.08)", protoString(z.version))
	}
	out, _, err := decompressPayload(z.payload)
	if err != nil {
		return nil, err
	}
	if !hasELFMagic(out) {
		return nil, errf(ErrUnsupported, "the decompressed payload is not an ELF vmlinux")
	}
	e, err := parseELF(out)
	if err != nil {
		return nil, fmt.Errorf("decompressed vmlinux: %w", err)
	}
	return e, nil
}

// elfPlan loads an ELF's segments at their physical addresses and enters
// at e_entry in 64-bit mode. initSize is the bzImage's init_size footprint.
func elfPlan(e *elfImage, initSize *Range) *kernelPlan {
	p := &kernelPlan{mode: Linux64, segments: e.segments, entry: e.entry}
	p.reserved = []Range{{Start: e.start, Size: e.end - e.start}}
	if initSize != nil && initSize.Size != 0 {
		p.reserved = append(p.reserved, *initSize)
	}
	return p
}

// pvhPlan is elfPlan entered through the PVH note.
func pvhPlan(e *elfImage, initSize *Range) (*kernelPlan, error) {
	if e.pvhEntry == 0 {
		return nil, errf(ErrUnsupported, "no XEN_ELFNOTE_PHYS32_ENTRY note for the PVH entry (kernel built without CONFIG_PVH?)")
	}
	p := elfPlan(e, initSize)
	p.mode, p.entry = PVH, e.pvhEntry
	return p, nil
}

// protocolPlan loads a bzImage's protected-mode code for its own 64-bit
// entry (boot.rst, "64-bit Boot Protocol"): at pref_address aligned up to
// kernel_alignment if relocatable, else at 0x100000, entered at +0x200.
func protocolPlan(z *bzImage) (*kernelPlan, error) {
	if z.xloadflags&XLFKernel64 == 0 {
		return nil, errf(ErrUnsupported, "kernel has no 64-bit entry point (XLF_KERNEL_64 not set in xloadflags, protocol %s)", protoString(z.version))
	}
	if len(z.pm) <= entry64Offset {
		return nil, errf(ErrTruncated, "protected-mode code is only %d bytes, no room for the 64-bit entry at +0x200", len(z.pm))
	}
	load := uint64(legacyLoadAddr)
	if z.relocatable {
		var err error
		if load, err = z.runtimeStart(z.prefAddress); err != nil {
			return nil, fmt.Errorf("bzImage: %w", err)
		}
	}
	runtime, err := z.runtimeStart(load)
	if err != nil {
		return nil, fmt.Errorf("bzImage: %w", err)
	}
	p := &kernelPlan{
		mode:     Protocol,
		segments: []elfSegment{{paddr: load, memsz: uint64(len(z.pm)), data: z.pm}},
		entry:    load + entry64Offset,
		reserved: []Range{{Start: load, Size: uint64(len(z.pm))}},
		code32:   uint32(load),
	}
	if z.initSize != 0 {
		p.reserved = append(p.reserved, Range{Start: runtime, Size: uint64(z.initSize)})
	}
	return p, nil
}

// checkKernelPlacement checks that everything the kernel owns is RAM,
// above the boot structures below 1 MiB and inside the 4 GiB identity map.
func checkKernelPlacement(ram []Range, p *kernelPlan) error {
	for _, r := range p.reserved {
		end := r.Start + r.Size
		switch {
		case end < r.Start || end > fourGiB:
			return errf(ErrNoRoom, "kernel needs %s, above the 4 GiB the boot page tables map", r)
		case r.Start < HighMemStart:
			return errf(ErrNoRoom, "kernel needs %s, which overlaps the boot structures below 1 MiB", r)
		case !ramCovers(ram, r.Start, end):
			return errf(ErrNoRoom, "kernel needs %s (%s), which is not all RAM (guest RAM: %s)", r, mib(r.Size), rangesString(ram))
		}
	}
	return nil
}

// blob is bytes bound for a guest-physical address.
type blob struct {
	addr uint64
	b    []byte
	what string
}

// write writes b at gpa, treating a short write as an error.
func write(mem Memory, gpa uint64, b []byte, what string) error {
	n, err := mem.WriteAt(b, int64(gpa))
	if err == nil && n != len(b) {
		err = io.ErrShortWrite
	}
	if err != nil {
		return fmt.Errorf("writing %s at %#x: %w", what, gpa, err)
	}
	return nil
}

// zeroChunk is what writeSegment clears .bss with.
var zeroChunk = make([]byte, 64<<10)

// writeSegment writes a segment's file bytes and zeroes the rest of its
// memory size (.bss, .brk): guest memory need not be zero, e.g. after a reboot.
func writeSegment(mem Memory, s elfSegment) error {
	if err := write(mem, s.paddr, s.data, "kernel segment"); err != nil {
		return err
	}
	for a, end := s.paddr+uint64(len(s.data)), s.paddr+s.memsz; a < end; {
		n := min(end-a, uint64(len(zeroChunk)))
		if err := write(mem, a, zeroChunk[:n], "kernel .bss"); err != nil {
			return err
		}
		a += n
	}
	return nil
}
