# gvmm: a virtual machine monitor in pure Go for Linux KVM.
#
#   make              build bin/gvmm and bin/emuhost
#   make guest        fetch/build the test guests into .cache/guest (guest.mk)
#   make boot         build, then boot the small test guest on the console
#   make test         everything CI runs: vet, unit and race tests here, then
#                     the KVM tests and the Linux boot matrix where KVM works
#   make test-kvm     only the KVM tests (tiny guests)
#   make test-boot    only the Linux boot matrix
#   make bench        exit-loop benchmarks with their baselines
#   make fuzz         run every fuzz target for FUZZTIME each
#
# Where this machine has no usable /dev/kvm, everything that needs KVM runs
# inside the emulated KVM host (bin/emuhost: QEMU's software CPU with AMD
# SVM, Debian's kernel with kvm-amd; docs/testing.md). Test binaries are
# compiled here and only run there. GVMM_EMULATED_HOST=always|never|auto
# overrides the choice.

SHELL    := /bin/bash
GO       ?= go
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
FUZZTIME ?= 30s
GUEST_DIR ?= $(CURDIR)/.cache/guest
export GUEST_DIR
EMUHOST_CACHE ?= $(CURDIR)/.cache/emuhost
EMUHOST = $(CURDIR)/bin/emuhost --cache '$(EMUHOST_CACHE)'
# Test phases stop a stuck emulated host; make boot runs as long as the user
# likes. When the emulated host's kernel crashes or locks up under a phase
# (QEMU 7.2's software CPU still corrupts it now and then: docs/testing.md),
# the phase runs once more from the start in a new host, and says so; a
# test that fails is never run again.
EMUHOST_TEST = $(EMUHOST) --timeout 45m --retries 1
TESTBIN := $(CURDIR)/bin/test
OUT     := $(CURDIR)/tests/out
# The packages whose tests need KVM: they call kvmtest.SkipIfUnavailable
# (directly or through kvmtest.New). tests/ (the Linux boots) has its own
# phase.
KVM_TEST_RE := SkipIfUnavailable[(]|kvmtest[.]New[(]
KVM_PKGS = $(shell grep -l -E '$(KVM_TEST_RE)' $$(find . -name '*_test.go' -not -path './.cache/*') | \
	xargs -n1 dirname | sed 's|^\./||' | grep -v -x tests | sort -u)
# Packages also run with the race detector where KVM works.
RACE_KVM_PKGS := machine vcpu
# Floors for CI: fewer KVM tests or boots than these means tests were lost.
MIN_KVM_TESTS ?= 85
MIN_BOOTS     ?= 8

.DEFAULT_GOAL := build
.PHONY: build test test-unit test-race test-kvm test-boot test-boot-ci bench fuzz boot vet clean

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o bin/gvmm ./cmd/gvmm
	$(GO) build -o bin/emuhost ./cmd/emuhost

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }

# Each phase keeps its go test -v output in tests/out/PHASE.log, and
# .ci/check-phase checks it: failures, skips, and how many KVM tests and
# boots really ran.
test: build vet test-unit test-race test-kvm test-boot test-vmtest

# Every package's tests on this machine. Without a usable /dev/kvm here the
# KVM tests skip in this phase and run in test-kvm.
test-unit:
	@mkdir -p $(OUT)
	set -o pipefail; $(GO) test -count=1 -v ./... 2>&1 | tee $(OUT)/unit.log | grep -E '^(ok|FAIL|panic|--- FAIL)'
	.ci/check-phase unit $(OUT)/unit.log

test-race:
	@mkdir -p $(OUT)
	set -o pipefail; $(GO) test -count=1 -race -v ./machine/... ./devices/... ./vcpu/... ./cmd/... ./emuhost/... 2>&1 | \
	  tee $(OUT)/race.log | grep -E '^(ok|FAIL|panic|--- FAIL)'
	.ci/check-phase race $(OUT)/race.log

# The KVM tests: built here, run where KVM works (the race-detector builds
# of RACE_KVM_PKGS too).
test-kvm: build guest-tools
	@mkdir -p $(OUT) && rm -rf $(TESTBIN)/kvm && mkdir -p $(TESTBIN)/kvm
	@for p in $(KVM_PKGS); do \
	  $(GO) test -c -o $(TESTBIN)/kvm/$${p//\//_}.test ./$$p || exit 1; done
	@for p in $(RACE_KVM_PKGS); do \
	  $(GO) test -race -c -o $(TESTBIN)/kvm/race-$${p//\//_}.test ./$$p || exit 1; done
	rm -f $(OUT)/kvm.log
	$(EMUHOST_TEST) -- .ci/run-tests $(OUT)/kvm.log $(TESTBIN)/kvm/*.test > /dev/null || \
	  { grep -E '^(ok|FAIL|panic|--- FAIL|\s+--- FAIL)' $(OUT)/kvm.log; exit 1; }
	grep -E '^(ok|FAIL)' $(OUT)/kvm.log
	MIN_KVM_TESTS=$(MIN_KVM_TESTS) .ci/check-phase kvm $(OUT)/kvm.log

# The Linux boots: every test of ./tests. The boot matrix
# (tests/boot_test.go: both kernels, 1, 2 and 4 vCPUs, RAM above 4 GiB, the
# console shell, power off and test exit), the disks (tests/blk_test.go:
# data copied, read-only, ext4 root, SIGKILL after sync in each cache mode)
# and the network (tests/net_test.go: ping and 8 MiB of TCP each way
# through a tap on both kernels, two guests on a bridge, bad --net input;
# make test-net runs only these). Tests named *Bench* are the benchmarks
# against QEMU (make bench-blk, make bench-net-qemu); TestVMTest* are the
# vmtest examples, with their own phase (vmtest.mk).
test-boot: build guest
	@mkdir -p $(OUT) $(TESTBIN)
	$(GO) test -c -o $(TESTBIN)/tests.test ./tests
	rm -f $(OUT)/boot.log
	GVMM_BIN=$(CURDIR)/bin/gvmm GVMM_BOOT_TESTS=$${GVMM_BOOT_TESTS:-ci} \
	  TESTFLAGS='-test.timeout 60m -test.skip Bench|TestVMTest' \
	  $(EMUHOST_TEST) -- .ci/run-tests $(OUT)/boot.log $(TESTBIN)/tests.test | grep -E '^(ok|FAIL|\s+--- |--- )'
	MIN_BOOTS=$(MIN_BOOTS) .ci/check-phase boot $(OUT)/boot.log

# Older name of test-boot.
test-boot-ci: test-boot

# Benchmarks print their ratio to a baseline measured in the same run
# (docs/exit-loop.md). The exit-loop benchmark needs KVM: it runs where KVM
# works, like the KVM tests.
bench: build guest-tools
	@mkdir -p $(TESTBIN)/bench $(OUT)
	@for p in vcpu vcpu/stats vcpu/trace; do \
	  $(GO) test -c -o $(TESTBIN)/bench/$${p//\//_}.test ./$$p || exit 1; done
	rm -f $(OUT)/bench.log
	TESTFLAGS="-test.run ^\$$ -test.bench . -test.benchtime 20000x" \
	  $(EMUHOST_TEST) -- .ci/run-tests $(OUT)/bench.log $(TESTBIN)/bench/*.test

fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list 'Fuzz.*' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

# Boot the small test kernel with the test initramfs on this terminal (or
# Debian's kernel where make guest could not get the small one), through the
# emulated KVM host where there is no usable /dev/kvm. The guest prints its
# GUEST- lines and powers off; BOOT_ARGS='--cmdline test=shell' gives a
# shell instead (Ctrl-A x quits gvmm, and then the emulated host).
boot: build guest
	@k=$(GUEST_DIR)/vmlinux-ci; i=$(GUEST_DIR)/initramfs.cpio; \
	if [ ! -f $$k ]; then k=$(GUEST_DIR)/vmlinuz-debian-cloud; i=$(GUEST_DIR)/initramfs-debian-cloud.cpio; fi; \
	echo "bin/gvmm run --kernel $$k --initrd $$i --memory 256M $(BOOT_ARGS)"; \
	$(EMUHOST) -- bin/gvmm run --kernel $$k --initrd $$i --memory 256M $(BOOT_ARGS)

clean:
	rm -rf bin

include guest.mk
include vmtest.mk
include blk.mk
include net.mk
