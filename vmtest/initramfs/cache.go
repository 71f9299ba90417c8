package initramfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// EnvCache names the folder where built guest programs are kept, keyed by
// everything that goes into them; empty means the user's cache folder
// (gvmm/vmtest there). "off" turns the cache off.
//
// Why: the go command caches compiled packages but links every program
// again, and an image holds several programs (/init, test2json, the test
// binary, commands): with this cache, building images again after a
// change links only what changed. It still runs go list, so where the Go
// toolchain must not run at all, images come from a Store instead
// (EnvImages).
const EnvCache = "GVMM_VMTEST_CACHE"

func cacheDir() string {
	d := os.Getenv(EnvCache)
	switch d {
	case "off":
		return ""
	case "":
		base, err := os.UserCacheDir()
		if err != nil {
			return ""
		}
		return filepath.Join(base, "gvmm", "vmtest")
	}
	return d
}

// buildKey identifies the program that `go build` or `go test -c` (test)
// would make of pkg in dir: the export data of every package it links
// (each named by its content hash in the go build cache), the flags and
// the environment. ok is false when go list cannot tell.
func buildKey(ctx context.Context, dir string, env []string, pkg string, test bool, flags []string) (key string, ok bool) {
	args := []string{"list", "-deps", "-export", "-f", "{{.ImportPath}} {{.Export}} {{if .Error}}ERROR{{end}}"}
	if test {
		args = append(args, "-test")
	}
	args = append(append(args, flags...), pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), guestEnv...), env...)
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil || strings.Contains(out.String(), " ERROR") {
		return "", false
	}
	h := sha256.New()
	fmt.Fprintf(h, "vmtest build 1\n%q\n%q\n%q\n%v\n", dir, env, flags, test)
	// The settings that change what the linker makes of the same
	// packages; the compile-time ones are in the export data's names.
	// Not GOTMPDIR and the like: the emulated KVM host sets them.
	for _, k := range []string{"GOFLAGS", "GOAMD64", "GOEXPERIMENT", "GOROOT", "GOTOOLCHAIN"} {
		fmt.Fprintf(h, "%s=%s\n", k, os.Getenv(k))
	}
	h.Write(out.Bytes())
	return hex.EncodeToString(h.Sum(nil)), true
}

// cached builds out with build unless the cache has the program for key;
// a new build is stored in the cache.
func cached(key string, ok bool, out string, build func() error) error {
	dir := cacheDir()
	if !ok || dir == "" {
		return build()
	}
	entry := filepath.Join(dir, key[:2], key)
	if err := copyFile(entry, out); err == nil {
		return nil
	}
	if err := build(); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(entry), 0o755); err == nil {
		// A failure to fill the cache only costs time later.
		tmp := fmt.Sprintf("%s.%d.tmp", entry, os.Getpid())
		if copyFile(out, tmp) == nil {
			os.Rename(tmp, entry)
		}
		os.Remove(tmp)
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	o, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(o, in); err != nil {
		o.Close()
		return err
	}
	return o.Close()
}
