// Package machine wires gvmm's parts into a bootable x86-64 virtual machine:
// KVM VM and vCPUs, guest RAM, the legacy devices on their buses, ACPI
// tables, and a Linux kernel loaded for direct 64-bit entry.
//
// It is the Go API behind `gvmm run`, and the one tests use to boot a guest
// in-process:
//
//	m, err := machine.New(machine.Config{Kernel: "bzImage", CPUs: 2, Memory: 1 << 30, Console: &out})
//	res, err := m.Run(ctx)
//	// res.Outcome, res.TestExitValue
package machine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/gvmm/gvmm/boot"
	"github.com/gvmm/gvmm/boot/acpi"
	"github.com/gvmm/gvmm/devices"
	"github.com/gvmm/gvmm/kvm"
	"github.com/gvmm/gvmm/memory"
	"github.com/gvmm/gvmm/vcpu"
	"github.com/gvmm/gvmm/vcpu/cpuid"
	"github.com/gvmm/gvmm/vcpu/fallback"
)

// DefaultCmdline is the kernel command line every guest gets before the
// user's part: the console on the first serial port, an immediate reset on
// panic (so a crashed guest ends the VM instead of hanging it), one legacy
// UART, and an i8042 probe that skips what the machine does not have. The
// PCI bus is always there (the host bridge, and the disks on it), so PCI
// probing stays on.
const DefaultCmdline = "console=ttyS0 panic=-1 8250.nr_uarts=1 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd"

// Guest-physical addresses outside RAM that KVM needs on Intel hosts
// (api.rst, KVM_SET_TSS_ADDR and KVM_SET_IDENTITY_MAP_ADDR): three pages
// for the real-mode TSS and one for the EPT identity map, inside the 32-bit
// hole, below the IOAPIC.
const (
	tssAddr         = 0xFFFB_D000
	identityMapAddr = 0xFFFB_C000
)

// Addresses and ports of the platform (docs/design.md).
const (
	acpiBase     = 0xE0000
	acpiSize     = 0x20000
	ioapicAddr   = 0xFEC0_0000
	lapicAddr    = 0xFEE0_0000
	com1Port     = 0x3F8
	com1IRQ      = 4
	i8042Port    = 0x60
	rtcPort      = 0x70
	testExitPort = 0xF4
	acpiPMPort   = 0x600 // PM1a event block; PM1a control at +4, reset register at +6
	acpiReset    = 0x01
	sciIRQ       = 9
)

// Config describes a VM.
type Config struct {
	// Kernel is the path of a bzImage or an ELF vmlinux.
	Kernel string
	// Initrd is the path of an initramfs, or empty.
	Initrd string
	// Cmdline is appended to DefaultCmdline (or replaces it when
	// NoDefaultCmdline is set).
	Cmdline string
	// NoDefaultCmdline drops DefaultCmdline.
	NoDefaultCmdline bool
	// CPUs is the number of vCPUs (at least 1).
	CPUs int
	// Memory is the guest RAM size in bytes.
	Memory uint64
	// Entry selects how the kernel is entered (boot.Auto by default).
	Entry boot.EntryMode
	// Console receives the guest's serial output; nil discards it. Writes
	// happen on a goroutine of their own, in batches; a Console that
	// stops taking output holds up neither the guest nor Run for longer
	// than ConsoleDrain.
	Console io.Writer
	// ConsoleDrain bounds how long Run, once the VM has ended, waits for
	// Console to take the output still buffered; 0 means 10 s. If Console
	// has not taken it by then, Run returns anyway with Result.Err saying
	// so, and the goroutine stuck in Console.Write is left to it.
	ConsoleDrain time.Duration
	// ConsoleIn feeds the guest's serial input; nil sends nothing. EOF
	// stops the feeding, not the guest. It is read on one goroutine, and
	// when Run returns no Read of it is in progress and none will start,
	// if ConsoleIn never blocks (a strings.Reader), can be interrupted
	// with SetReadDeadline (an *os.File of a pipe or of a terminal in
	// non-blocking mode, a net.Conn), or has a file descriptor that
	// poll(2) can watch (Fd(): an *os.File in blocking mode such as
	// os.Stdin). Any other reader that blocks (an io.Pipe) is abandoned
	// when Run returns: the Read in progress is left to finish, and what
	// it returns is dropped.
	ConsoleIn io.Reader
	// Log receives gvmm's own notes (host adaptations, timings); nil
	// discards them.
	Log io.Writer
	// NoFallback disables the instruction fallback and hang detection.
	NoFallback bool
	// KVMDevice is the KVM device node; empty means /dev/kvm.
	KVMDevice string
	// Disks are attached as virtio block devices on PCI, in order: the
	// guest calls them vda, vdb, ...
	Disks []Disk
	// Nets are attached as virtio network devices on PCI, after the
	// disks, in order: the guest calls them eth0, eth1, ... (or by their
	// PCI slot, with predictable names).
	Nets []Net
}

// Outcome says how a VM ended.
type Outcome int

// Outcomes.
const (
	// PowerOff: the guest powered off (ACPI S5).
	PowerOff Outcome = iota
	// Reset: the guest reset (ACPI reset register, i8042, triple fault).
	Reset
	// TestExit: the guest wrote a verdict to the test-exit port.
	TestExit
	// Stopped: the VM was stopped from the host (context, Stop).
	Stopped
	// Failed: an exit gvmm cannot handle, or a VMM failure.
	Failed
)

func (o Outcome) String() string {
	return [...]string{"power off", "reset", "test exit", "stopped", "failed"}[o]
}

// Result describes how a VM ended and what it did.
type Result struct {
	Outcome Outcome
	// Detail says more: "ACPI S5", "triple fault on vCPU 0", ...
	Detail string
	// TestExitValue is the value written to the test-exit port.
	TestExitValue uint32
	// Err is the failure of a Failed outcome.
	Err error
	// Exits counts exits to userspace by kind, over all vCPUs.
	Exits map[string]uint64
	// Fallbacks counts emulated instructions and resolved hangs by name.
	Fallbacks map[string]uint64
	// Started is when the VM's first vCPU entered KVM_RUN; Ended when the
	// last one returned.
	Started, Ended time.Time
}

// ConfigError is a Config value out of range: a vCPU count or memory size
// the machine or the host cannot give.
type ConfigError struct {
	// Field names the Config field: "CPUs" or "Memory".
	Field string
	// Msg says what is wrong with it.
	Msg string
}

func (e *ConfigError) Error() string { return e.Msg }

// Machine is a VM ready to run. Its methods are safe to call from any
// goroutine: Stop and Close in particular may be called while Run runs.
type Machine struct {
	cfg     Config
	host    Host
	adapt   adaptations
	sys     *kvm.System
	vm      *kvm.VM
	mem     *memory.Guest
	cpus    []*kvm.VCPU
	pio     devices.Bus
	mmio    devices.Bus
	serial  *devices.Serial
	console *batchWriter
	irqs    []*irqLine
	pci     *pciBus
	setup   *boot.Setup
	cmdline string
	emu     vcpu.Emulator

	hooks Hooks

	// mu guards the lifecycle: vcpus (created by Run), whether the VM has
	// ended (finish), whether Run has started and finished, and Close.
	mu      sync.Mutex
	vcpus   []*vcpu.VCPU
	ended   bool
	started bool
	closed  bool
	// runDone is closed when Run returns; Close waits for it.
	runDone chan struct{}
	// done is closed when the VM ends, with result's outcome set.
	done   chan struct{}
	result Result
}

// New creates the VM, loads the kernel and prepares every vCPU. Errors name
// their cause in one line: a missing or bad kernel, a memory size or vCPU
// count the host cannot give, KVM unavailable.
func New(cfg Config) (*Machine, error) {
	if cfg.CPUs < 1 {
		return nil, &ConfigError{"CPUs", fmt.Sprintf("%d vCPUs: a VM needs at least one", cfg.CPUs)}
	}
	if cfg.Memory < memory.MinSize {
		return nil, &ConfigError{"Memory", fmt.Sprintf("guest memory %s is too small: at least %s", humanBytes(cfg.Memory), humanBytes(memory.MinSize))}
	}
	if host := hostMemory(); host > 0 && cfg.Memory > host {
		return nil, &ConfigError{"Memory", fmt.Sprintf("guest memory %s is more than this host has (%s)", humanBytes(cfg.Memory), humanBytes(host))}
	}
	cfg.Memory &^= memory.PageSize - 1
	kernel, err := os.ReadFile(cfg.Kernel)
	if err != nil {
		return nil, fmt.Errorf("kernel: %w", unwrapPathError(err))
	}
	if _, err := boot.Probe(kernel); err != nil {
		return nil, fmt.Errorf("kernel %s: %w", cfg.Kernel, err)
	}
	var initrd []byte
	if cfg.Initrd != "" {
		if initrd, err = os.ReadFile(cfg.Initrd); err != nil {
			return nil, fmt.Errorf("initrd: %w", unwrapPathError(err))
		}
	}

	disks, err := openDisks(cfg.Disks)
	if err != nil {
		return nil, err
	}
	taps, err := openNets(cfg.Nets)
	if err != nil {
		closeDisks(disks)
		return nil, err
	}

	host := detectHost(sysModules)
	m := &Machine{cfg: cfg, host: host, adapt: host.adaptations(cfg.NoFallback), done: make(chan struct{})}
	ready := false
	defer func() {
		if !ready {
			if m.pci == nil {
				closeDisks(disks)
				closeTaps(taps)
			}
			m.Close()
		}
	}()
	dev := cfg.KVMDevice
	if dev == "" {
		dev = kvm.DevicePath
	}
	if m.sys, err = kvm.OpenPath(dev); err != nil {
		return nil, err
	}
	if max := m.sys.MaxVCPUs(); cfg.CPUs > max {
		return nil, &ConfigError{"CPUs", fmt.Sprintf("%d vCPUs: this host's KVM allows at most %d", cfg.CPUs, max)}
	}
	if m.vm, err = m.sys.CreateVM(); err != nil {
		return nil, err
	}
	if err = m.createPlatform(); err != nil {
		return nil, err
	}
	if m.mem, err = memory.New(cfg.Memory); err != nil {
		return nil, err
	}
	for i, r := range m.mem.Regions() {
		if err = m.vm.SetUserMemoryRegion(kvm.UserspaceMemoryRegion{
			Slot: uint32(i), GuestPhysAddr: r.GPA, MemorySize: r.Size(), UserspaceAddr: r.HostAddr(),
		}); err != nil {
			return nil, err
		}
	}
	if err = m.createVCPUs(); err != nil {
		return nil, err
	}
	m.createDevices()
	if err = m.createPCI(disks, taps); err != nil {
		return nil, err
	}
	rsdp, err := m.writeACPI()
	if err != nil {
		return nil, err
	}
	m.cmdline = m.buildCmdline()
	var ram []boot.Range
	for _, r := range m.mem.Regions() {
		ram = append(ram, boot.Range{Start: r.GPA, Size: r.Size()})
	}
	m.setup, err = boot.Load(m.mem, boot.Config{
		Kernel: kernel, Initrd: initrd, Cmdline: m.cmdline, RAM: ram, RSDP: rsdp, Entry: cfg.Entry,
		Reserved: pciReserved(),
	})
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", cfg.Kernel, err)
	}
	if err = m.setBootCPU(); err != nil {
		return nil, err
	}
	if m.adapt.fallback {
		m.emu = newEmulator(m.mem, cfg.CPUs, m.logf)
	}
	m.logf("gvmm: host %s; adaptations: %s; kernel %s (%s, %s), entry %#x; command line: %s",
		m.host.Backend, m.adapt, cfg.Kernel, m.setup.Format, m.setup.Compression, m.setup.CPU.RIP, m.cmdline)
	ready = true
	return m, nil
}

// createPlatform creates the in-kernel interrupt controllers and PIT and
// turns on the KVM features gvmm uses.
func (m *Machine) createPlatform() error {
	if err := m.vm.SetTSSAddr(tssAddr); err != nil {
		return err
	}
	if err := m.vm.SetIdentityMapAddr(identityMapAddr); err != nil {
		return err
	}
	if err := m.vm.CreateIRQChip(); err != nil {
		return err
	}
	if err := m.vm.CreatePIT2(kvm.PITSpeakerDummy); err != nil {
		return err
	}
	// Emulation failures then carry the instruction bytes, saving the
	// fallback a KVM_TRANSLATE and a memory read (api.rst,
	// KVM_CAP_EXIT_ON_EMULATION_FAILURE).
	if n, _ := m.vm.CheckExtension(kvm.CapExitOnEmulationFailure); n > 0 {
		if err := m.vm.EnableCap(kvm.CapExitOnEmulationFailure, 1); err != nil {
			return err
		}
	}
	if m.adapt.syscallTrap {
		// kvm_pvm leaves a guest in user mode on SYSCALL: trap the guest's
		// LSTAR writes to place the breakpoint that completes it
		// (fallback.SyscallTrap).
		if n, _ := m.vm.CheckExtension(kvm.CapX86MSRFilter); n <= 0 {
			return fmt.Errorf("this %s host lacks KVM_CAP_X86_MSR_FILTER, needed to complete guest SYSCALLs", m.host.Backend)
		}
		if err := m.vm.EnableCap(kvm.CapX86UserSpaceMSR, kvm.MSRExitReasonFilter); err != nil {
			return err
		}
		if err := m.vm.SetMSRFilter([]kvm.MSRFilterRange{fallback.SyscallFilter()}); err != nil {
			return err
		}
	}
	return nil
}

// createVCPUs creates every vCPU with its fitted CPUID and firmware state,
// and learns which hidden features the host forces back.
func (m *Machine) createVCPUs() error {
	supported, err := m.sys.SupportedCPUID()
	if err != nil {
		return err
	}
	deadline, _ := m.sys.CheckExtension(kvm.CapTSCDeadlineTimer)
	hide := m.adapt.hide
	for i := 0; i < m.cfg.CPUs; i++ {
		v, err := m.vm.CreateVCPU(i)
		if err != nil {
			return err
		}
		m.cpus = append(m.cpus, v)
		table := cpuid.Fit(supported, cpuid.Options{APICID: uint32(i), CPUs: m.cfg.CPUs, Hide: hide, TSCDeadline: deadline > 0})
		if err := setupVCPU(v, table); err != nil {
			return err
		}
		if i == 0 && len(hide) > 0 {
			back, err := v.CPUID2()
			if err != nil {
				return err
			}
			m.host.Forced = forcedFeatures(back, hide)
		}
	}
	return nil
}

func (m *Machine) createDevices() {
	out := m.cfg.Console
	if out == nil {
		out = io.Discard
	}
	m.console = newBatchWriter(out)
	if m.cfg.ConsoleDrain > 0 {
		m.console.drain = m.cfg.ConsoleDrain
	}
	com1 := m.irqLine(com1IRQ)
	m.serial = devices.NewSerial(com1, m.console)
	// The bus ranges are fixed and disjoint; an error here is a bug.
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	must(m.pio.Insert(m.serial, "serial0", com1Port, 8))
	must(m.pio.Insert(devices.NewI8042(func() { m.end(Reset, "i8042 reset", nil) }), "i8042", i8042Port, devices.I8042Size))
	must(m.pio.Insert(devices.NewRTC(time.Now), "rtc", rtcPort, 2))
	must(m.pio.Insert(devices.NewTestExit(func(v uint32) {
		m.endTestExit(v)
	}), "test-exit", testExitPort, 1))
	must(m.pio.Insert(devices.NewACPIPower(
		func() { m.end(PowerOff, "ACPI S5", nil) },
		func() { m.end(Reset, "ACPI reset register", nil) },
	), "acpi-pm", acpiPMPort, devices.ACPIPowerSize))
}

func (m *Machine) irqLine(gsi uint32) *irqLine {
	l := &irqLine{vm: m.vm, gsi: gsi, onError: func(err error) { m.end(Failed, "", err) }}
	m.irqs = append(m.irqs, l)
	return l
}

func (m *Machine) writeACPI() (uint64, error) {
	tables, rsdp, err := acpi.Build(acpi.Config{
		CPUs: m.cfg.CPUs, Base: acpiBase, Size: acpiSize,
		IOAPICAddr: ioapicAddr, LAPICAddr: lapicAddr,
		SCIIRQ: sciIRQ, PM1EventPort: acpiPMPort, PM1ControlPort: acpiPMPort + 4, ResetPort: acpiPMPort + 6,
		ResetValue: acpiReset, PCI: pciACPI(),
	})
	if err != nil {
		return 0, fmt.Errorf("ACPI tables: %w", err)
	}
	if _, err := m.mem.WriteAt(tables, acpiBase); err != nil {
		return 0, fmt.Errorf("ACPI tables: %w", err)
	}
	return rsdp, nil
}

func (m *Machine) buildCmdline() string {
	var parts []string
	if !m.cfg.NoDefaultCmdline {
		parts = append(parts, DefaultCmdline)
	}
	if extra := m.adapt.cmdlineParams(m.host.Forced); len(extra) > 0 {
		m.logf("gvmm: %s host: adding %s to the kernel command line", m.host.Backend, strings.Join(extra, " "))
		parts = append(parts, extra...)
	}
	if c := strings.TrimSpace(m.cfg.Cmdline); c != "" {
		parts = append(parts, c)
	}
	return strings.Join(parts, " ")
}

func (m *Machine) setBootCPU() error {
	c := m.setup.CPU
	v := m.cpus[0]
	s, err := v.Sregs()
	if err != nil {
		return err
	}
	seg := func(b boot.Segment) kvm.Segment {
		return kvm.Segment{Base: b.Base, Limit: b.Limit, Selector: b.Selector, Type: b.Type,
			Present: b.Present, DPL: b.DPL, DB: b.DB, S: b.S, L: b.L, G: b.G}
	}
	s.CS = seg(c.CS)
	s.DS = seg(c.DS)
	s.ES, s.FS, s.GS, s.SS = s.DS, s.DS, s.DS, s.DS
	s.TR = seg(c.TR)
	s.GDT = kvm.DTable{Base: c.GDT.Base, Limit: c.GDT.Limit}
	s.IDT = kvm.DTable{Base: c.IDT.Base, Limit: c.IDT.Limit}
	s.CR0, s.CR3, s.CR4, s.EFER = c.CR0, c.CR3, c.CR4, c.EFER
	if err := v.SetSregs(s); err != nil {
		return err
	}
	return v.SetRegs(kvm.Regs{RIP: c.RIP, RSP: c.RSP, RSI: c.RSI, RBX: c.RBX, RFLAGS: c.RFLAGS})
}

// Cmdline returns the kernel command line the guest gets.
func (m *Machine) Cmdline() string { return m.cmdline }

// Host returns what gvmm learned about the host.
func (m *Machine) Host() Host { return m.host }

// BootSetup returns how the kernel was loaded.
func (m *Machine) BootSetup() *boot.Setup { return m.setup }

// IRQCounts returns how many interrupts each GSI line raised.
func (m *Machine) IRQCounts() map[uint32]uint64 {
	out := map[uint32]uint64{}
	for _, l := range m.irqs {
		out[l.gsi] += l.raised.Load()
	}
	return out
}

// Run runs the VM until the guest powers off, resets or reports through the
// test-exit port, an exit cannot be handled, ctx is done, or Stop or Close
// is called (before Run too: Run then returns at once). Only a VMM failure
// before the guest starts is returned as an error; everything else is in
// the Result. Once the VM has ended, Run returns within a bounded time:
// the vCPUs leave KVM_RUN when kicked, console input stops being read (see
// Config.ConsoleIn), and the console output gets at most
// Config.ConsoleDrain to be written.
func (m *Machine) Run(ctx context.Context) (*Result, error) {
	m.mu.Lock()
	switch {
	case m.closed:
		m.mu.Unlock()
		return nil, errors.New("machine: Run after Close")
	case m.started:
		m.mu.Unlock()
		return nil, errors.New("machine: Run called twice")
	}
	m.started = true
	m.runDone = make(chan struct{})
	m.mu.Unlock()
	defer close(m.runDone)

	var vcpus []*vcpu.VCPU
	for i, c := range m.cpus {
		var obs vcpu.Observer
		if m.hooks.VCPU != nil {
			obs = m.hooks.VCPU(i)
		}
		vcpus = append(vcpus, vcpu.New(vcpu.Config{CPU: c, PIO: &m.pio, MMIO: &m.mmio, Emulator: m.emu,
			Describer: describer{m.mem}, Observer: obs, Sampler: m.hooks.Sampler}))
	}
	m.mu.Lock()
	m.vcpus = vcpus
	if m.ended {
		// Stopped before the vCPUs existed (Stop or Close before or
		// during this Run's start): they return before their first
		// KVM_RUN.
		for _, v := range vcpus {
			v.Stop()
		}
	}
	m.mu.Unlock()

	var wg sync.WaitGroup
	m.result.Started = time.Now()
	for _, v := range m.vcpus {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.vcpuDone(v.Run())
		}()
	}
	stopInput := m.feedConsole()
	stopWatch := m.watch()
	stopSampling := m.sampleRIPs()
	select {
	case <-ctx.Done():
		m.end(Stopped, "stopped: "+context.Cause(ctx).Error(), nil)
	case <-m.done:
	}
	wg.Wait()
	m.result.Ended = time.Now()
	stopSampling()
	stopWatch()
	stopInput()
	if err := m.console.Close(); err != nil && m.result.Err == nil {
		m.result.Err = fmt.Errorf("console output: %w", err)
	}
	m.collect()
	return &m.result, nil
}

// Stop ends the VM from the host, with reason as the Result's detail. It
// does not wait: Run returns shortly after. Called before Run, it makes
// Run return at once.
func (m *Machine) Stop(reason string) { m.end(Stopped, reason, nil) }

func (m *Machine) vcpuDone(err error) {
	var ev *vcpu.GuestEvent
	switch {
	case err == nil:
		// Stopped on request; whoever asked has set the outcome.
	case errors.As(err, &ev):
		switch ev.Event {
		case vcpu.EventPowerOff:
			m.end(PowerOff, "KVM system event", nil)
		case vcpu.EventTripleFault:
			m.end(Reset, fmt.Sprintf("triple fault on vCPU %d", ev.VCPU), nil)
		default:
			m.end(Reset, fmt.Sprintf("%s on vCPU %d", ev.Event, ev.VCPU), nil)
		}
	default:
		m.end(Failed, "", err)
	}
}

// end records the outcome (the first one wins) and stops every vCPU.
func (m *Machine) end(o Outcome, detail string, err error) {
	m.finish(o, detail, err, 0)
}

func (m *Machine) endTestExit(v uint32) {
	m.finish(TestExit, fmt.Sprintf("test-exit value %d", v), nil, v)
}

func (m *Machine) finish(o Outcome, detail string, err error, value uint32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ended {
		return
	}
	m.ended = true
	m.result.Outcome, m.result.Detail, m.result.Err, m.result.TestExitValue = o, detail, err, value
	if err != nil && detail == "" {
		m.result.Detail = err.Error()
	}
	for _, v := range m.vcpus {
		v.Stop()
		m.kicked(v.ID())
	}
	if m.console != nil {
		m.console.release()
	}
	close(m.done)
}

func (m *Machine) kicked(i int) {
	if m.hooks.Kick != nil {
		m.hooks.Kick(i)
	}
}

func (m *Machine) logf(format string, args ...any) {
	if m.cfg.Log != nil {
		fmt.Fprintf(m.cfg.Log, format+"\n", args...)
	}
}

// Close releases the vCPUs, the VM, guest memory and /dev/kvm, in that
// order: KVM must let go of the memory before it is unmapped. Called while
// Run runs, it stops the VM and waits for Run to return first. It returns
// every error it met, joined; calling it again does nothing.
func (m *Machine) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	running := m.runDone
	m.mu.Unlock()
	if running != nil {
		m.Stop("machine closed")
		<-running
	}
	var errs []error
	// Device workers first: they use guest memory and the VM's irqfds.
	if m.pci != nil {
		m.pci.close()
		m.pci = nil
	}
	for _, v := range m.cpus {
		errs = append(errs, v.Close())
	}
	m.cpus = nil
	if m.vm != nil {
		errs = append(errs, m.vm.Close())
		m.vm = nil
	}
	if m.mem != nil {
		errs = append(errs, m.mem.Close())
		m.mem = nil
	}
	if m.sys != nil {
		errs = append(errs, m.sys.Close())
		m.sys = nil
	}
	if m.console != nil {
		if err := m.console.Close(); err != nil {
			errs = append(errs, fmt.Errorf("console output: %w", err))
		}
	}
	return errors.Join(errs...)
}
