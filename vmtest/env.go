package vmtest

import (
	"os"
	"path/filepath"
)

// Environment variables that choose the guest, as vmtest's VMTEST_KERNEL
// and VMTEST_INITRAMFS do for QEMU.
const (
	// EnvKernel names the kernel: a bzImage or an ELF vmlinux.
	EnvKernel = "GVMM_KERNEL"
	// EnvInitramfs names the initramfs of guests that bring none of their
	// own (Start without WithInitramfs).
	EnvInitramfs = "GVMM_INITRAMFS"
	// EnvCmdline is added to every guest's kernel command line.
	EnvCmdline = "GVMM_CMDLINE"
	// EnvModules names a folder of kernel modules for the kernel
	// (lib/modules/<release>), which images built for a modular kernel
	// need for their virtio drivers.
	EnvModules = "GVMM_MODULES"
	// EnvGuestDir is the folder `make guest` fills (gvmm's Makefile
	// exports it); without it, the nearest .cache/guest above the working
	// directory is used.
	EnvGuestDir = "GUEST_DIR"
	// EnvCoverDir is a host folder that receives the coverage counters of
	// guest programs built with coverage (GOCOVERDIR), as vmtest's
	// VMTEST_GOCOVERDIR.
	EnvCoverDir = "GVMM_GOCOVERDIR"
)

// SkipNoKernel starts the message of a test skipped for want of a kernel.
// CI counts such skips as failures (see the README).
const SkipNoKernel = "vmtest: no kernel:"

// Guest is the kernel and initramfs tests boot when they name none.
type Guest struct {
	// Kernel is the kernel file; empty when none was found.
	Kernel string
	// Initramfs is the default initramfs; may be empty.
	Initramfs string
	// Cmdline is added to every command line.
	Cmdline string
	// Modules is the kernel's module folder, for a modular kernel; empty
	// for a kernel with its drivers built in.
	Modules string
}

// GuestFromEnv returns the guest the environment names: GVMM_KERNEL,
// GVMM_INITRAMFS, GVMM_CMDLINE and GVMM_MODULES; without GVMM_KERNEL, what
// `make guest` produced: the small test kernel (vmlinux-ci, everything
// built in) with initramfs.cpio, else Debian's cloud kernel with
// initramfs-debian-cloud.cpio and its modules.
func GuestFromEnv() Guest {
	g := Guest{
		Kernel:    os.Getenv(EnvKernel),
		Initramfs: os.Getenv(EnvInitramfs),
		Cmdline:   os.Getenv(EnvCmdline),
		Modules:   os.Getenv(EnvModules),
	}
	if g.Kernel != "" {
		return g
	}
	dir := guestDir()
	if dir == "" {
		return g
	}
	for _, c := range []Guest{
		{Kernel: "vmlinux-ci", Initramfs: "initramfs.cpio"},
		{Kernel: "vmlinuz-debian-cloud", Initramfs: "initramfs-debian-cloud.cpio", Modules: "debian-cloud/modules"},
	} {
		if !exists(filepath.Join(dir, c.Kernel)) {
			continue
		}
		g.Kernel = filepath.Join(dir, c.Kernel)
		if g.Initramfs == "" && exists(filepath.Join(dir, c.Initramfs)) {
			g.Initramfs = filepath.Join(dir, c.Initramfs)
		}
		if g.Modules == "" && c.Modules != "" && exists(filepath.Join(dir, c.Modules)) {
			g.Modules = filepath.Join(dir, c.Modules)
		}
		break
	}
	return g
}

// guestDir returns GUEST_DIR, or the nearest .cache/guest folder in or
// above the working directory, or "".
func guestDir() string {
	if d := os.Getenv(EnvGuestDir); d != "" {
		return d
	}
	wd, err := os.Getwd()
	if err != nil {
		return ""
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if d := filepath.Join(dir, ".cache", "guest"); exists(d) {
			return d
		}
		if filepath.Dir(dir) == dir {
			return ""
		}
	}
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
