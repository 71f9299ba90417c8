package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/gvmm/gvmm/machine"
	"github.com/gvmm/gvmm/virtio/blk/disk"
)

// diskUsage is the --disk flag's help.
const diskUsage = "attach the image at `PATH[,OPTIONS]` as a virtio block device, vda, vdb, ... in order (repeatable); options: readonly, cache=writeback|none|writethrough, serial=ID"

// parseDisk parses one --disk value: a path, then comma-separated options
// readonly, cache=MODE and serial=ID, as QEMU's -drive spells them.
func parseDisk(s string) (machine.Disk, error) {
	parts := strings.Split(s, ",")
	d := machine.Disk{Path: parts[0]}
	if d.Path == "" {
		return d, fmt.Errorf("--disk %q: no image path", s)
	}
	for _, o := range parts[1:] {
		k, v, hasValue := strings.Cut(o, "=")
		switch {
		case k == "readonly" && !hasValue:
			d.ReadOnly = true
		case k == "cache" && hasValue:
			c, err := disk.ParseCache(v)
			if err != nil {
				return d, fmt.Errorf("--disk %s: %v", d.Path, err)
			}
			d.Cache = c
		case k == "serial" && hasValue:
			if len(v) > 20 {
				return d, fmt.Errorf("--disk %s: serial %q is longer than 20 bytes", d.Path, v)
			}
			d.Serial = v
		default:
			return d, fmt.Errorf("--disk %s: unknown option %q (want readonly, cache=writeback|none|writethrough or serial=ID)", d.Path, o)
		}
	}
	return d, nil
}

// parseDisks parses every --disk value; the same image twice is refused
// (the second would find it locked by the first).
func parseDisks(values []string) ([]machine.Disk, error) {
	var out []machine.Disk
	seen := map[string]bool{}
	for _, s := range values {
		d, err := parseDisk(s)
		if err != nil {
			return nil, err
		}
		abs, err := filepath.Abs(d.Path)
		if err != nil {
			abs = d.Path
		}
		if seen[abs] {
			return nil, fmt.Errorf("--disk %s: given twice", d.Path)
		}
		seen[abs] = true
		out = append(out, d)
	}
	return out, nil
}

// diskHint adds what to change on the command line to an error about a
// disk image.
func diskHint(err error) string {
	if errors.Is(err, disk.ErrReadOnlyFile) {
		return " (add ,readonly to its --disk)"
	}
	return ""
}
