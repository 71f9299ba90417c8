// Command guestinit is the /init of the images vmtest builds
// (vmtest/initramfs). It sets up the guest, runs the command of
// /vmtest/config.json with the console as its terminal, sends structured
// results to the host as frames (vmtest/internal/wire), and reports the
// command's exit status through the test-exit port (vmtest/guest).
//
// It is built for the guest by the image builder (CGO_ENABLED=0,
// GOOS=linux, GOARCH=amd64); run on a host, it refuses to start unless it
// is process 1.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/gvmm/gvmm/vmtest/guest"
	"github.com/gvmm/gvmm/vmtest/internal/wire"
)

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "guestinit: not process 1; this is the /init of a vmtest guest")
		os.Exit(2)
	}
	code := run()
	if err := guest.Exit(exitByte(code)); err != nil {
		fmt.Printf("vmtest-init: %v; powering off\n", err)
	}
	if err := guest.PowerOff(); err != nil {
		fmt.Printf("vmtest-init: power off: %v\n", err)
	}
	// Process 1 must not return: the kernel would panic.
	select {}
}

// exitByte maps an exit status to the verdict byte: 0-255 as is, anything
// else (a signal, a failure to start) to 255.
func exitByte(code int) uint8 {
	if code < 0 || code > 255 {
		return 255
	}
	return uint8(code)
}

// out is the console, where frames and init's own messages go.
var out = bufio.NewWriter(os.Stdout)

func frame(kind, payload string) {
	line, err := wire.Encode(kind, payload)
	if err != nil {
		fmt.Fprintf(out, "vmtest-init: %v\n", err)
		out.Flush()
		return
	}
	out.WriteString(line)
	out.WriteString("\n")
	out.Flush()
}

func logf(format string, args ...any) {
	fmt.Fprintf(out, "vmtest-init: "+format+"\n", args...)
	out.Flush()
}

func run() int {
	mountAll()
	uptime, _ := os.ReadFile("/proc/uptime")
	frame(wire.KindInit, strings.Fields(string(uptime) + " ?")[0])
	cfg, err := readConfig()
	if err != nil {
		logf("%v", err)
		frame(wire.KindExit, "error: "+err.Error())
		return 255
	}
	if cfg.QuietKernel {
		// Console log level 1: only KERN_EMERG messages (a panic) reach
		// the console (Documentation/admin-guide/sysctl/kernel.rst, printk).
		if err := os.WriteFile("/proc/sys/kernel/printk", []byte("1"), 0); err != nil {
			logf("quiet kernel: %v", err)
		}
	}
	loadModules()
	if cfg.SendDir != "" {
		// The command writes there (GOCOVERDIR); it may lie under the
		// tmpfs mounted on /tmp, which hides the image's copy.
		if err := os.MkdirAll(cfg.SendDir, 0o755); err != nil {
			logf("%s: %v", cfg.SendDir, err)
		}
	}
	code, err := runCommand(cfg)
	if err != nil {
		logf("%v", err)
	}
	if cfg.SendDir != "" {
		if err := sendDir(cfg.SendDir); err != nil {
			logf("sending %s: %v", cfg.SendDir, err)
		}
	}
	if err != nil {
		frame(wire.KindExit, "error: "+err.Error())
	} else {
		frame(wire.KindExit, strconv.Itoa(code))
	}
	unix.Sync()
	return code
}

// mountAll mounts the file systems programs expect. Failures are reported
// and the guest goes on: the command may not need them.
func mountAll() {
	for _, m := range []struct{ src, dir, fstype string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
		{"tmpfs", "/tmp", "tmpfs"},
		{"devpts", "/dev/pts", "devpts"},
	} {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			logf("mkdir %s: %v", m.dir, err)
			continue
		}
		// EBUSY: the kernel mounted it already (devtmpfs.mount=1).
		if err := unix.Mount(m.src, m.dir, m.fstype, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			logf("mount %s: %v", m.dir, err)
		}
	}
}

func readConfig() (wire.Config, error) {
	var cfg wire.Config
	data, err := os.ReadFile("/" + wire.ConfigPath)
	if errors.Is(err, fs.ErrNotExist) {
		return cfg, nil
	}
	if err != nil {
		return cfg, err
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return cfg, fmt.Errorf("/%s: %w", wire.ConfigPath, err)
	}
	return cfg, nil
}

// loadModules loads the modules of /lib/modules/load-order, in order, as
// guest/initramfs stores them (each after the ones it depends on).
func loadModules() {
	list, err := os.ReadFile("/lib/modules/load-order")
	if err != nil {
		return
	}
	for _, name := range strings.Fields(string(list)) {
		if err := loadModule("/lib/modules/" + name); err != nil {
			logf("module %s: %v", name, err)
		}
	}
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}

func runCommand(cfg wire.Config) (int, error) {
	args := cfg.Args
	if len(args) == 0 {
		args = []string{"/bin/sh"}
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append([]string{"PATH=/bin:/sbin:/usr/bin:/usr/sbin", "HOME=/tmp", "TMPDIR=/tmp"}, cfg.Env...)
	cmd.Dir = cfg.Dir
	if cmd.Dir == "" {
		cmd.Dir = "/"
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if tty := consoleTTY(); tty != nil {
		defer tty.Close()
		// A session of its own with the console's real device as its
		// controlling terminal, so that a shell gets job control and
		// Ctrl-C. /dev/console itself cannot be a controlling terminal
		// (drivers/tty/tty_io.c, tty_open_by_driver: noctty for the
		// console).
		cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
		cmd.SysProcAttr.Setctty, cmd.SysProcAttr.Ctty = true, 0
	}
	var pipe io.ReadCloser
	if cfg.JSONOutput {
		// test2json's events come through a pipe and go out as frames;
		// stderr stays on the console.
		cmd.Stdout = nil
		p, err := cmd.StdoutPipe()
		if err != nil {
			return 255, err
		}
		pipe = p
	}
	if err := cmd.Start(); err != nil {
		return 255, fmt.Errorf("start %s: %w", args[0], err)
	}
	if pipe != nil {
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 4096), wire.MaxLine/2)
		for sc.Scan() {
			frame(wire.KindJSON, sc.Text())
		}
		if err := sc.Err(); err != nil {
			logf("reading %s: %v", args[0], err)
			io.Copy(io.Discard, pipe)
		}
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			logf("%s: killed by %v", args[0], ws.Signal())
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	default:
		return 255, err
	}
}

// sendDir sends every regular file under dir to the host, in chunks.
func sendDir(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for first := true; first || len(data) > 0; first = false {
			n := min(len(data), wire.ChunkSize)
			frame(wire.KindFile, wire.EncodeChunk(wire.FileChunk{
				Name: filepath.ToSlash(rel), Data: data[:n], Last: n == len(data),
			}))
			data = data[n:]
		}
		return nil
	})
}

// consoleTTY opens the device behind /dev/console (the last one listed in
// /sys/class/tty/console/active, as busybox's cttyhack does), or returns
// nil.
func consoleTTY() *os.File {
	active, err := os.ReadFile("/sys/class/tty/console/active")
	if err != nil {
		return nil
	}
	f := strings.Fields(string(active))
	if len(f) == 0 || strings.ContainsAny(f[len(f)-1], "/.") {
		return nil
	}
	tty, err := os.OpenFile("/dev/"+f[len(f)-1], os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		logf("console: %v", err)
		return nil
	}
	return tty
}
