package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/gvmm/gvmm/vcpu/profile"
)

// profileSaveEvery is how often --profile rewrites its file while the VM
// runs, so a long boot can be looked at (gvmm profile FILE) before it ends.
const profileSaveEvery = 10 * time.Second

// guestProfile is the profile of run --profile and the file it goes to.
type guestProfile struct {
	*profile.Profile
	path string
}

// newGuestProfile writes an empty profile to path: an unwritable path fails
// now, not after a long boot.
func newGuestProfile(path string) (*guestProfile, error) {
	p := &guestProfile{Profile: profile.New(), path: path}
	if err := p.save(); err != nil {
		return nil, err
	}
	return p, nil
}

// save replaces the file with the samples so far; a reader never sees a
// half-written file.
func (p *guestProfile) save() error {
	tmp := p.path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("--profile: %w", err)
	}
	_, err = p.WriteTo(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p.path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("--profile: %w", err)
	}
	return nil
}

// every calls fn each period until the returned stop is called.
func every(period time.Duration, fn func()) (stop func()) {
	t := time.NewTicker(period)
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-t.C:
				fn()
			case <-quit:
				return
			}
		}
	}()
	return func() { t.Stop(); close(quit); <-done }
}

// profileCommand implements `gvmm profile [--symbols MAP] [--top N] FILE`.
func profileCommand(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("gvmm profile", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	symPath := fs.StringP("symbols", "s", "", "name kernel addresses with this System.map or /proc/kallsyms `FILE`")
	top := fs.IntP("top", "n", 25, "show the `N` hottest functions and addresses (0: all)")
	since := fs.String("since", "", "count only the samples taken after this earlier copy of the same profile `FILE`")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: gvmm profile [flags] FILE\n\nReport a guest profile written by gvmm run --profile FILE.\n\nFlags:\n%s", fs.FlagUsages())
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "gvmm: profile: %v\n", err)
		return statusUsage
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return statusUsage
	}
	p, err := readFile(fs.Arg(0), profile.Read)
	if err != nil {
		fmt.Fprintf(stderr, "gvmm: profile: %v\n", err)
		return statusUsage
	}
	if *since != "" {
		base, err := readFile(*since, profile.Read)
		if err != nil {
			fmt.Fprintf(stderr, "gvmm: profile: --since: %v\n", err)
			return statusUsage
		}
		p = p.Since(base)
	}
	var syms *profile.Symbols
	if *symPath != "" {
		if syms, err = readFile(*symPath, profile.ReadSymbols); err != nil {
			fmt.Fprintf(stderr, "gvmm: profile: %s: %v\n", *symPath, err)
			return statusUsage
		}
	}
	if err := profile.Report(stdout, p, syms, *top); err != nil {
		fmt.Fprintf(stderr, "gvmm: profile: %v\n", err)
		return statusFailed
	}
	return 0
}

// readFile opens path and parses it with parse.
func readFile[T any](path string, parse func(io.Reader) (T, error)) (T, error) {
	f, err := os.Open(path)
	if err != nil {
		var zero T
		return zero, err
	}
	defer f.Close()
	return parse(bufio.NewReader(f))
}
