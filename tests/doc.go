// Package tests holds gvmm's integration tests: they boot real Linux
// kernels to userspace, in-process through the machine package (as a CI job
// would) and through the gvmm binary, and check what the guest reports on
// its console.
//
// The guests come from `make guest` (GUEST_DIR, default ../.cache/guest).
// On nested hosts a boot takes minutes, so each boot checks several things
// at once, and GVMM_BOOT_TESTS selects how many run: "ci" (the default
// under `make test`) or "all" (`make test-boot`).
package tests
