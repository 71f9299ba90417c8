#!/bin/bash
# build-kernel.sh [config|build]: build vmlinux-ci, the small test kernel
# tuned for the nested KVM backend (HZ=100, NR_CPUS=8, no ptp_kvm; see
# config-ci.sh), from Debian's kernel source package, into $GUEST_DIR.
#
#   config  install/unpack the source, apply guest/config-ci (make
#           olddefconfig) and the int3 patch, then stop
#   build   all of that, then make vmlinux and strip it to $GUEST_DIR/vmlinux-ci
#           (about 17 minutes on the 2-CPU development machine)
#
# The source is Debian's $GUEST_KERNEL_SOURCE (default linux-source-6.1):
# installed with apt-get as root, otherwise fetched with apt-get download and
# unpacked into the cache. The tree is unpacked once into
# $GUEST_DIR/kernel/<package> and rebuilt incrementally after that.
#
# GUEST_KERNEL_NO_INT3_SELFTEST=1 (default) comments out the call of
# int3_selftest() in arch/x86/kernel/alternative.c, as in the shared
# vmlinux-ci: 6.1 runs that self-test unconditionally at boot, and its int3
# stops the nested backend's instruction emulator unless the VMM handles it.
# With 0 the call is put back, so the kernel exercises the VMM's int3 path.
#
# Environment: GUEST_DIR (required), GUEST_KERNEL_SOURCE, GUEST_KERNEL_CONFIG
# (default guest/config-ci), GUEST_KERNEL_NO_INT3_SELFTEST, GUEST_KERNEL_JOBS,
# GUEST_INSTALL (1: install missing packages with apt-get when root).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/../scripts/lib.sh
. "$here/../scripts/lib.sh"
: "${GUEST_DIR:?}"
step=${1:-build}
pkg=${GUEST_KERNEL_SOURCE:-linux-source-6.1}
config=${GUEST_KERNEL_CONFIG:-$here/../config-ci}
noint3=${GUEST_KERNEL_NO_INT3_SELFTEST:-1}
jobs=${GUEST_KERNEL_JOBS:-$(nproc)}
work=$GUEST_DIR/kernel
case $step in config|build) ;; *) die "usage: build-kernel.sh [config|build]" ;; esac
mkdir -p "$work"

# Build tools: the kernel's own list (Documentation/process/changes.rst),
# trimmed to what this config uses.
missing=
need_cmd() { command -v "$1" >/dev/null 2>&1 || missing="$missing $2"; }
need_file() { [ -e "$1" ] || missing="$missing $2"; }
need_cmd make make
need_cmd gcc gcc
need_cmd flex flex
need_cmd bison bison
need_cmd bc bc
need_cmd perl perl
need_cmd xz xz-utils
need_file /usr/include/libelf.h libelf-dev        # objtool (ORC unwinder)
need_file /usr/include/openssl/opensslv.h libssl-dev
[ -f "/usr/src/$pkg.tar.xz" ] || missing="$missing $pkg"
if [ -n "$missing" ]; then
    if is_root && [ "${GUEST_INSTALL:-1}" = 1 ]; then
        log "installing$missing"
        # shellcheck disable=SC2086 # a list of packages
        with_lists apt_quiet install -y --no-install-recommends $missing >&2 ||
            die "apt-get install$missing failed"
    else
        tools=${missing/ $pkg/}
        [ -z "$tools" ] || die "missing build tools; install:$tools"
    fi
fi

tarball=/usr/src/$pkg.tar.xz
if [ -f "$tarball" ]; then
    version=$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || echo unknown)
else
    # Not root: fetch the package into the cache instead of installing it.
    deb=$(with_lists deb_download "$work/deb" "$pkg") || die "cannot download $pkg"
    version=$(dpkg-deb -f "$deb" Version)
    rm -rf "$work/pkgroot"
    dpkg-deb -x "$deb" "$work/pkgroot"
    tarball=$work/pkgroot/usr/src/$pkg.tar.xz
fi

src=$work/$pkg
stamp=$work/.unpacked-$pkg
if [ ! -f "$stamp" ] || [ "$tarball" -nt "$stamp" ] || [ ! -d "$src" ]; then
    log "unpacking $tarball ($pkg $version)"
    rm -rf "$src"
    tar -xf "$tarball" -C "$work"
    [ -d "$src" ] || die "$tarball did not unpack to $pkg/"
    touch "$stamp"
fi

cp "$config" "$src/.config"
make -s -C "$src" ARCH=x86_64 olddefconfig
# olddefconfig adapts the config to the source; say so if it changed
# anything that was set explicitly.
if ! diff -q <(grep '^CONFIG_' "$config" | sort) <(grep '^CONFIG_' "$src/.config" | sort) >/dev/null; then
    log "note: olddefconfig changed the config:"
    diff <(grep '^CONFIG_' "$config" | sort) <(grep '^CONFIG_' "$src/.config" | sort) | grep '^[<>]' | head -n 20 >&2 || true
fi

alt=$src/arch/x86/kernel/alternative.c
marker='gvmm: int3 self-test disabled'
if [ "$noint3" = 1 ]; then
    if ! grep -q "$marker" "$alt"; then
        sed -i "s|^\([[:space:]]*\)int3_selftest();|\1/* int3_selftest(); $marker */|" "$alt"
        grep -q "$marker" "$alt" || die "$alt: no int3_selftest(); call to comment out"
    fi
    int3="int3_selftest() call commented out"
else
    sed -i "s|/\* int3_selftest(); $marker \*/|int3_selftest();|" "$alt"
    int3="int3_selftest() kept"
fi
log "configured $src ($int3)"
[ "$step" = config ] && exit 0

log "building vmlinux with $jobs jobs (about 17 minutes on 2 CPUs)"
start=$(date +%s)
make -s -C "$src" ARCH=x86_64 -j"$jobs" vmlinux
release=$(make -s -C "$src" ARCH=x86_64 kernelrelease)
strip -o "$GUEST_DIR/vmlinux-ci.tmp" "$src/vmlinux"
mv "$GUEST_DIR/vmlinux-ci.tmp" "$GUEST_DIR/vmlinux-ci"
src_note vmlinux-ci "built by make guest-kernel from Debian package $pkg $version (release $release), guest/config-ci, $int3, stripped"
log "vmlinux-ci: release $release, built in $(( $(date +%s) - start )) s"
