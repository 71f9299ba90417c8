// Package vmtest boots Linux guests inside `go test`, with gvmm and KVM in
// the test process: no QEMU to install. It does for gvmm what u-root's and
// hugelgupf's vmtest packages do with QEMU.
//
// A test starts a VM, talks to its serial console, and takes the guest's
// verdict from the test-exit port:
//
//	func TestGuestBoots(t *testing.T) {
//		t.Parallel() // VMs share nothing: run as many as the host takes
//		vm := vmtest.Start(t,
//			vmtest.WithCmdline("initexit=testexit", "test=shell"),
//			vmtest.WithMemory(256<<20),
//			vmtest.WithTimeout(2*time.Minute),
//		)
//		if _, err := vm.Console.ExpectString("/ # "); err != nil {
//			t.Fatal(err) // says what was missing, with the last lines
//		}
//		fmt.Fprintf(vm.Console, "echo $((6*7)); exit\n")
//		m, err := vm.Console.ExpectRegexp(regexp.MustCompile(`(\d+)\r?\n`))
//		if err != nil || m.Groups[1] != "42" {
//			t.Fatalf("shell answered %q: %v", m.Text, err)
//		}
//		verdict, err := vm.Wait() // the test-exit value, or why the VM ended
//		if err != nil || verdict != 0 {
//			t.Fatalf("verdict %d: %v", verdict, err)
//		}
//	}
//
// The kernel, and the initramfs when the test names none, come from the
// environment, as vmtest's do: GVMM_KERNEL, GVMM_INITRAMFS and
// GVMM_CMDLINE, or else what `make guest` left in GUEST_DIR (or the
// nearest .cache/guest). Without a kernel the test is skipped with a
// message starting "vmtest: no kernel:" (SkipNoKernel), and without
// /dev/kvm with "KVM tests skipped:"; gvmm's CI fails a run that skips
// either way on a machine that should run them.
//
// The VM is stopped and freed when the test ends (t.Cleanup), and if the
// test failed its whole console goes to the test's log. Bad input fails
// the test with one clear message, never a hung test binary: a kernel
// that cannot be read, a string that never comes (Expect's timeout), a
// guest that panics or resets (Wait's ExitError), a guest that runs too
// long (WithTimeout; a VM always stops before the test binary's -timeout).
//
// Images are built on demand with the Go toolchain. Where that is too
// slow (gvmm's emulated KVM host runs go 30 times slower), a run of the
// test binary with GVMM_VMTEST_PREBUILD=1 and GVMM_VMTEST_IMAGES=DIR
// builds every image into DIR and boots nothing (SkipPrebuild); the same
// binary with only GVMM_VMTEST_IMAGES takes them from there, never runs
// go, and fails a test whose image is missing (initramfs.Store).
//
// RunGoTests builds a package's tests for the guest, runs them there, and
// reports each guest test as a subtest of the calling test; package
// vmtest/initramfs builds the images, from u-root commands, Go programs
// and files; package vmtest/guest is for programs in the guest.
package vmtest
