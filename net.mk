# net.mk: the virtio-net tests and benchmarks. Included by the top-level
# Makefile (after its variables: GO, EMUHOST, TESTBIN, OUT).
#
#   make test-net        only the network boots of make test-boot: TCP both
#                        ways, a bridge, bad --net input (network namespaces in
#                        the emulated KVM host)
#   make bench-net       the in-process benchmarks: frames through the real
#                        transmit and receive code and a tap, against plain
#                        writev/readv on the same descriptor (needs root and
#                        /dev/net/tun, not KVM: runs here)
#   make bench-net-qemu  TCP through a tap, guest to host then host to guest,
#                        gvmm against QEMU's virtio-net-pci (vhost=off),
#                        interleaved, in the emulated KVM host; NET_MIB (64) MiB
#                        each way per run, NET_ROUNDS (2) rounds

NET_MIB    ?= 64
NET_ROUNDS ?= 2

.PHONY: test-net bench-net bench-net-qemu

test-net: build guest
	@mkdir -p $(OUT) $(TESTBIN)
	$(GO) test -c -o $(TESTBIN)/tests.test ./tests
	rm -f $(OUT)/net.log
	GVMM_BIN=$(CURDIR)/bin/gvmm GVMM_BOOT_TESTS=$${GVMM_BOOT_TESTS:-ci} \
	  TESTFLAGS='-test.run ^TestNet -test.timeout 60m' \
	  $(EMUHOST) -- .ci/run-tests $(OUT)/net.log $(TESTBIN)/tests.test | grep -E '^(ok|FAIL|\s+--- |--- )'

bench-net:
	$(GO) test -run '^$$' -bench . -benchtime 50000x -count 3 ./virtio/net/tap

# The emulated host runs this benchmark with its default shadow paging
# (kvm_amd.npt=0; GVMM_EMULATED_HOST_APPEND=kvm_amd.npt=1 for nested
# paging). Both modes have lost guests to the same crash of QEMU's software
# CPU, a page fault on the user stack at the first instruction of
# entry_SYSCALL_64, in which neither VMM takes part: under shadow paging
# QEMU's guest in the second round of both runs tried while the host kept
# time with the HPET; since the host uses the TSC, gvmm's guest in each of
# the three runs under nested paging that got that far and in one of two
# under shadow paging, all with a build that placed guest RAM on a 2 MiB
# boundary (taken back), and QEMU's once under nested paging. With the TSC
# clock, shadow paging ran every round of both VMMs in the one run of today's
# build (docs/testing.md has more on the emulated host's crashes).
bench-net-qemu: build guest
	@mkdir -p $(OUT) $(TESTBIN)
	$(GO) test -c -o $(TESTBIN)/tests.test ./tests
	cd tests && GVMM_BIN=$(CURDIR)/bin/gvmm GVMM_BOOT_TESTS=ci GVMM_NET_MIB=$(NET_MIB) GVMM_NET_ROUNDS=$(NET_ROUNDS) \
	  $(EMUHOST) -- $(TESTBIN)/tests.test -test.run '^$$' -test.bench TCPvsQEMU -test.benchtime 1x -test.v -test.timeout 120m
