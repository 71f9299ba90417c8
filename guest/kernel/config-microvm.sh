#!/bin/bash
# config-microvm.sh: generate the minimal microVM guest kernel .config
# (tinyconfig plus what a virtio microVM needs; no modules). It is the base
# of guest/config-ci, which kernel/config-ci.sh derives from it.
#
# Copied from scripts/config-microvm.sh of the shared guest cache
# (../shared/guest next to the repository), written during the project's
# guest-kernel measurements (see its README-measurements.md, sections 1
# and 4). Kept as the record of how guest/config-ci came about;
# "make guest-kernel" uses guest/config-ci directly and does not run it.
# Usage: config-microvm.sh [KERNEL_SOURCE_DIR]   (run on Debian's linux-source-6.1)
set -euo pipefail
cd "${1:-.}"
export ARCH=x86_64
make ARCH=x86_64 tinyconfig >/dev/null
C=scripts/config
Y() { for o in "$@"; do $C --enable "$o"; done; }
N() { for o in "$@"; do $C --disable "$o"; done; }
# core
Y 64BIT PRINTK PRINTK_TIME EARLY_PRINTK BUG TTY MULTIUSER FUTEX EPOLL SIGNALFD TIMERFD EVENTFD SHMEM \
  POSIX_TIMERS PROC_FS PROC_SYSCTL SYSFS TMPFS DEVTMPFS DEVTMPFS_MOUNT BINFMT_ELF BINFMT_SCRIPT \
  BLK_DEV_INITRD RD_GZIP BLOCK BLK_DEV EXT4_FS FILE_LOCKING
N RD_BZIP2 RD_LZMA RD_XZ RD_LZO RD_LZ4 RD_ZSTD
# kernel image compression: gzip (fast enough, universally supported)
Y KERNEL_GZIP; N KERNEL_XZ
# allocator: SLUB instead of tinyconfig's SLOB (SLOB is deprecated/removed in later kernels)
Y SLUB; N SLOB
# timers
Y NO_HZ_IDLE HIGH_RES_TIMERS; N HZ_PERIODIC
# SMP / interrupts
Y SMP X86_MPPARSE X86_LOCAL_APIC X86_IO_APIC X86_X2APIC
$C --set-val NR_CPUS 64
# hypervisor guest
Y HYPERVISOR_GUEST PARAVIRT KVM_GUEST PVH PARAVIRT_SPINLOCKS
# firmware / buses
Y ACPI PCI PCI_MSI
# serial console, no VT
Y SERIAL_8250 SERIAL_8250_CONSOLE; N VT
# virtio
Y VIRTIO_MENU VIRTIO VIRTIO_PCI VIRTIO_PCI_LEGACY VIRTIO_MMIO VIRTIO_MMIO_CMDLINE_DEVICES \
  VIRTIO_BLK VIRTIO_NET VIRTIO_CONSOLE VIRTIO_BALLOON VSOCKETS VIRTIO_VSOCKETS \
  HW_RANDOM HW_RANDOM_VIRTIO
# networking
Y NET INET PACKET UNIX NETDEVICES NET_CORE
# misc devices
Y RTC_CLASS RTC_DRV_CMOS SERIO SERIO_I8042
N KEYBOARD_ATKBD INPUT_KEYBOARD INPUT_MOUSE
# no modules
N MODULES
make ARCH=x86_64 olddefconfig >/dev/null
