# shellcheck shell=bash
# lib.sh: helpers shared by the guest scripts (sourced, not run).
# Needs: apt-get, apt-cache, dpkg-deb (every Debian or Ubuntu machine has them).

log() { echo "guest: $*" >&2; }
die() { echo "guest: error: $*" >&2; exit 1; }

is_root() { [ "$(id -u)" = 0 ]; }

# apt_quiet runs apt-get quietly; as root it skips the "_apt user cannot
# read the folder" sandbox warning of apt-get download.
apt_quiet() {
    apt-get -q -o APT::Sandbox::User=root -o DPkg::Lock::Timeout=300 "$@"
}

# apt_update refreshes the package lists, as root only. Some third-party
# sources may be unreachable (no internet here except Debian mirrors), so
# only the retry that follows decides whether it helped.
apt_updated=
apt_update() {
    [ -z "$apt_updated" ] || return 1
    apt_updated=1
    if ! is_root; then
        log "package lists look missing or stale; run 'apt-get update' as root"
        return 1
    fi
    log "apt-get update (package lists missing or stale)"
    # flock: a parallel make may get here twice; apt-get update does not
    # wait for its lock.
    mkdir -p "$GUEST_DIR"
    flock "$GUEST_DIR/.apt-update.lock" apt-get -q update >&2 ||
        log "apt-get update reported errors; trying anyway"
}

# candidate PKG prints the version apt would install, or fails.
candidate() {
    v=$(apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: *//p')
    [ -n "$v" ] && [ "$v" != "(none)" ] && echo "$v"
}

# with_lists CMD...: runs CMD; if it fails, refreshes the package lists once
# (missing lists on a fresh machine, or stale ones naming versions the
# mirror no longer has) and runs CMD again.
with_lists() {
    "$@" && return 0
    apt_update || return 1
    "$@"
}

# deb_download DIR PKG downloads PKG's candidate .deb into DIR and prints its
# path. (Functions run under with_lists check every step themselves: set -e
# does not apply there.)
deb_download() {
    candidate "$2" >/dev/null || return 1
    mkdir -p "$1" || return 1
    rm -f "$1/$2"_*.deb
    (cd "$1" && apt_quiet download "$2" >&2) || return 1
    ls "$1/$2"_*.deb
}

# kernel_package META prints the versioned kernel image package a metapackage
# depends on, e.g. linux-image-cloud-amd64 -> linux-image-6.1.0-48-cloud-amd64.
kernel_package() {
    candidate "$1" >/dev/null || return 1
    apt-cache depends "$1" 2>/dev/null |
        sed -n 's/^ *Depends: *\(linux-image-[^ <>]*\).*/\1/p' | head -n 1 | grep .
}

# src_note FILE TEXT records where FILE in $GUEST_DIR came from, for
# manifest.txt.
src_note() {
    mkdir -p "$GUEST_DIR/.src"
    printf '%s\n' "$2" > "$GUEST_DIR/.src/$1"
}
