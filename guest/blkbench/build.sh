#!/bin/sh
# build.sh OUTPUT: compile blkbench.c into a tiny static x86-64 program with
# no libc, with the flags of guest/init/build.sh (which says why each is
# there). CC overrides the compiler (default gcc). Used by the block device
# benchmark (tests/blk_test.go, blk.mk).
set -eu
out=${1:?usage: build.sh OUTPUT}
here=$(cd "$(dirname "$0")" && pwd)
${CC:-gcc} -Os -Wall -Wextra \
    -static -nostdlib -ffreestanding -fno-builtin \
    -fno-pie -no-pie -fno-stack-protector \
    -fcf-protection=none -fno-stack-clash-protection \
    -fno-asynchronous-unwind-tables -fno-unwind-tables \
    -ffunction-sections -fdata-sections \
    -Wl,--gc-sections -Wl,--build-id=none -Wl,-z,noseparate-code \
    -Wl,-z,norelro -Wl,-z,noexecstack -s \
    -o "$out.tmp" "$here/blkbench.c"
mv "$out.tmp" "$out"
