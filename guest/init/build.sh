#!/bin/sh
# build.sh OUTPUT [SOURCE]: compile SOURCE (default init.c here) into a tiny
# static x86-64 program with no libc. Used by guest.mk, by the Go test
# guest/initramfs (TestInitBinary) and, for ../blkbench, by its build.sh, so
# the flags live in one place. CC overrides the compiler (default gcc).
#
# Why these flags:
#   -static -nostdlib -ffreestanding  no libc, no startup files, no dynamic loader
#   -fno-pie -no-pie                  a plain ET_EXEC: nothing to relocate at start
#   -fno-stack-protector              no TLS canary (there is no TLS)
#   -fcf-protection=none -fno-stack-clash-protection
#                                     Ubuntu's gcc enables both by default; they only add code
#   -fno-asynchronous-unwind-tables   no .eh_frame: fewer bytes, fewer pages
#   -Wl,-z,noseparate-code            two LOAD segments (code, data) instead of four,
#                                     so the kernel maps and faults in fewer pages
#   -s, --build-id=none, --gc-sections
#                                     drop everything the program does not run
set -eu
out=${1:?usage: build.sh OUTPUT [SOURCE]}
here=$(cd "$(dirname "$0")" && pwd)
src=${2:-$here/init.c}
${CC:-gcc} -Os -Wall -Wextra \
    -static -nostdlib -ffreestanding -fno-builtin \
    -fno-pie -no-pie -fno-stack-protector \
    -fcf-protection=none -fno-stack-clash-protection \
    -fno-asynchronous-unwind-tables -fno-unwind-tables \
    -ffunction-sections -fdata-sections \
    -Wl,--gc-sections -Wl,--build-id=none -Wl,-z,noseparate-code \
    -Wl,-z,norelro -Wl,-z,noexecstack -s \
    -o "$out.tmp" "$src"
mv "$out.tmp" "$out"
