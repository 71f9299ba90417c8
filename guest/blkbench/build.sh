#!/bin/sh
# build.sh OUTPUT: compile blkbench.c with guest/init/build.sh, the build of
# gvmm's libc-free guest programs. CC overrides the compiler (default gcc).
# Used by the block device benchmark (tests/blk_test.go, blk.mk).
set -eu
out=${1:?usage: build.sh OUTPUT}
here=$(cd "$(dirname "$0")" && pwd)
exec "$here/../init/build.sh" "$out" "$here/blkbench.c"
