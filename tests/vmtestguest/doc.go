// Package vmtestguest holds tests that run inside a gvmm guest: the
// example of vmtest.RunGoTests in tests/vmtest_example_test.go builds them
// for the guest and boots them. On the host they skip
// (guest.SkipIfNotInVM).
package vmtestguest
