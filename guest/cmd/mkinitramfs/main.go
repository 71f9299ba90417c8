// Command mkinitramfs builds gvmm's test initramfs (an uncompressed,
// reproducible newc cpio archive); see package guest/initramfs.
//
//	go run ./guest/cmd/mkinitramfs -o initramfs.cpio -init .cache/guest/init \
//	    [-busybox /bin/busybox] [-test-script guest/init/test.sh] \
//	    [-modules DIR [-module-list a,b,c]]
//
// With -extract-modules SRC.cpio it instead copies the *.ko files of an
// existing image into the folder -o and prints their kernel release.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/gvmm/gvmm/guest/initramfs"
)

func main() {
	var (
		out        = flag.String("o", "", "output file (or folder with -extract-modules)")
		initProg   = flag.String("init", "", "static program stored as /init (required)")
		busybox    = flag.String("busybox", "", "static busybox stored as /bin/busybox, with its applet links")
		testScript = flag.String("test-script", "", "script stored as /test.sh")
		modules    = flag.String("modules", "", "folder searched for kernel modules (a lib/modules/<release> tree)")
		moduleList = flag.String("module-list", strings.Join(initramfs.VirtioModules, ","), "modules to store, comma separated, in load order")
		mtime      = flag.Uint64("mtime", 0, "modification time of every entry")
		extract    = flag.String("extract-modules", "", "copy the *.ko files of this cpio archive into the folder -o")
		keepSigs   = flag.Bool("keep-module-signatures", false, "store modules with their signatures (by default they are removed: the kernel then skips hashing them)")
		quiet      = flag.Bool("q", false, "print nothing on success")
	)
	flag.Parse()
	if *out == "" || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}

	if *extract != "" {
		files, release, err := initramfs.ExtractModules(*extract, *out)
		if err != nil {
			fatal(err)
		}
		if len(files) == 0 {
			fatal(fmt.Errorf("%s: no kernel modules", *extract))
		}
		fmt.Println(release)
		return
	}

	if *initProg == "" {
		fatal(fmt.Errorf("-init is required"))
	}
	for _, p := range []string{*initProg, *busybox} {
		if p != "" {
			if err := initramfs.CheckStatic(p); err != nil {
				fatal(err)
			}
		}
	}
	spec := initramfs.Spec{
		Init:           *initProg,
		Busybox:        *busybox,
		TestScript:     *testScript,
		ModulesDir:     *modules,
		KeepSignatures: *keepSigs,
		MTime:          *mtime,
	}
	if *moduleList != "" {
		spec.Modules = strings.Split(*moduleList, ",")
	}
	res, err := initramfs.WriteFile(*out, spec)
	if err != nil {
		fatal(err)
	}
	if *modules != "" && len(res.Modules) == 0 {
		fatal(fmt.Errorf("%s: none of the modules %s found", *modules, *moduleList))
	}
	if *quiet {
		return
	}
	fi, err := os.Stat(*out)
	if err != nil {
		fatal(err)
	}
	fmt.Printf("%s: %d bytes, %d entries, %d applet links", *out, fi.Size(), res.Entries, res.Applets)
	if *modules != "" {
		fmt.Printf(", %d modules for %s (%d signatures removed)", len(res.Modules), res.Release, res.Unsigned)
		if len(res.Missing) > 0 {
			fmt.Printf(" (not found, skipped: %s)", strings.Join(res.Missing, " "))
		}
	}
	fmt.Println()
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "mkinitramfs:", err)
	os.Exit(1)
}
