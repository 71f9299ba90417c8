package vmtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gvmm/gvmm/vmtest/guest"
	"github.com/gvmm/gvmm/vmtest/initramfs"
	"github.com/gvmm/gvmm/vmtest/internal/wire"
)

// EnvInGuest is set to 1 in the environment of tests that RunGoTests runs
// in a guest; guest.SkipIfNotInVM checks it.
const EnvInGuest = guest.EnvInGuest

// guestCoverDir is where guest test binaries write coverage counters.
const guestCoverDir = "/tmp/vmtest-cover"

type goTestConfig struct {
	args     []string
	vmOpts   []Option
	image    initramfs.Image
	coverDir string
	cover    []string
}

// GoTestOption configures RunGoTests.
type GoTestOption func(*goTestConfig)

// WithTestArgs passes arguments to the test binary in the guest
// ("-test.run=TestX", "-test.count=2").
func WithTestArgs(args ...string) GoTestOption {
	return func(c *goTestConfig) { c.args = append(c.args, args...) }
}

// WithVMOptions configures the VM the tests run in (CPUs, memory,
// timeout, kernel).
func WithVMOptions(opts ...Option) GoTestOption {
	return func(c *goTestConfig) { c.vmOpts = append(c.vmOpts, opts...) }
}

// WithImage adds u-root commands, programs, files, busybox or modules to
// the guest's image; its Run is ignored (the tests are run).
func WithImage(img initramfs.Image) GoTestOption {
	return func(c *goTestConfig) { c.image = img }
}

// WithCoverDir collects the guest's coverage counters (GOCOVERDIR) into
// the host folder dir, instead of GVMM_GOCOVERDIR's; the test binary is
// then built with -cover, for the packages coverPkgs (-coverpkg; none
// means the package under test). `go tool covdata percent -i=dir` reads
// them.
func WithCoverDir(dir string, coverPkgs ...string) GoTestOption {
	return func(c *goTestConfig) { c.coverDir, c.cover = dir, coverPkgs }
}

// RunGoTests compiles the tests of the package pkg for the guest (go test
// -c, pkg as go test takes it: "./guesttests", an import path), boots a
// VM whose /init runs them through test2json, and reports each guest test
// as a subtest of t, with its output, as the results stream in over the
// console. A failing guest test fails its subtest and so t; the test
// binary's exit status comes back through the test-exit port and is
// checked against the results. The package's testdata folder is in the
// guest, where the tests run, and EnvInGuest is set.
//
// When GVMM_GOCOVERDIR (or WithCoverDir) names a folder, the binary is
// built with -cover and the guest's coverage counters are written there.
func RunGoTests(t *testing.T, pkg string, opts ...GoTestOption) {
	t.Helper()
	cfg := goTestConfig{coverDir: os.Getenv(EnvCoverDir)}
	for _, o := range opts {
		o(&cfg)
	}
	ctx := context.Background()
	if dl, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl)
		defer cancel()
	}
	skipUnlessRunnable(t, cfg.vmOpts)

	work := t.TempDir()
	start := time.Now()
	store := initramfs.StoreFromEnv()
	key, what, err := goTestKey(pkg, &cfg)
	if err != nil {
		t.Fatalf("vmtest: %v", err)
	}
	img, err := store.Provide(key, what, filepath.Join(work, "initramfs.cpio"), func(out string) error {
		return buildGoTestImage(ctx, work, out, pkg, &cfg)
	})
	if err != nil {
		t.Fatalf("vmtest: %v", err)
	}
	if store != nil && !store.Fill {
		t.Logf("vmtest: the guest image for %s is prebuilt: %s", pkg, img)
	} else {
		t.Logf("vmtest: built the guest image for %s in %v", pkg, time.Since(start).Round(time.Millisecond))
	}
	skipIfPrebuild(t)

	vm := Start(t, append([]Option{WithName(t.Name() + " (" + pkg + ")"), WithInitramfs(img), WithCmdline("quiet")}, cfg.vmOpts...)...)
	r := newReporter(t, cfg.coverDir)
	r.consume(vm)
	verdict, err := vm.Wait()
	if d, ok := vm.Console.InitAfter(); ok {
		t.Logf("vmtest: /init ran %v after start; tests done after %v", d.Round(time.Millisecond), time.Since(vm.started).Round(time.Millisecond))
	}
	r.finish(err, verdict)
}

// EnvPrebuild set to 1 makes a prebuild run: RunGoTests and
// initramfs.Image's Build build their images (with or without /dev/kvm)
// and store them in EnvImages' folder, and the tests then skip instead of
// booting (SkipPrebuild). It serves a later run that must not run the Go
// toolchain: gvmm's make test prebuilds on the machine, then runs the
// same test binary in the emulated KVM host, where the Go linker is 30
// times slower (initramfs.EnvPrebuild).
const EnvPrebuild = initramfs.EnvPrebuild

// EnvImages names the folder of prebuilt images (initramfs.EnvImages):
// where it is set without EnvPrebuild, RunGoTests and initramfs.Image's
// Build take their images from it, fail the test when one is missing,
// and never run the Go toolchain.
const EnvImages = initramfs.EnvImages

// skipUnlessRunnable skips t as Start would, before minutes of building;
// not in a prebuild run, which builds the image and then skips.
func skipUnlessRunnable(t *testing.T, opts []Option) {
	t.Helper()
	var c config
	for _, o := range opts {
		o(&c)
	}
	if c.kernel == "" && GuestFromEnv().Kernel == "" {
		t.Skipf("%s set %s (and %s, %s) or run `make guest`", SkipNoKernel, EnvKernel, EnvInitramfs, EnvCmdline)
	}
	if os.Getenv(EnvPrebuild) != "1" {
		skipIfNoKVM(t)
	}
}

// goTestKey names the image RunGoTests boots for pkg and cfg, without
// building it; what describes it.
func goTestKey(pkg string, cfg *goTestConfig) (key, what string, err error) {
	imgKey, err := cfg.image.Key()
	if err != nil {
		return "", "", err
	}
	dir := pkg
	if d, err := packageDir(pkg); err == nil {
		dir = d // "./x" means different packages in different folders
	}
	desc := struct {
		Version   int
		Pkg       string
		Args      []string
		Cover     bool
		CoverPkgs []string
		Image     string
	}{1, dir, cfg.args, cfg.coverDir != "", cfg.cover, imgKey}
	data, err := json.Marshal(desc)
	if err != nil {
		return "", "", err
	}
	sum := sha256.Sum256(data)
	what = fmt.Sprintf("the tests of %s with %q", pkg, cfg.args)
	if desc.Cover {
		what += " and coverage"
	}
	if len(cfg.image.Commands) > 0 {
		what += " and commands " + strings.Join(cfg.image.Commands, " ")
	}
	return hex.EncodeToString(sum[:]), what, nil
}

// buildGoTestImage builds the image that runs pkg's tests into out.
func buildGoTestImage(ctx context.Context, work, out, pkg string, cfg *goTestConfig) error {
	testBin := filepath.Join(work, "pkg.test")
	var flags []string
	if cfg.coverDir != "" {
		if err := os.MkdirAll(cfg.coverDir, 0o755); err != nil {
			return err
		}
		flags = append(flags, "-cover", "-covermode=atomic")
		if len(cfg.cover) > 0 {
			flags = append(flags, "-coverpkg="+strings.Join(cfg.cover, ","))
		}
	}
	if err := initramfs.GoTestBuild(ctx, cfg.image.GoEnv, testBin, pkg, flags...); err != nil {
		return err
	}
	if _, err := os.Stat(testBin); err != nil {
		return fmt.Errorf("%s has no tests (go test -c wrote no binary)", pkg)
	}
	t2j := filepath.Join(work, "test2json")
	if err := initramfs.GoBuild(ctx, nil, t2j, "cmd/test2json"); err != nil {
		return err
	}
	img := cfg.image
	img.Files = append(img.Files,
		initramfs.File{Name: "vmtest/bin/pkg.test", Host: testBin, Mode: 0o755},
		initramfs.File{Name: "vmtest/bin/test2json", Host: t2j, Mode: 0o755})
	// The tests run in a copy of the package's folder with its testdata,
	// as go test runs them in the package's folder.
	img.Dir = "/vmtest/pkg"
	img.Files = append(img.Files, initramfs.File{Name: "vmtest/pkg/.keep"})
	if dir, err := packageDir(pkg); err == nil {
		if _, err := os.Stat(filepath.Join(dir, "testdata")); err == nil {
			files, err := initramfs.DirFiles(filepath.Join(dir, "testdata"), "vmtest/pkg/testdata")
			if err != nil {
				return err
			}
			img.Files = append(img.Files, files...)
		}
	}
	img.Run = append([]string{"/vmtest/bin/test2json", "-t", "-p", pkg, "/vmtest/bin/pkg.test",
		"-test.v=test2json", "-test.paniconexit0"}, cfg.args...)
	img.Env = append(img.Env, EnvInGuest+"=1")
	if cfg.coverDir != "" {
		img.Run = append(img.Run, "-test.gocoverdir="+guestCoverDir)
		img.Env = append(img.Env, "GOCOVERDIR="+guestCoverDir)
		img.SendDir = guestCoverDir // /init makes it
	}
	img.JSONOutput, img.QuietKernel = true, true
	return img.BuildFresh(ctx, out)
}

// packageDir returns the host folder of pkg.
func packageDir(pkg string) (string, error) {
	if strings.HasPrefix(pkg, ".") || filepath.IsAbs(pkg) {
		return filepath.Abs(pkg)
	}
	return "", errors.New("not a local package")
}

// testEvent is test2json's event (go doc cmd/test2json).
type testEvent struct {
	Time    time.Time
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

// testNode is one guest test and what it printed.
type testNode struct {
	name     string // full name, "TestA/sub"
	output   []string
	action   string // pass, fail, skip; "" while it runs
	elapsed  float64
	children []*testNode
}

// reporter turns the guest's test events into subtests of t.
type reporter struct {
	t        *testing.T
	nodes    map[string]*testNode
	top      []*testNode // top-level tests not reported yet
	pkgOut   []string
	pkgDone  string // the package's pass or fail
	failed   int
	reported int
	bad      []error
	coverDir string
	files    map[string]*os.File
	exit     string // the KindExit payload
}

func newReporter(t *testing.T, coverDir string) *reporter {
	return &reporter{t: t, nodes: map[string]*testNode{}, coverDir: coverDir, files: map[string]*os.File{}}
}

// consume reads frames until the VM ends, reporting each top-level guest
// test as soon as it has finished.
func (r *reporter) consume(vm *VM) {
	for {
		frames, bad, ended, changed := vm.Console.takeFrames()
		r.bad = append(r.bad, bad...)
		for _, f := range frames {
			r.frame(f)
		}
		r.reportFinished()
		if ended {
			return
		}
		<-changed
	}
}

func (r *reporter) frame(f wire.Frame) {
	switch f.Kind {
	case wire.KindJSON:
		var ev testEvent
		if err := json.Unmarshal([]byte(f.Payload), &ev); err != nil {
			r.bad = append(r.bad, fmt.Errorf("test2json event %q: %w", f.Payload, err))
			return
		}
		r.event(ev)
	case wire.KindFile:
		if err := r.file(f.Payload); err != nil {
			r.bad = append(r.bad, err)
		}
	case wire.KindExit:
		r.exit = f.Payload
	}
}

func (r *reporter) event(ev testEvent) {
	if ev.Test == "" {
		switch ev.Action {
		case "output":
			r.pkgOut = append(r.pkgOut, ev.Output)
		case "pass", "fail", "skip":
			r.pkgDone = ev.Action
		}
		return
	}
	n := r.nodes[ev.Test]
	if n == nil {
		n = &testNode{name: ev.Test}
		r.nodes[ev.Test] = n
		if i := strings.LastIndexByte(ev.Test, '/'); i >= 0 && r.nodes[ev.Test[:i]] != nil {
			p := r.nodes[ev.Test[:i]]
			p.children = append(p.children, n)
		} else {
			r.top = append(r.top, n)
		}
	}
	switch ev.Action {
	case "output":
		n.output = append(n.output, ev.Output)
	case "pass", "fail", "skip":
		n.action, n.elapsed = ev.Action, ev.Elapsed
	}
}

// reportFinished reports, in order, the top-level tests that have ended.
func (r *reporter) reportFinished() {
	for len(r.top) > 0 && r.top[0].action != "" {
		n := r.top[0]
		r.top = r.top[1:]
		r.report(r.t, n)
	}
}

// report runs n as a subtest of t that replays the guest test.
func (r *reporter) report(t *testing.T, n *testNode) {
	r.reported++
	t.Run(path.Base("/"+n.name), func(st *testing.T) {
		if len(n.output) > 0 {
			st.Logf("guest output:\n%s", strings.Join(n.output, ""))
		}
		for _, c := range n.children {
			if c.action == "" {
				c.action = "unfinished"
			}
			r.report(st, c)
		}
		switch n.action {
		case "pass":
		case "skip":
			st.SkipNow()
		case "fail":
			r.failed++
			st.Errorf("guest test %s failed (%.2fs in the guest)", n.name, n.elapsed)
		default:
			r.failed++
			st.Errorf("guest test %s did not finish", n.name)
		}
	})
}

// finish reports what is left once the VM has ended, and checks the
// verdict against the results.
func (r *reporter) finish(waitErr error, verdict uint32) {
	t := r.t
	t.Helper()
	for _, n := range r.top {
		r.report(t, n)
	}
	r.top = nil
	for name, f := range r.files {
		f.Close()
		r.bad = append(r.bad, fmt.Errorf("coverage file %s was not sent whole", name))
	}
	for _, err := range r.bad {
		t.Errorf("vmtest: from the guest: %v", err)
	}
	if len(r.pkgOut) > 0 {
		t.Logf("guest package output:\n%s", strings.Join(r.pkgOut, ""))
	}
	switch {
	case waitErr != nil:
		t.Errorf("vmtest: the guest's tests did not finish: %v", waitErr)
	case r.pkgDone == "":
		t.Errorf("vmtest: the guest test binary ended (exit %q, verdict %d) without a result", r.exit, verdict)
	case verdict != 0 && r.failed == 0:
		t.Errorf("vmtest: the guest test binary failed (verdict %d, package %s) though no test failed", verdict, r.pkgDone)
	case verdict == 0 && (r.failed > 0 || r.pkgDone == "fail"):
		t.Errorf("vmtest: the guest's verdict is 0 though tests failed")
	case r.reported == 0 && r.pkgDone == "pass":
		t.Logf("vmtest: the guest ran no test")
	}
}

// file appends a chunk of a guest file to the coverage folder.
func (r *reporter) file(payload string) error {
	c, err := wire.DecodeChunk(payload)
	if err != nil {
		return err
	}
	if r.coverDir == "" {
		return fmt.Errorf("guest sent %s, but no coverage folder is set", c.Name)
	}
	f := r.files[c.Name]
	if f == nil {
		dst := filepath.Join(r.coverDir, filepath.FromSlash(c.Name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if f, err = os.Create(dst); err != nil {
			return err
		}
		r.files[c.Name] = f
	}
	if _, err := f.Write(c.Data); err != nil {
		return err
	}
	if c.Last {
		delete(r.files, c.Name)
		return f.Close()
	}
	return nil
}
