#!/bin/bash
# debian-kernel.sh: put Debian's stock cloud kernel in $GUEST_DIR:
#   vmlinuz-debian-cloud       the bzImage
#   config-debian-cloud        its .config
#   debian-cloud/modules/      its modules (virtio drivers are modules there),
#                              searched by mkinitramfs for initramfs-debian-cloud.cpio
#   debian-cloud/release       the kernel release, e.g. 6.1.0-48-cloud-amd64
#
# From the shared cache when $SHARED_GUEST has both vmlinuz-debian-cloud and
# initramfs-debian-cloud.cpio (the modules are taken out of that image, so
# they always match the kernel). Otherwise from the Debian archive: the
# newest linux-image-*-cloud-amd64, found through the Depends of the
# metapackage $GUEST_DEBIAN_KERNEL_META, fetched with apt-get download
# (no root needed) and unpacked with dpkg-deb -x; lib/modules/<release> is
# kept. On Ubuntu, where modules are a separate linux-modules-<release>
# package, that one is fetched too (untested).
#
# Environment: GUEST_DIR (required), MKINITRAMFS (the built
# guest/cmd/mkinitramfs, required), SHARED_GUEST, GUEST_DEBIAN_KERNEL_META.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/lib.sh
. "$here/lib.sh"
: "${GUEST_DIR:?}" "${MKINITRAMFS:?}"
meta=${GUEST_DEBIAN_KERNEL_META:-linux-image-cloud-amd64}
shared=${SHARED_GUEST:-}
final=$GUEST_DIR/debian-cloud
tmp=$GUEST_DIR/debian-cloud.tmp
rm -rf "$tmp"
mkdir -p "$tmp"

if [ -n "$shared" ] && [ -f "$shared/vmlinuz-debian-cloud" ] && [ -f "$shared/initramfs-debian-cloud.cpio" ]; then
    release=$("$MKINITRAMFS" -extract-modules "$shared/initramfs-debian-cloud.cpio" -o "$tmp/modules")
    cp "$shared/vmlinuz-debian-cloud" "$tmp/vmlinuz"
    if [ -f "$shared/config-debian-cloud" ]; then
        cp "$shared/config-debian-cloud" "$tmp/config"
        confsrc="shared cache $shared/config-debian-cloud"
    fi
    src="shared cache $shared/vmlinuz-debian-cloud (release $release; modules from $shared/initramfs-debian-cloud.cpio)"
    modsrc="shared cache $shared/initramfs-debian-cloud.cpio (release $release)"
else
    fetch() {
        pkg=$(kernel_package "$meta") || return 1
        deb=$(deb_download "$tmp/deb" "$pkg") || return 1
    }
    with_lists fetch || die "cannot download the kernel package of $meta"
    version=$(dpkg-deb -f "$deb" Version)
    log "unpacking $pkg $version"
    dpkg-deb -x "$deb" "$tmp/root"
    release=${pkg#linux-image-}
    if [ ! -d "$tmp/root/lib/modules/$release/kernel" ]; then
        # Ubuntu ships the modules in their own package.
        mdeb=$(with_lists deb_download "$tmp/deb" "linux-modules-$release") ||
            die "$pkg has no lib/modules/$release and linux-modules-$release cannot be downloaded"
        dpkg-deb -x "$mdeb" "$tmp/root"
    fi
    [ -d "$tmp/root/lib/modules/$release" ] || die "$pkg: no lib/modules/$release"
    for vmlinuz in "$tmp/root/boot/vmlinuz-$release"*; do break; done
    [ -f "$vmlinuz" ] || die "$pkg: no boot/vmlinuz-$release"
    cp "$vmlinuz" "$tmp/vmlinuz"
    cp "$tmp/root/boot/config-$release" "$tmp/config" 2>/dev/null || true
    confsrc="Debian package $pkg $version, boot/config-$release"
    mkdir -p "$tmp/lib/modules"
    mv "$tmp/root/lib/modules/$release" "$tmp/lib/modules/"
    ln -s "lib/modules/$release" "$tmp/modules"
    rm -rf "$tmp/root" "$tmp/deb"
    src="Debian package $pkg $version (apt-get download, via $meta)"
    modsrc="$src, lib/modules/$release"
fi

chmod 644 "$tmp/vmlinuz" "$tmp/config" 2>/dev/null || true # the shared copies are read-only
echo "$release" > "$tmp/release"
rm -rf "$final"
mv "$tmp" "$final"
if [ -f "$final/config" ]; then
    mv "$final/config" "$GUEST_DIR/config-debian-cloud"
    src_note config-debian-cloud "$confsrc"
fi
src_note debian-cloud-modules "$modsrc"
src_note vmlinuz-debian-cloud "$src"
# Last, so that make sees the target only when everything else is in place.
mv "$final/vmlinuz" "$GUEST_DIR/vmlinuz-debian-cloud"
log "vmlinuz-debian-cloud: $src"
