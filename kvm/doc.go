// Package kvm is a thin, typed layer over the Linux KVM ioctl API for x86-64
// (Documentation/virt/kvm/api.rst). It exposes the three kinds of file
// descriptor the API has: the system fd (/dev/kvm), a VM fd and vCPU fds.
//
// File descriptors are plain integers owned by System, VM and VCPU values and
// closed only by their Close methods. The package never wraps them in os.File,
// whose finalizer could close /dev/kvm or a VM fd under a live VM when the
// garbage collector runs.
//
// Struct layouts mirror arch/x86/include/uapi/asm/kvm.h and
// include/uapi/linux/kvm.h; each type cites the C struct it mirrors and its
// size is checked by a test.
package kvm
