#!/bin/bash
# tools.sh: check the host tools "make guest" and the emulated KVM host
# need; as root (and with
# GUEST_INSTALL=1, the default) install the missing Debian packages with
# apt-get. Quick when everything is there.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/lib.sh
. "$here/lib.sh"
cc=${GUEST_CC:-gcc}
go=${GUEST_GO:-go}

missing=
need() { command -v "$1" >/dev/null 2>&1 || missing="$missing $2"; }
need "$cc" gcc
need apt-get apt
need dpkg-deb dpkg
need flock util-linux
need sha256sum coreutils
# Without a usable /dev/kvm, the tests and make boot run in the emulated KVM
# host (bin/emuhost), which is QEMU.
if ! { [ -r /dev/kvm ] && [ -w /dev/kvm ]; }; then
    need qemu-system-x86_64 qemu-system-x86
fi
if [ -n "$missing" ]; then
    if is_root && [ "${GUEST_INSTALL:-1}" = 1 ]; then
        log "installing$missing"
        # shellcheck disable=SC2086 # a list of packages
        with_lists apt_quiet install -y --no-install-recommends $missing >&2 ||
            die "apt-get install$missing failed"
    else
        die "missing tools; install the Debian packages:$missing"
    fi
fi
command -v "$go" >/dev/null 2>&1 || die "no Go toolchain ($go) in PATH"
