// Package boot loads a Linux x86-64 kernel into guest memory for a direct
// entry, without firmware and without running the kernel's real-mode setup
// code (the way Firecracker and kvmtool boot Linux).
//
// [Load] takes a bzImage or an ELF vmlinux, writes the kernel, the initrd,
// the command line and the boot data structures into guest-physical memory
// through a [Memory], and returns the initial state of the boot vCPU as plain
// structs ([CPUState]); the caller turns them into KVM_SET_REGS and
// KVM_SET_SREGS. Nothing here touches /dev/kvm.
//
// Three entries are supported:
//
//   - [Linux64]: the kernel is entered at startup_64 of the uncompressed
//     vmlinux in 64-bit long mode, with RSI pointing at the zero page
//     (struct boot_params). A bzImage's compressed payload is decompressed on
//     the host first, which skips the in-guest decompressor.
//   - [PVH]: the kernel is entered at the 32-bit address of its
//     XEN_ELFNOTE_PHYS32_ENTRY ELF note in flat protected mode without paging,
//     with EBX pointing at a struct hvm_start_info (the PVH boot ABI).
//   - [Protocol]: the bzImage's own 64-bit entry point at load address + 0x200
//     (Documentation/arch/x86/boot.rst, "64-bit Boot Protocol"); the kernel
//     then decompresses itself in the guest. [Auto] falls back to it when the
//     payload cannot be decompressed on the host (lzo, unknown formats).
//
// Guest-physical addresses follow docs/design.md ("Guest-physical memory
// map"); the constants in layout.go name them. Every offset and size read
// from a kernel file is checked against the file and against guest RAM, and
// every failure is an error wrapping one of the Err sentinels: nothing in
// this package panics on bad input.
package boot
