package boot

// Guest-physical addresses of the boot structures. They are fixed by
// docs/design.md, "Guest-physical memory map (x86-64)"; keep the two in step.
const (
	// GDTAddr is the boot GDT: null, null, __BOOT_CS (0x10), __BOOT_DS
	// (0x18), the selectors the Linux 64-bit boot protocol names.
	GDTAddr = 0x0500
	// IDTAddr is the boot IDT: one zero entry. Interrupts stay off until
	// the kernel loads its own IDT.
	IDTAddr = 0x0520
	// StartInfoAddr is the PVH struct hvm_start_info, followed by its
	// memory map (pvhMemmapAddr) and module list (pvhModlistAddr).
	StartInfoAddr = 0x6000
	// ZeroPageAddr is the zero page, struct boot_params (4 KiB).
	ZeroPageAddr = 0x7000
	// BootStackAddr is the initial stack pointer: the top of the free page
	// between the zero page and the PML4 (Firecracker uses the same value).
	// startup_64 and the decompressor switch to their own stacks at once; a
	// valid RSP only matters if something pushes before that.
	BootStackAddr = 0x8FF0
	// PML4Addr is the PML4 of the identity map used for the 64-bit entries;
	// the PDPT follows at PDPTAddr and four page directories at PDAddr.
	PML4Addr = 0x9000
	// PDPTAddr is the page-directory-pointer table.
	PDPTAddr = 0xA000
	// PDAddr is the first of four page directories (0xB000-0xEFFF), each
	// mapping 1 GiB with 2 MiB pages.
	PDAddr = 0xB000
	// CmdlineAddr is where the NUL-terminated kernel command line goes.
	CmdlineAddr = 0x20000
	// EBDAStart is where the reserved area below 1 MiB begins (EBDA, VGA
	// hole, BIOS area with the ACPI tables at 0xE0000).
	EBDAStart = 0x9FC00
	// HighMemStart is 1 MiB: the kernel and initrd never go below it.
	HighMemStart = 0x100000
)

// Derived layout.
const (
	pageSize      = 0x1000
	bootGDTSize   = 4 * 8 // null, null, code, data
	bootIDTSize   = 8     // one empty gate
	pageTableEnd  = PDAddr + 4*pageSize
	lowStructEnd  = pageTableEnd // [GDTAddr, lowStructEnd) holds GDT, IDT, start_info, zero page, stack, page tables
	cmdlineAreaSz = EBDAStart - CmdlineAddr
	fourGiB       = 1 << 32
)
