# guest.mk: the test guests of gvmm (kernels and initramfs images), fetched
# or built into $(GUEST_DIR). Included by the top-level Makefile; also works
# alone: make -f guest.mk guest. See guest/README.md.
#
# Targets
#   guest                everything the integration tests boot (quick when up to date)
#   guest-kernel         build vmlinux-ci from Debian's linux-source-6.1 (~17 min on 2 CPUs)
#   guest-kernel-config  only install/unpack/configure/patch the kernel source
#   guest-clean          remove $(GUEST_DIR)
#
# Variables
#   GUEST_DIR                      cache folder (default .cache/guest, git-ignored)
#   SHARED_GUEST                   ready guests to copy instead of fetching (default
#                                  ../shared/guest next to the repository; ignored when
#                                  missing; empty: never)
#   GUEST_CC                       C compiler for /init (default gcc)
#   GUEST_GO                       Go toolchain (default: $(GO) or go)
#   GUEST_DEBIAN_KERNEL_META       metapackage naming the Debian kernel (linux-image-cloud-amd64)
#   GUEST_INSTALL                  1 (default): install missing Debian packages with apt-get when root
#   GUEST_KERNEL_SOURCE            kernel source package for guest-kernel (linux-source-6.1)
#   GUEST_KERNEL_NO_INT3_SELFTEST  1 (default): comment out int3_selftest() as in the shared vmlinux-ci
#   GUEST_KERNEL_JOBS              make -j for guest-kernel (default: nproc)
#
# Every variable and target here starts with GUEST_/guest so that the
# fragment cannot clash with the including Makefile.

GUEST_ROOT := $(patsubst %/,%,$(abspath $(dir $(lastword $(MAKEFILE_LIST)))))
GUEST_PREV_DEFAULT_GOAL := $(.DEFAULT_GOAL)

GUEST_DIR ?= $(GUEST_ROOT)/.cache/guest
SHARED_GUEST ?= $(abspath $(GUEST_ROOT)/../shared/guest)
GUEST_CC ?= gcc
GUEST_GO ?= $(or $(GO),go)
GUEST_DEBIAN_KERNEL_META ?= linux-image-cloud-amd64
GUEST_INSTALL ?= 1
GUEST_KERNEL_SOURCE ?= linux-source-6.1
GUEST_KERNEL_NO_INT3_SELFTEST ?= 1
GUEST_KERNEL_JOBS ?= $(shell nproc 2>/dev/null || echo 2)

GUEST_D := $(abspath $(GUEST_DIR))
GUEST_SRC := $(GUEST_ROOT)/guest
GUEST_MKINITRAMFS := $(GUEST_D)/bin/mkinitramfs
GUEST_GO_SRC := $(filter-out %_test.go,$(wildcard $(GUEST_SRC)/initramfs/*.go $(GUEST_SRC)/cmd/mkinitramfs/*.go))

# Kernels copied from the shared cache when it has them. (vmlinuz-debian-cloud
# is handled by debian-kernel.sh, which needs its modules as well.)
GUEST_SHARED_COPY := $(if $(SHARED_GUEST),$(notdir $(wildcard $(addprefix $(SHARED_GUEST)/,vmlinux-ci bzImage-ci vmlinux))))

GUEST_FILES := init busybox vmlinuz-debian-cloud initramfs-min.cpio initramfs.cpio \
	initramfs-debian-cloud.cpio $(GUEST_SHARED_COPY)

GUEST_ENV := GUEST_DIR='$(GUEST_D)' GUEST_INSTALL='$(GUEST_INSTALL)'

# guest_note FILE TEXT: where FILE came from, for manifest.txt.
guest_note = mkdir -p '$(GUEST_D)/.src' && printf '%s\n' "$(2)" > '$(GUEST_D)/.src/$(1)'

.PHONY: guest guest-kernel guest-kernel-config guest-clean guest-tools

guest: $(GUEST_D)/manifest.txt
	@if [ ! -f '$(GUEST_D)/vmlinux-ci' ]; then \
	  echo "guest: note: no vmlinux-ci (the small HZ=100 test kernel): not in the shared cache"; \
	  echo "guest:       and not built. 'make guest-kernel' builds it (~17 min); the Debian kernel is ready."; \
	fi
	@echo "guest: ready in $(GUEST_D) (manifest.txt lists the files)"

guest-tools:
	@$(GUEST_ENV) GUEST_CC='$(GUEST_CC)' GUEST_GO='$(GUEST_GO)' bash '$(GUEST_SRC)/scripts/tools.sh'

$(GUEST_D)/manifest.txt: $(addprefix $(GUEST_D)/,$(GUEST_FILES)) $(wildcard $(GUEST_D)/vmlinux-ci) \
		$(GUEST_SRC)/scripts/manifest.sh
	@$(GUEST_ENV) bash '$(GUEST_SRC)/scripts/manifest.sh'
	@cat '$@'

# /init: a static program without libc (guest/init/init.c).
$(GUEST_D)/init: $(GUEST_SRC)/init/init.c $(GUEST_SRC)/init/freestanding.h $(GUEST_SRC)/init/build.sh | guest-tools
	@mkdir -p '$(@D)'
	CC='$(GUEST_CC)' sh '$(GUEST_SRC)/init/build.sh' '$@'
	@$(call guest_note,init,built from guest/init/init.c by guest/init/build.sh ($$($(GUEST_CC) --version | head -n 1)))

$(GUEST_MKINITRAMFS): $(GUEST_GO_SRC) $(GUEST_ROOT)/go.mod $(GUEST_ROOT)/go.sum | guest-tools
	cd '$(GUEST_ROOT)' && $(GUEST_GO) build -o '$@' ./guest/cmd/mkinitramfs

$(GUEST_D)/busybox: $(GUEST_SRC)/scripts/busybox.sh $(GUEST_SRC)/scripts/lib.sh | guest-tools
	@$(GUEST_ENV) bash '$<'

$(GUEST_D)/vmlinuz-debian-cloud: $(GUEST_SRC)/scripts/debian-kernel.sh $(GUEST_SRC)/scripts/lib.sh \
		| $(GUEST_MKINITRAMFS) guest-tools
	@$(GUEST_ENV) MKINITRAMFS='$(GUEST_MKINITRAMFS)' SHARED_GUEST='$(SHARED_GUEST)' \
	  GUEST_DEBIAN_KERNEL_META='$(GUEST_DEBIAN_KERNEL_META)' bash '$<'

$(addprefix $(GUEST_D)/,$(GUEST_SHARED_COPY)): $(GUEST_D)/%: $(SHARED_GUEST)/%
	@mkdir -p '$(@D)'
	cp '$<' '$@.tmp' && chmod 644 '$@.tmp' && mv '$@.tmp' '$@'
	@$(call guest_note,$*,shared cache $<)

# Just /init: the fastest image, for boot tests that need no shell.
$(GUEST_D)/initramfs-min.cpio: $(GUEST_D)/init $(GUEST_MKINITRAMFS)
	'$(GUEST_MKINITRAMFS)' -o '$@' -init '$(GUEST_D)/init'
	@$(call guest_note,$(@F),built by guest/cmd/mkinitramfs: /init only)

$(GUEST_D)/initramfs.cpio: $(GUEST_D)/init $(GUEST_D)/busybox $(GUEST_SRC)/init/test.sh $(GUEST_MKINITRAMFS)
	'$(GUEST_MKINITRAMFS)' -o '$@' -init '$(GUEST_D)/init' -busybox '$(GUEST_D)/busybox' \
	  -test-script '$(GUEST_SRC)/init/test.sh'
	@$(call guest_note,$(@F),built by guest/cmd/mkinitramfs: /init + busybox + /test.sh)

$(GUEST_D)/initramfs-debian-cloud.cpio: $(GUEST_D)/init $(GUEST_D)/busybox $(GUEST_SRC)/init/test.sh \
		$(GUEST_MKINITRAMFS) $(GUEST_D)/vmlinuz-debian-cloud
	'$(GUEST_MKINITRAMFS)' -o '$@' -init '$(GUEST_D)/init' -busybox '$(GUEST_D)/busybox' \
	  -test-script '$(GUEST_SRC)/init/test.sh' -modules '$(GUEST_D)/debian-cloud/modules'
	@$(call guest_note,$(@F),built by guest/cmd/mkinitramfs: /init + busybox + /test.sh + virtio modules of $$(cat '$(GUEST_D)/debian-cloud/release'))

guest-kernel: | guest-tools
	@$(GUEST_ENV) GUEST_KERNEL_SOURCE='$(GUEST_KERNEL_SOURCE)' GUEST_KERNEL_CONFIG='$(GUEST_SRC)/config-ci' \
	  GUEST_KERNEL_NO_INT3_SELFTEST='$(GUEST_KERNEL_NO_INT3_SELFTEST)' GUEST_KERNEL_JOBS='$(GUEST_KERNEL_JOBS)' \
	  bash '$(GUEST_SRC)/kernel/build-kernel.sh' build
	@$(GUEST_ENV) bash '$(GUEST_SRC)/scripts/manifest.sh'

guest-kernel-config:
	@$(GUEST_ENV) GUEST_KERNEL_SOURCE='$(GUEST_KERNEL_SOURCE)' GUEST_KERNEL_CONFIG='$(GUEST_SRC)/config-ci' \
	  GUEST_KERNEL_NO_INT3_SELFTEST='$(GUEST_KERNEL_NO_INT3_SELFTEST)' \
	  bash '$(GUEST_SRC)/kernel/build-kernel.sh' config

guest-clean:
	rm -rf '$(GUEST_D)'

# Do not become the default goal of the including Makefile; alone, build the guests.
ifneq ($(GUEST_PREV_DEFAULT_GOAL),)
.DEFAULT_GOAL := $(GUEST_PREV_DEFAULT_GOAL)
else ifeq ($(words $(MAKEFILE_LIST)),1)
.DEFAULT_GOAL := guest
else
.DEFAULT_GOAL :=
endif
