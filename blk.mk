# blk.mk: the block device's benchmarks. Included by the top-level Makefile;
# every target and variable starts with bench-blk/BLK_.
#
#   make bench-blk-inprocess   the virtqueue and request path against raw
#                              pread/pwrite, in this process (no KVM needed)
#   make bench-blk             the in-guest benchmark (256 MiB sequential
#                              O_DIRECT reads and writes, 4 KiB random reads)
#                              with gvmm and with QEMU's virtio-blk-pci
#                              (cache=none), interleaved, in the emulated KVM
#                              host where /dev/kvm is missing
#
# BLK_BENCH_ROUNDS (default 2) sets how many times each VMM runs.
# BLK_BENCH_BACKING is the disk both VMMs serve: loop (default), a loop
# device over a file on the emulated host's tmpfs; or share, a file in
# tests/out, which reaches the machine outside over 9p (much noisier).

BLK_BENCH_ROUNDS ?= 2
BLK_BENCH_BACKING ?= loop
BLK_GO ?= $(or $(GO),go)

.PHONY: bench-blk bench-blk-inprocess

bench-blk-inprocess:
	$(BLK_GO) test -run '^$$' -bench BenchmarkRequests -benchtime 50000x ./virtio/blk/

bench-blk: guest
	$(BLK_GO) build -o bin/gvmm ./cmd/gvmm
	$(BLK_GO) build -o bin/emuhost ./cmd/emuhost
	@mkdir -p bin/test
	$(BLK_GO) test -c -o bin/test/tests.test ./tests/
	cd tests && GVMM_BLK_BENCH=1 GVMM_BLK_BENCH_ROUNDS=$(BLK_BENCH_ROUNDS) GVMM_BLK_BENCH_BACKING=$(BLK_BENCH_BACKING) GVMM_BIN=$(CURDIR)/bin/gvmm \
	  GUEST_DIR=$(abspath $(GUEST_DIR)) ../bin/emuhost -- ../bin/test/tests.test -test.v -test.run TestBlkBenchQEMU -test.timeout 90m
