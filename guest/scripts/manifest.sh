#!/bin/bash
# manifest.sh: write $GUEST_DIR/manifest.txt: every file of the cache folder
# (top level) with its size, sha256 and where it came from (the notes the
# other steps leave in $GUEST_DIR/.src/<file>).
set -euo pipefail
: "${GUEST_DIR:?}"
cd "$GUEST_DIR"
export LC_ALL=C # file order
{
    echo "# gvmm test guests, written by 'make guest' (guest.mk). Columns: file, bytes, sha256, source."
    for f in *; do
        if [ ! -f "$f" ] || [ "$f" = manifest.txt ]; then continue; fi
        src="(unknown origin)"
        [ -f ".src/$f" ] && src=$(cat ".src/$f")
        printf '%-30s %10s  %s  %s\n' "$f" "$(stat -c %s "$f")" "$(sha256sum < "$f" | cut -d' ' -f1)" "$src"
    done
    if [ -f .src/debian-cloud-modules ]; then
        echo "# debian-cloud/modules: $(cat .src/debian-cloud-modules)"
    fi
} > .manifest.txt.tmp
mv .manifest.txt.tmp manifest.txt
