# gvmm: a virtual machine monitor in pure Go for Linux KVM.
#
#   make              build bin/gvmm
#   make guest        fetch/build the test guests into .cache/guest (guest.mk)
#   make boot         build, then boot the small test guest on the console
#   make test         unit, KVM and fuzz-seed tests, plus one Linux boot (CI's command)
#   make test-boot    the full Linux boot matrix (slow on nested hosts; see README)
#   make bench        exit-loop benchmarks with their baselines
#   make fuzz         run every fuzz target for FUZZTIME each

SHELL    := /bin/bash
GO       ?= go
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
FUZZTIME ?= 30s
GUEST_DIR ?= $(CURDIR)/.cache/guest
export GUEST_DIR

.DEFAULT_GOAL := build
.PHONY: build test test-unit test-boot test-boot-ci bench fuzz boot vet clean

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o bin/gvmm ./cmd/gvmm

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }

# Unit and KVM tests (tiny guests), with the race detector where it is cheap,
# then the CI Linux boot. KVM tests that skip say why; tests/kvmcheck fails
# the run if they skipped although /dev/kvm exists.
test: build vet test-unit test-boot-ci

test-unit:
	@mkdir -p tests/out
	set -o pipefail; $(GO) test -count=1 -v ./... 2>&1 | tee tests/out/unit.log | grep -E '^(ok|FAIL|panic|--- FAIL|--- SKIP|\s+\S+_test.go)' 
	.ci/check-skips tests/out/unit.log
	$(GO) test -count=1 -race ./machine/... ./devices/... ./vcpu/... ./cmd/...

# One Linux boot that fits CI's time on a nested host: the small test
# kernel to GUEST-BOOT-OK, asserting CPU count, memory and exit status.
test-boot-ci:
	GVMM_BOOT_TESTS=ci $(GO) test -count=1 -timeout 80m -v -run 'TestBoot' ./tests/

# Every boot: both kernels, 1 and 2 vCPUs, memory above 4 GiB.
test-boot:
	GVMM_BOOT_TESTS=all $(GO) test -count=1 -timeout 180m -v -run 'TestBoot' ./tests/

bench:
	$(GO) test -run '^$$' -bench . -benchtime 20000x ./vcpu/ ./vcpu/stats/ ./vcpu/trace/

fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list 'Fuzz.*' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

# Boot the small test kernel with the test initramfs on this terminal (or
# Debian's kernel where make guest could not get the small one). The guest
# prints its GUEST- lines and powers off; BOOT_ARGS='--cmdline test=shell'
# gives a shell instead (Ctrl-A x quits).
boot: build guest
	@k=$(GUEST_DIR)/vmlinux-ci; i=$(GUEST_DIR)/initramfs.cpio; \
	if [ ! -f $$k ]; then k=$(GUEST_DIR)/vmlinuz-debian-cloud; i=$(GUEST_DIR)/initramfs-debian-cloud.cpio; fi; \
	echo "bin/gvmm run --kernel $$k --initrd $$i --memory 256M $(BOOT_ARGS)"; \
	bin/gvmm run --kernel $$k --initrd $$i --memory 256M $(BOOT_ARGS)

clean:
	rm -rf bin

include guest.mk
