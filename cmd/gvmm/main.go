// Command gvmm is a virtual machine monitor for Linux guests on KVM.
//
//	gvmm run --kernel bzImage --initrd initrd.cpio --cmdline 'quiet' --cpus 2 --memory 1G
//	gvmm trace summarize FILE
//	gvmm trace dump FILE
//	gvmm profile --symbols System.map FILE
//
// The exit status says how the VM ended; see the README and exitStatus.
package main

import (
	"fmt"
	"io"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

const usage = `gvmm - a virtual machine monitor for Linux guests on KVM

Usage:
  gvmm run [flags]            boot a Linux kernel (see gvmm run --help)
  gvmm trace summarize FILE   summarize an exit trace written by run --trace
  gvmm trace dump FILE        print every exit of a trace
  gvmm profile [flags] FILE   report a guest profile written by run --profile
  gvmm --version              print the version
  gvmm --help                 print this help
`

// run is main without os.Exit, for tests.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return statusUsage
	}
	switch args[0] {
	case "run":
		return runCommand(args[1:], stdin, stdout, stderr)
	case "trace":
		return traceCommand(args[1:], stdout, stderr)
	case "profile":
		return profileCommand(args[1:], stdout, stderr)
	case "version", "--version", "-V":
		fmt.Fprintf(stdout, "gvmm %s\n", version)
		return 0
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "gvmm: unknown command %q (try gvmm --help)\n", args[0])
		return statusUsage
	}
}
