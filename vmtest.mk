# vmtest.mk: the vmtest examples phase of make test (tests/vmtest_example_test.go:
# a shell script as the guest's test, a Go package's tests run in a guest and
# reported as subtests, a guest failure reported as one, two disks, 8 VMs
# at once).
# The Makefile includes it; it uses GO, TESTBIN, OUT and EMUHOST_TEST from there.
#
# Compile outside, run inside. The examples' guest images hold Go programs
# (vmtest's /init, the guest package's test binary, u-root commands), and the
# Go toolchain is about 30 times slower in the emulated KVM host. So:
#   1. tests.test is built here (go test -c);
#   2. run here once with GVMM_VMTEST_PREBUILD=1: every example builds its
#      images into VMTEST_IMAGES (one KEY.cpio and a KEY.json manifest entry
#      per image) and then skips, booting nothing, with or without /dev/kvm;
#   3. the same binary runs where KVM works with GVMM_VMTEST_IMAGES set: the
#      images come from VMTEST_IMAGES, the Go toolchain never runs, and an
#      image missing there fails its test with a message naming it.
# The folder is rebuilt every time: its keys describe the images, not the Go
# source of their programs (go's build cache keeps step 2 to seconds).

VMTEST_IMAGES   ?= $(TESTBIN)/vmtest-images
VMTEST_PARALLEL ?= 8
# The examples that must pass (no skip) in test-vmtest.
VMTEST_EXAMPLES := TestVMTestShellScript TestVMTestGoPackage TestVMTestDisk TestVMTestGuestFailure TestVMTestParallel

.PHONY: test-vmtest

test-vmtest: build guest
	@mkdir -p $(OUT) $(TESTBIN)
	$(GO) test -c -o $(TESTBIN)/tests.test ./tests
	rm -rf $(VMTEST_IMAGES)
	cd tests && GVMM_VMTEST_PREBUILD=1 GVMM_VMTEST_IMAGES=$(VMTEST_IMAGES) \
	  $(TESTBIN)/tests.test -test.run '^TestVMTest' -test.count=1 -test.v > $(OUT)/vmtest-prebuild.log 2>&1 || \
	  { grep -E -A20 -- '--- FAIL|panic:' $(OUT)/vmtest-prebuild.log; exit 1; }
	@echo "prebuilt $$(ls $(VMTEST_IMAGES)/*.cpio | wc -l) guest images into $(VMTEST_IMAGES)"
	rm -f $(OUT)/vmtest.log
	set -o pipefail; GVMM_VMTEST_IMAGES=$(VMTEST_IMAGES) \
	  TESTFLAGS='-test.run ^TestVMTest -test.parallel $(VMTEST_PARALLEL) -test.timeout 30m' \
	  $(EMUHOST_TEST) -- .ci/run-tests $(OUT)/vmtest.log $(TESTBIN)/tests.test | grep -E '^(ok|FAIL|--- |\s+--- )'
	@# What .ci/check-phase would check for this phase: no failure, no skip
	@# (but the guest test that skips on purpose, reported as skipped), and
	@# every example passed.
	@! grep -n -E '^(FAIL|panic:)|^\s*--- (FAIL|SKIP): TestVMTest' $(OUT)/vmtest.log | \
	  grep -v 'SKIP: TestVMTestGoPackage/TestSkipped ' || \
	  { echo "test-vmtest: failures or skips in $(OUT)/vmtest.log (above)"; exit 1; }
	@for t in $(VMTEST_EXAMPLES); do grep -q -E "^--- PASS: $$t " $(OUT)/vmtest.log || \
	  { echo "test-vmtest: $$t did not pass"; exit 1; }; done
	@echo "test-vmtest: $(words $(VMTEST_EXAMPLES)) vmtest examples passed:"; \
	  grep -E '/init ran|VMs in' $(OUT)/vmtest.log | sed -E 's/^\s+//'
