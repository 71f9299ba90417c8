package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gvmm/gvmm/boot/boottest"
	"github.com/gvmm/gvmm/machine"
	"github.com/gvmm/gvmm/virtio/blk/disk"
)

func TestParseDisk(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want machine.Disk
		err  string
	}{
		{"a.img", machine.Disk{Path: "a.img"}, ""},
		{"a.img,readonly", machine.Disk{Path: "a.img", ReadOnly: true}, ""},
		{"a.img,cache=none,serial=disk-1", machine.Disk{Path: "a.img", Cache: disk.CacheNone, Serial: "disk-1"}, ""},
		{"a.img,cache=writethrough,readonly", machine.Disk{Path: "a.img", Cache: disk.CacheWritethrough, ReadOnly: true}, ""},
		{"", machine.Disk{}, "no image path"},
		{",readonly", machine.Disk{}, "no image path"},
		{"a.img,rw", machine.Disk{}, `unknown option "rw"`},
		{"a.img,readonly=yes", machine.Disk{}, `unknown option "readonly=yes"`},
		{"a.img,cache", machine.Disk{}, `unknown option "cache"`},
		{"a.img,cache=unsafe", machine.Disk{}, `unknown cache mode "unsafe"`},
		{"a.img,serial=" + strings.Repeat("x", 21), machine.Disk{}, "longer than 20 bytes"},
	} {
		got, err := parseDisk(tc.in)
		if tc.err != "" {
			assert.ErrorContains(t, err, tc.err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, got, tc.in)
	}
}

// TestDiskBadInput: every bad --disk gets one line and status 2, before
// KVM is even opened (so these run anywhere).
func TestDiskBadInput(t *testing.T) {
	kernel := write(t, "vmlinux", boottest.ELF([]byte{0xF4}))
	dir := t.TempDir()
	img := filepath.Join(dir, "ok.img")
	require.NoError(t, os.WriteFile(img, make([]byte, 1<<20), 0o644))
	ro := filepath.Join(dir, "ro.img")
	require.NoError(t, os.WriteFile(ro, make([]byte, 1<<20), 0o444))
	odd := filepath.Join(dir, "odd.img")
	require.NoError(t, os.WriteFile(odd, make([]byte, 1000), 0o644))
	locked := filepath.Join(dir, "locked.img")
	require.NoError(t, os.WriteFile(locked, make([]byte, 1<<20), 0o644))
	// Another process's lock: an open file description of this one
	// conflicts the same way (OFD locks).
	holder, err := disk.Open(locked, disk.Options{})
	require.NoError(t, err)
	defer holder.Close()

	for _, tc := range []struct {
		name string
		disk []string
		want string
	}{
		{"missing image", []string{filepath.Join(dir, "nope.img")}, "nope.img: no such file or directory"},
		{"locked by another gvmm", []string{locked}, "is locked by another process"},
		{"read-only file without readonly", []string{ro}, "is a read-only file: it can only be attached read-only (add ,readonly to its --disk)"},
		{"unknown option", []string{img + ",fast"}, `unknown option "fast"`},
		{"size not a multiple of 512", []string{odd}, "size is not a multiple of 512 bytes (1000 bytes)"},
		{"same image twice", []string{img, img}, "given twice"},
		{"a directory", []string{dir}, "is neither a regular file nor a block device"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"run", "-k", kernel, "--kvm-device", "/nonexistent/kvm"}
			for _, d := range tc.disk {
				args = append(args, "--disk", d)
			}
			var stdout, stderr bytes.Buffer
			status := run(args, strings.NewReader(""), &stdout, &stderr)
			assert.Equal(t, statusUsage, status)
			msg := stderr.String()
			assert.Contains(t, msg, tc.want)
			assert.Equal(t, 1, strings.Count(msg, "\n"), "one line: %q", msg)
			assert.NotContains(t, msg, "/nonexistent/kvm", "the disk is checked before KVM")
		})
	}
}
