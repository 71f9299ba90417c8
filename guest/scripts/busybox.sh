#!/bin/bash
# busybox.sh: put a static busybox at $GUEST_DIR/busybox.
#
# Debian's busybox-static package: the installed one when dpkg says it is
# installed (its /bin/busybox), otherwise "apt-get download" + "dpkg-deb -x"
# into the cache, which needs no root and leaves the system alone. (Debian's
# plain "busybox" package also installs /bin/busybox, dynamically linked,
# which is why the package is checked rather than the file.)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/lib.sh
. "$here/lib.sh"
: "${GUEST_DIR:?}"
out=$GUEST_DIR/busybox

status=$(dpkg-query -W -f='${Status} ${Version}' busybox-static 2>/dev/null || true)
case $status in
"install ok installed "*)
    cp /bin/busybox "$out.tmp"
    src="Debian package busybox-static ${status##* } (installed, /bin/busybox)"
    ;;
*)
    work=$GUEST_DIR/busybox-static.tmp
    rm -rf "$work"
    deb=$(with_lists deb_download "$work" busybox-static) || die "cannot download busybox-static"
    dpkg-deb -x "$deb" "$work/root"
    cp "$work/root/bin/busybox" "$out.tmp"
    src="Debian package busybox-static $(dpkg-deb -f "$deb" Version) (apt-get download)"
    rm -rf "$work"
    ;;
esac
chmod 755 "$out.tmp"
mv "$out.tmp" "$out"
src_note busybox "$src"
log "busybox: $src"
