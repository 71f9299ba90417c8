// Package emuhost runs a command inside an emulated KVM host: a Linux
// kernel booted under QEMU's software CPU (TCG) with an AMD CPU model that
// has SVM and nested paging, so that its kvm-amd module serves /dev/kvm. It
// is how gvmm is tested on machines without a usable /dev/kvm, such as CI
// runners whose kernel is itself a KVM guest without nested virtualization.
//
// The host shares this machine's whole file system over 9p and runs the
// command in a chroot of it, so the command, the repository, Go's build
// cache and every other path are the same inside and out. The command's
// output (stdout and stderr, merged) streams out through the host's serial
// console, and Run returns its exit status.
//
// Everything comes from Debian packages by name: QEMU from
// qemu-system-x86, the host's kernel and its modules from a linux-image
// package (the generic flavour, which has kvm-amd and 9p), busybox from
// busybox-static. The packages are fetched with apt-get download and
// unpacked with dpkg-deb, never installed; the host's kernel and initramfs
// are cached in a folder and rebuilt only when a package version or the
// host's /init changes (see Image).
//
// Speed: compile outside, run inside. The software CPU runs the Go
// toolchain about 30 times slower than this machine; test binaries built
// outside with go test -c run inside in seconds. See docs/testing.md.
package emuhost
