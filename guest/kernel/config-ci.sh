#!/bin/bash
# config-ci.sh: derive config-ci (the kernel tuned for the nested kvm_pvm
# backend that the development and CI machines used to have) from
# config-microvm. Run in a kernel tree whose .config is config-microvm (from
# config-microvm.sh).
#
# What it changes and why (measurements in README-measurements.md of the
# shared guest cache, ../shared/guest next to the repository, and in
# ../shared/NESTED-KVM.md): HZ=100 and NR_CPUS=8 because every timer
# tick costs 12-17 ms of wall time there; no PTP_1588_CLOCK_KVM because its
# KVM_HC_CLOCK_PAIRING vmcall never completes there; fewer drivers, no debug.
#
# Copied from scripts/config-ci.sh of the shared guest cache. Kept as the
# record of how guest/config-ci came about; "make guest-kernel" uses
# guest/config-ci directly. Note: it leaves CONFIG_X86_IOPL_IOPERM off (tinyconfig), so
# ioperm(2) fails with ENOSYS on this kernel; CONFIG_DEVPORT is on, which is
# what /init uses for initexit=testexit there.
set -euo pipefail
C=scripts/config
Y() { for o in "$@"; do $C --enable "$o"; done; }
N() { for o in "$@"; do $C --disable "$o"; done; }
# timer
N HZ_250 HZ_300 HZ_1000 HZ_PERIODIC NO_HZ_FULL; Y HZ_100 NO_HZ_IDLE HIGH_RES_TIMERS; $C --set-val HZ 100
$C --set-val NR_CPUS 8
# PTP (KVM_HC_CLOCK_PAIRING vmcall livelock)
N PTP_1588_CLOCK_KVM PTP_1588_CLOCK NET_PTP_CLASSIFY
# debug
N DEBUG_KERNEL SCHED_DEBUG SLUB_DEBUG DEBUG_BUGVERBOSE
Y PRINTK_TIME
# cpufreq / power
N SCHED_MC_PRIO X86_INTEL_PSTATE X86_AMD_PSTATE X86_ACPI_CPUFREQ ACPI_PROCESSOR THERMAL X86_PCC_CPUFREQ CPU_FREQ ACPI_CPPC_LIB ACPI_PCC ACPI_AC ACPI_BATTERY ACPI_FAN ACPI_THERMAL ACPI_TABLE_UPGRADE \
  ACPI_CPU_FREQ_PSS ACPI_LPIT ACPI_CONTAINER
# perf PMU drivers that poke MSRs/PCI at boot
N PERF_EVENTS_INTEL_UNCORE PERF_EVENTS_INTEL_RAPL PERF_EVENTS_INTEL_CSTATE PERF_EVENTS_AMD_POWER PERF_EVENTS_AMD_UNCORE
# hw_random: virtio only
N HW_RANDOM_INTEL HW_RANDOM_AMD HW_RANDOM_VIA HW_RANDOM_TIMERIOMEM HW_RANDOM_BA431 HW_RANDOM_XIPHERA
Y HW_RANDOM HW_RANDOM_VIRTIO
# input / display / sound / usb
N INPUT_KEYBOARD INPUT_MOUSE KEYBOARD_ATKBD MOUSE_PS2 INPUT_MOUSEDEV INPUT_EVDEV INPUT_JOYSTICK INPUT_TABLET INPUT_TOUCHSCREEN INPUT_MISC \
  SERIO_SERPORT VT VGA_CONSOLE FB DRM SOUND USB_SUPPORT USB VGA_ARB
# PCI extras
N PCIEASPM PCI_QUIRKS PCIEPORTBUS HOTPLUG_PCI SERIAL_8250_PCI SERIAL_8250_EXAR SERIAL_8250_LPSS SERIAL_8250_MID \
  SERIAL_8250_PERICOM SERIAL_8250_DW SERIAL_8250_PNP
# networking extras
N NETWORK_FILESYSTEMS INET_DIAG VSOCKETS_DIAG VSOCKETS_LOOPBACK
for v in $(grep -oE '^CONFIG_NET_VENDOR_[A-Z0-9_]+' .config | sed 's/^CONFIG_//'); do N $v; done
# keep list
Y 64BIT SMP ACPI PCI PCI_MSI VIRTIO_MENU VIRTIO VIRTIO_PCI VIRTIO_PCI_LEGACY VIRTIO_MMIO VIRTIO_MMIO_CMDLINE_DEVICES \
  VIRTIO_BLK VIRTIO_NET VIRTIO_CONSOLE VSOCKETS VIRTIO_VSOCKETS SERIAL_8250 SERIAL_8250_CONSOLE SERIO SERIO_I8042 \
  RTC_CLASS RTC_DRV_CMOS DEVTMPFS DEVTMPFS_MOUNT TMPFS PROC_FS SYSFS BLK_DEV_INITRD RD_GZIP BINFMT_ELF BINFMT_SCRIPT \
  NET INET PACKET UNIX PVH HYPERVISOR_GUEST KVM_GUEST PARAVIRT X86_MPPARSE EXT4_FS
N MODULES
make ARCH=x86_64 olddefconfig >/dev/null
