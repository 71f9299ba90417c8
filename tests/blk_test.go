package tests

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gvmm/gvmm/kvm/kvmtest"
)

// blkGuest is a kernel and initramfs the block device tests boot.
type blkGuest struct {
	name, kernel, initrd string
}

// blkGuests returns the small test kernel (virtio-pci and virtio-blk built
// in) and Debian's cloud kernel (both as modules, loaded from the
// initramfs), those that the guest directory has.
func blkGuests(t *testing.T, dir string) []blkGuest {
	var out []blkGuest
	for _, g := range []blkGuest{
		{"ci", ciKernel, "initramfs.cpio"},
		{"debian", debianKernel, "initramfs-debian-cloud.cpio"},
	} {
		if _, err := os.Stat(filepath.Join(dir, g.kernel)); err == nil {
			out = append(out, g)
		}
	}
	require.NotEmpty(t, out, "no kernel in %s: run make guest", dir)
	return out
}

// skipUnlessBoots skips unless the boot tests are selected and KVM works.
func skipUnlessBoots(t *testing.T) {
	if set := os.Getenv("GVMM_BOOT_TESTS"); set != "ci" && set != "all" {
		t.Skip("boot tests skipped: set GVMM_BOOT_TESTS=ci or all (make test, make test-boot)")
	}
	kvmtest.SkipIfUnavailable(t)
}

// scratchDir returns a folder for disk images on a file system with
// O_DIRECT (cache=none needs it): tests/out, which in the emulated host is
// this machine's disk over 9p, where the tmpfs TMPDIR is not.
func scratchDir(t *testing.T) string {
	require.NoError(t, os.MkdirAll("out", 0o755))
	d, err := os.MkdirTemp("out", "blk-")
	require.NoError(t, err)
	abs, err := filepath.Abs(d)
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(abs) })
	return abs
}

// writeImage writes an image of size bytes: random bytes from seed, or
// zeros if seed is 0.
func writeImage(t *testing.T, path string, size int, seed int64) []byte {
	b := make([]byte, size)
	if seed != 0 {
		rand.New(rand.NewSource(seed)).Read(b)
	}
	require.NoError(t, os.WriteFile(path, b, 0o644))
	return b
}

func md5hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

// blkRun is one gvmm run with disks.
type blkRun struct {
	name    string
	guest   blkGuest
	disks   []string // --disk values
	cmdline string
	initrd  string // overrides guest.initrd; "-" for none
	cpus    int
	// killAfter, if set, SIGKILLs gvmm as soon as the console shows it.
	killAfter string
	timeout   time.Duration
}

// run boots r with the gvmm binary and returns the console and gvmm's exit
// status (-1 when killed).
func (r blkRun) run(t *testing.T, gvmm, dir string) (*console, int, string) {
	logf, err := openLog(strings.ReplaceAll(r.name, "/", "-"))
	require.NoError(t, err)
	defer logf.Close()
	con := newConsole(logf)
	if r.timeout == 0 {
		r.timeout = 20 * time.Minute
	}
	if r.cpus == 0 {
		r.cpus = 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	args := []string{"run", "-v", "--kernel", filepath.Join(dir, r.guest.kernel),
		"--cpus", fmt.Sprint(r.cpus), "--memory", "512M", "--cmdline", r.cmdline}
	switch r.initrd {
	case "":
		args = append(args, "--initrd", filepath.Join(dir, r.guest.initrd))
	case "-":
	default:
		args = append(args, "--initrd", r.initrd)
	}
	for _, d := range r.disks {
		args = append(args, "--disk", d)
	}
	cmd := exec.CommandContext(ctx, gvmm, args...)
	cmd.Stdout = con
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	if r.killAfter != "" {
		tick := time.NewTicker(5 * time.Millisecond)
	poll:
		for {
			select {
			case <-tick.C:
				if _, ok := con.when(r.killAfter); ok {
					// SIGKILL: gvmm gets no chance to flush or close anything.
					require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
					break poll
				}
			case err := <-waited:
				tick.Stop()
				t.Fatalf("%s: gvmm ended before %s (%v):\n%s\n%s", r.name, r.killAfter, err, con.tail(30), stderr.String())
			}
		}
		tick.Stop()
	}
	err = <-waited
	status := 0
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		status = ee.ExitCode()
	default:
		t.Fatalf("gvmm: %v", err)
	}
	t.Logf("%s: gvmm exit %d; stderr:\n%s", r.name, status, stderr.String())
	return con, status, stderr.String()
}

// TestBlk boots each kernel with disks: a pattern copied from one disk to
// another arrives byte for byte, a read-only disk stays untouched, an ext4
// image is the root file system, the serial number and discard work.
func TestBlk(t *testing.T) {
	skipUnlessBoots(t)
	dir := guestDir()
	gvmm := gvmmBinary(t)
	for _, g := range blkGuests(t, dir) {
		t.Run(g.name+"/copy", func(t *testing.T) {
			t.Parallel()
			s := scratchDir(t)
			src, dst := filepath.Join(s, "src.img"), filepath.Join(s, "dst.img")
			pattern := writeImage(t, src, 4<<20, 42)
			writeImage(t, dst, 4<<20, 0)
			con, status, stderr := blkRun{name: "blk-" + g.name + "-copy", guest: g, cpus: 2,
				disks:   []string{src + ",readonly", dst},
				cmdline: "test=blkcopy initexit=poweroff"}.run(t, gvmm, dir)
			assert.Equal(t, 0, status, stderr)
			v := values(con.String())
			assert.Equal(t, "0", v["GUEST-VERDICT"], con.tail(20))
			assert.Equal(t, md5hex(pattern), v["GUEST-BLK-SYNCED"], "the guest read back what it wrote")
			got, err := os.ReadFile(dst)
			require.NoError(t, err)
			assert.True(t, bytes.Equal(pattern, got), "the host file holds the pattern the guest wrote")
		})
		t.Run(g.name+"/intx", func(t *testing.T) {
			t.Parallel()
			// pci=nomsi: the driver falls back to INTx and the ISR (an
			// irqfd with resample on an I/O APIC pin), with 2 vCPUs and
			// so 2 queues sharing it.
			s := scratchDir(t)
			src, dst := filepath.Join(s, "src.img"), filepath.Join(s, "dst.img")
			pattern := writeImage(t, src, 2<<20, 43)
			writeImage(t, dst, 2<<20, 0)
			con, status, stderr := blkRun{name: "blk-" + g.name + "-intx", guest: g, cpus: 2,
				disks:   []string{src + ",readonly", dst + ",cache=none"},
				cmdline: "pci=nomsi test=blkcopy initexit=poweroff"}.run(t, gvmm, dir)
			assert.Equal(t, 0, status, stderr)
			v := values(con.String())
			assert.Equal(t, "0", v["GUEST-VERDICT"], con.tail(20))
			assert.Equal(t, md5hex(pattern), v["GUEST-BLK-SYNCED"])
			got, err := os.ReadFile(dst)
			require.NoError(t, err)
			assert.True(t, bytes.Equal(pattern, got), "the host file holds the pattern the guest wrote")
		})
		t.Run(g.name+"/readonly", func(t *testing.T) {
			t.Parallel()
			s := scratchDir(t)
			img := filepath.Join(s, "ro.img")
			before := writeImage(t, img, 1<<20, 7)
			con, status, stderr := blkRun{name: "blk-" + g.name + "-readonly", guest: g,
				disks:   []string{img + ",readonly,serial=gvmm-ro-disk"},
				cmdline: "test=blkro,blkid initexit=poweroff"}.run(t, gvmm, dir)
			assert.Equal(t, 0, status, stderr)
			v := values(con.String())
			assert.Equal(t, "0", v["GUEST-VERDICT"], con.tail(20))
			assert.Equal(t, "ro=1", v["GUEST-BLK-RO"])
			assert.Contains(t, con.String(), "GUEST-BLK-RO-WRITE failed")
			assert.Equal(t, "gvmm-ro-disk", v["GUEST-BLK-SERIAL"])
			after, err := os.ReadFile(img)
			require.NoError(t, err)
			assert.True(t, bytes.Equal(before, after), "the read-only image is unchanged")
		})
		t.Run(g.name+"/ext4-root", func(t *testing.T) {
			t.Parallel()
			img := ext4Root(t, dir)
			r := blkRun{name: "blk-" + g.name + "-ext4root", guest: g, disks: []string{img}}
			if g.name == "ci" {
				// virtio-blk is built in: the kernel mounts the root
				// itself and runs the disk's /init.
				r.initrd, r.cmdline = "-", "root=/dev/vda rootfstype=ext4 rw init=/init"
			} else {
				// The modules come from the initramfs, whose test.sh
				// mounts the disk and switches to it.
				r.cmdline = "test=root"
			}
			con, status, stderr := r.run(t, gvmm, dir)
			assert.Equal(t, 0, status, stderr)
			out := con.String()
			assert.Contains(t, out, "GUEST-ROOT-INIT pid=1", "the /init on the disk ran:\n%s", con.tail(20))
			assert.Regexp(t, `GUEST-ROOT-MOUNT /dev/(root|vda) / ext4`, out, "the root is the ext4 disk")
			assert.Contains(t, out, "GUEST-ROOT-FILE hello from the disk")
		})
		t.Run(g.name+"/discard", func(t *testing.T) {
			t.Parallel()
			// A tmpfs can punch holes (the 9p export of tests/out cannot,
			// and a discard there is rightly a no-op).
			s := t.TempDir()
			src, dst := filepath.Join(s, "src.img"), filepath.Join(s, "dst.img")
			writeImage(t, src, 1<<20, 0)
			writeImage(t, dst, 1<<20, 9)
			con, status, stderr := blkRun{name: "blk-" + g.name + "-discard", guest: g,
				disks: []string{src, dst}, cmdline: "test=blkdiscard initexit=poweroff"}.run(t, gvmm, dir)
			assert.Equal(t, 0, status, stderr)
			v := values(con.String())
			assert.Equal(t, "0", v["GUEST-VERDICT"], con.tail(20))
			zero := md5hex(make([]byte, 1<<20))
			assert.Equal(t, zero, v["GUEST-BLK-DISCARD"], "a discarded range reads as zeros")
			got, err := os.ReadFile(dst)
			require.NoError(t, err)
			assert.Equal(t, zero, md5hex(got), "the host file was punched")
		})
	}
}

// ext4Root builds an ext4 image (mkfs.ext4 -d) whose /init is a busybox
// shell script that reports how it runs and powers off.
func ext4Root(t *testing.T, guestDir string) string {
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		t.Fatalf("mkfs.ext4 not found (e2fsprogs): %v", err)
	}
	s := scratchDir(t)
	root := filepath.Join(s, "root")
	for _, d := range []string{"bin", "dev", "proc", "sys"} {
		require.NoError(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	bb, err := os.ReadFile(filepath.Join(guestDir, "busybox"))
	require.NoError(t, err, "busybox in the guest directory: run make guest")
	require.NoError(t, os.WriteFile(filepath.Join(root, "bin", "busybox"), bb, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "hello"), []byte("hello from the disk\n"), 0o644))
	init := `#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
echo "GUEST-ROOT-INIT pid=$$"
while read -r dev mnt fs rest; do
    [ "$mnt" = / ] && echo "GUEST-ROOT-MOUNT $dev $mnt $fs"
done < /proc/mounts
read -r line < /hello
echo "GUEST-ROOT-FILE $line"
/bin/busybox sync
/bin/busybox poweroff -f
`
	require.NoError(t, os.WriteFile(filepath.Join(root, "init"), []byte(init), 0o755))
	img := filepath.Join(s, "root.img")
	out, err := exec.Command(mkfs, "-q", "-F", "-t", "ext4", "-d", root, img, "32M").CombinedOutput()
	require.NoError(t, err, "mkfs.ext4: %s", out)
	return img
}

// TestBlkKill SIGKILLs gvmm as soon as the guest says its sync returned:
// everything the guest wrote and flushed is in the host file, in every
// cache mode.
func TestBlkKill(t *testing.T) {
	skipUnlessBoots(t)
	dir := guestDir()
	gvmm := gvmmBinary(t)
	g := blkGuests(t, dir)[0]
	for _, cache := range []string{"writeback", "none", "writethrough"} {
		t.Run(cache, func(t *testing.T) {
			t.Parallel()
			s := scratchDir(t)
			src, dst := filepath.Join(s, "src.img"), filepath.Join(s, "dst.img")
			pattern := writeImage(t, src, 8<<20, 1234)
			writeImage(t, dst, 8<<20, 0)
			con, status, _ := blkRun{name: "blk-kill-" + cache, guest: g,
				disks:     []string{src + ",readonly", dst + ",cache=" + cache},
				cmdline:   "test=blkhold initexit=poweroff",
				killAfter: "GUEST-BLK-SYNCED"}.run(t, gvmm, dir)
			assert.Equal(t, -1, status, "killed")
			assert.Equal(t, md5hex(pattern), values(con.String())["GUEST-BLK-SYNCED"])
			got, err := os.ReadFile(dst)
			require.NoError(t, err)
			assert.True(t, bytes.Equal(pattern, got), "everything synced before the kill is in the host file")
		})
	}
}
