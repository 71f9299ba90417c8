package vcpu

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/gvmm/gvmm/devices"
	"github.com/gvmm/gvmm/kvm"
)

// KickSignal is the signal Kick sends to a vCPU thread to interrupt KVM_RUN.
// A real-time signal that the Go runtime does not use: its handler ignores
// it (no signal.Notify is registered), and the interrupted KVM_RUN returns
// EINTR. SIGURG, Go's own preemption signal, would work too but would make
// kicks indistinguishable from preemption in traces.
const KickSignal = unix.Signal(40)

// Describer renders a vCPU's state for the report of an exit gvmm cannot
// handle: its mode, RIP, the instruction bytes and their disassembly, the
// registers (fallback.Describe).
type Describer interface {
	// Describe renders the vCPU state; insn holds the bytes of the
	// instruction at RIP when KVM supplied them.
	Describe(cpu *kvm.VCPU, insn []byte) string
}

// Emulator handles what the host's KVM could not: instructions its emulator
// fails on, and hypercalls that never complete. The instruction fallback
// (package vcpu/fallback) implements it. Only hosts whose KVM emulates
// guest kernel code need one (kvm_pvm); elsewhere an emulation failure is
// the guest's or KVM's problem and is reported, not worked around.
type Emulator interface {
	Describer
	// Emulate performs the instruction at RIP that KVM reported as an
	// emulation failure; insn holds its bytes when KVM supplied them. It
	// returns an identifier of the instruction for counting.
	Emulate(cpu *kvm.VCPU, insn []byte) (op uint8, err error)
	// Unstick is called on a vCPU that has not exited for a while; it
	// returns an op and true if it found and resolved a known hang, such as
	// a hypercall the host never completes.
	Unstick(cpu *kvm.VCPU) (op uint8, ok bool, err error)
	// WriteMSR completes a guest WRMSR that an MSR filter sent to
	// userspace; false fails it with a #GP.
	WriteMSR(cpu *kvm.VCPU, index uint32, value uint64) (bool, error)
	// Debug handles KVM_EXIT_DEBUG, which only happens once the Emulator
	// has set breakpoints: its own, and the guest's own #DB that KVM then
	// intercepts too, which it must hand back to the guest. It returns the
	// op to count and false if it could do neither.
	Debug(cpu *kvm.VCPU, d kvm.DebugExit) (op uint8, ok bool, err error)
}

// Config describes one vCPU's exit handling.
type Config struct {
	// CPU is the KVM vCPU, already configured (registers, CPUID, MSRs).
	CPU *kvm.VCPU
	// PIO and MMIO are the buses exits are dispatched to.
	PIO, MMIO *devices.Bus
	// Emulator, if not nil, handles emulation failures and stuck vCPUs.
	// Without one, an emulation failure ends the VM with a report.
	Emulator Emulator
	// Describer renders the vCPU state in reports of unhandled exits; nil
	// means the Emulator's, and without either the report has RIP, RSP
	// and RFLAGS.
	Describer Describer
	// Observer, if not nil, sees every exit (statistics, tracing).
	Observer Observer
	// Sampler, if not nil, receives the guest RIP each time Sample is
	// answered (package vcpu/profile).
	Sampler Sampler
}

// Sampler receives samples of where a vCPU's guest code is running.
type Sampler interface {
	// Sample records that vCPU vcpu was at guest-virtual address rip. It
	// is called on the vCPU's thread, outside KVM_RUN.
	Sample(vcpu int, rip uint64)
}

// VCPU runs one virtual CPU.
type VCPU struct {
	cpu  *kvm.VCPU
	id   int
	run  *kvm.RunData
	page []byte
	pio  *devices.Bus
	mmio *devices.Bus
	emu  Emulator
	desc Describer
	obs  Observer
	smp  Sampler
	rec  Exit

	tid      atomic.Int32
	stopping atomic.Bool
	probe    atomic.Bool
	sample   atomic.Bool

	// exits counts exits by kind; ops counts fallbacks by op. Written by
	// the vCPU thread only, read by anyone: atomics keep readers race-free.
	exits [NumKinds]atomic.Uint64
	ops   [256]atomic.Uint64
	kicks atomic.Uint64
}

// New prepares a vCPU for Run.
func New(cfg Config) *VCPU {
	v := &VCPU{
		cpu:  cfg.CPU,
		id:   cfg.CPU.ID(),
		run:  cfg.CPU.RunData(),
		page: cfg.CPU.RunPage(),
		pio:  cfg.PIO,
		mmio: cfg.MMIO,
		emu:  cfg.Emulator,
		desc: cfg.Describer,
		obs:  cfg.Observer,
		smp:  cfg.Sampler,
	}
	if v.desc == nil && v.emu != nil {
		v.desc = v.emu
	}
	v.rec.VCPU = v.id
	return v
}

// ID returns the vCPU index.
func (v *VCPU) ID() int { return v.id }

// KVM returns the underlying KVM vCPU.
func (v *VCPU) KVM() *kvm.VCPU { return v.cpu }

// Exits returns how many exits of kind k this vCPU has taken.
func (v *VCPU) Exits(k Kind) uint64 { return v.exits[k].Load() }

// TotalExits returns how many exits to userspace this vCPU has taken.
func (v *VCPU) TotalExits() uint64 {
	var n uint64
	for i := range v.exits {
		n += v.exits[i].Load()
	}
	return n
}

// Fallbacks returns how many times the emulator handled op on this vCPU.
func (v *VCPU) Fallbacks(op uint8) uint64 { return v.ops[op].Load() }

// Kicks returns how many times this vCPU was kicked.
func (v *VCPU) Kicks() uint64 { return v.kicks.Load() }

// immediateExit addresses the 32-bit word of kvm_run holding
// request_interrupt_window (byte 0) and immediate_exit (byte 1), so both can
// be changed atomically from any thread.
func (v *VCPU) immediateExit() *uint32 {
	return (*uint32)(unsafe.Pointer(&v.page[0]))
}

const immediateExitBit = 1 << 8 // byte 1 of the word, little-endian

// Kick makes the vCPU leave KVM_RUN promptly, whether it is running guest
// code, halted in the guest, or about to enter. It is safe from any
// goroutine and does not wait.
func (v *VCPU) Kick() {
	v.kicks.Add(1)
	atomic.OrUint32(v.immediateExit(), immediateExitBit)
	if tid := v.tid.Load(); tid != 0 {
		// ESRCH only means the thread has already gone: Run returned.
		_ = unix.Tgkill(unix.Getpid(), int(tid), KickSignal)
	}
}

// Stop asks Run to return at its next opportunity and kicks the vCPU.
func (v *VCPU) Stop() {
	v.stopping.Store(true)
	v.Kick()
}

// Probe asks the vCPU to check, outside KVM_RUN, whether it is stuck on a
// known hang the Emulator can resolve (see Emulator.Unstick).
func (v *VCPU) Probe() {
	v.probe.Store(true)
	v.Kick()
}

// Sample asks the vCPU to report its guest RIP to the Sampler: it is
// kicked, and reads its registers before it enters KVM_RUN again. Without a
// Sampler it does nothing.
func (v *VCPU) Sample() {
	if v.smp == nil {
		return
	}
	v.sample.Store(true)
	v.Kick()
}

// Run runs the vCPU on the calling goroutine, locked to its OS thread, until
// Stop is called (it then returns nil) or the guest does something that ends
// the VM: a triple fault or a system event (*GuestEvent), or an exit gvmm
// cannot handle (*UnhandledExitError). The OS thread is not unlocked: it
// exits with the goroutine, taking its signal state with it.
func (v *VCPU) Run() error {
	runtime.LockOSThread()
	v.tid.Store(int32(unix.Gettid()))
	defer v.tid.Store(0)

	var last int64
	if v.obs != nil {
		last = nanotime()
	}
	for {
		if v.stopping.Load() {
			return nil
		}
		err := v.cpu.Run()
		var start int64
		if v.obs != nil {
			start = nanotime()
		}
		var kind Kind
		if err != nil {
			if !errors.Is(err, unix.EINTR) && !errors.Is(err, unix.EAGAIN) {
				return fmt.Errorf("vCPU %d: KVM_RUN: %w", v.id, err)
			}
			// A signal (Go's preemption, or a kick) interrupted KVM_RUN:
			// clear immediate_exit and go round again (api.rst: "KVM_RUN
			// ... -EINTR").
			atomic.AndUint32(v.immediateExit(), ^uint32(immediateExitBit))
			kind = KindIntr
			v.rec.Reason, v.rec.Addr, v.rec.Size, v.rec.Slot = 0, 0, 0, -1
			if v.sample.Swap(false) {
				// Errors only lose a sample: the next KVM_RUN reports
				// anything wrong with the vCPU.
				if r, err := v.cpu.Regs(); err == nil {
					v.smp.Sample(v.id, r.RIP)
				}
			}
			if v.probe.Swap(false) && v.emu != nil {
				resolved, err := v.unstick()
				if err != nil {
					return err
				}
				if resolved {
					// Counted and observed as the fallback it was.
					kind = KindFallback
				}
			}
		} else {
			kind, err = v.dispatch()
			if err != nil {
				// The exit that ends the VM is counted and observed too.
				v.exits[kind].Add(1)
				if v.obs != nil {
					v.rec.Kind, v.rec.Start, v.rec.RunNs, v.rec.HandleNs = kind, start, start-last, nanotime()-start
					v.obs.Observe(&v.rec)
				}
				return err
			}
		}
		v.exits[kind].Add(1)
		if v.obs != nil {
			end := nanotime()
			v.rec.Kind = kind
			v.rec.Start = start
			v.rec.RunNs = start - last
			v.rec.HandleNs = end - start
			v.obs.Observe(&v.rec)
			last = end
		}
	}
}

func (v *VCPU) unstick() (bool, error) {
	op, ok, err := v.emu.Unstick(v.cpu)
	if err != nil {
		return false, fmt.Errorf("vCPU %d: %w", v.id, err)
	}
	if ok {
		v.ops[op].Add(1)
		v.rec.Op = op
	}
	return ok, nil
}

// dispatch handles the exit KVM_RUN just reported.
func (v *VCPU) dispatch() (Kind, error) {
	run := v.run
	v.rec.Reason = run.ExitReason
	switch run.ExitReason {
	case kvm.ExitIO:
		return v.handleIO()
	case kvm.ExitMMIO:
		return v.handleMMIO()
	case kvm.ExitInternalError:
		return v.handleInternalError()
	case kvm.ExitShutdown:
		// A triple fault (or an INIT the guest sent itself): real hardware
		// resets, and so does the guest's view of it.
		v.rec.Slot = -1
		return KindShutdown, &GuestEvent{VCPU: v.id, Event: EventTripleFault}
	case kvm.ExitSystemEvent:
		v.rec.Slot = -1
		switch run.SystemEvent() {
		case kvm.SystemEventShutdown:
			return KindSystemEvent, &GuestEvent{VCPU: v.id, Event: EventPowerOff}
		case kvm.SystemEventReset:
			return KindSystemEvent, &GuestEvent{VCPU: v.id, Event: EventReset}
		default:
			return KindSystemEvent, &GuestEvent{VCPU: v.id, Event: EventCrash}
		}
	case kvm.ExitX86WRMSR:
		v.rec.Slot = -1
		index, value, _ := v.run.MSR()
		v.rec.Addr, v.rec.Data = uint64(index), value
		ok := false
		if v.emu != nil {
			var err error
			if ok, err = v.emu.WriteMSR(v.cpu, index, value); err != nil {
				return KindMSR, v.unhandledErr(fmt.Sprintf("WRMSR %#x", index), nil, err)
			}
		}
		v.run.SetMSRResult(!ok, 0)
		return KindMSR, nil
	case kvm.ExitDebug:
		v.rec.Slot = -1
		d := v.run.Debug()
		v.rec.Addr = d.PC
		if v.emu != nil {
			op, ok, err := v.emu.Debug(v.cpu, d)
			if err != nil {
				return KindFallback, v.unhandledErr(fmt.Sprintf("debug exit at %#x (exception %d, DR6 %#x)", d.PC, d.Exception, d.DR6), nil, err)
			}
			if ok {
				v.ops[op].Add(1)
				v.rec.Op = op
				return KindFallback, nil
			}
		}
		return KindOther, v.unhandled(fmt.Sprintf("debug exit at %#x (exception %d, DR6 %#x)", d.PC, d.Exception, d.DR6))
	case kvm.ExitHLT:
		// Only without an in-kernel local APIC; the guest is idle. Going
		// round again is correct, if not efficient.
		v.rec.Slot = -1
		return KindHLT, nil
	case kvm.ExitIRQWindowOpen, kvm.ExitIntr:
		v.rec.Slot = -1
		return KindOther, nil
	default:
		v.rec.Slot = -1
		return KindOther, v.unhandled("unhandled exit")
	}
}

// handleIO dispatches KVM_EXIT_IO. String I/O (rep ins/outs) arrives as one
// exit with count > 1 and the data for all repetitions in the run page.
func (v *VCPU) handleIO() (Kind, error) {
	dir, size, port, count, off := v.run.IO()
	n := uint64(size) * uint64(count)
	if (size != 1 && size != 2 && size != 4) || off > uint64(len(v.page)) || n > uint64(len(v.page))-off {
		return KindOther, v.unhandled(fmt.Sprintf("malformed IO exit: size %d count %d offset %d", size, count, off))
	}
	data := v.page[off : off+n]
	dev, devOff, slot, ok := v.pio.Lookup(uint64(port))
	kind := KindIOOut
	if dir == kvm.IOIn {
		kind = KindIOIn
	}
	for i := uint64(0); i < n; i += uint64(size) {
		d := data[i : i+uint64(size)]
		switch {
		case !ok && kind == KindIOIn:
			// Nothing decodes the port: the ISA bus floats high.
			for j := range d {
				d[j] = 0xFF
			}
		case !ok:
		case kind == KindIOIn:
			dev.Read(devOff, d)
		default:
			dev.Write(devOff, d)
		}
	}
	if v.obs != nil {
		v.rec.Addr, v.rec.Size, v.rec.Count, v.rec.Slot, v.rec.Offset = uint64(port), size, count, -1, 0
		if ok {
			v.rec.Slot, v.rec.Offset = slot, devOff
		}
		v.rec.Data = le64(data)
	}
	return kind, nil
}

// handleMMIO dispatches KVM_EXIT_MMIO. Reads of addresses no device claims
// return all ones, as an unclaimed bus would.
func (v *VCPU) handleMMIO() (Kind, error) {
	addr, buf, length, isWrite := v.run.MMIO()
	if length == 0 || length > 8 {
		return KindOther, v.unhandled(fmt.Sprintf("malformed MMIO exit: length %d", length))
	}
	d := buf[:length]
	dev, devOff, slot, ok := v.mmio.Lookup(addr)
	kind := KindMMIORead
	if isWrite {
		kind = KindMMIOWrite
	}
	switch {
	case !ok && !isWrite:
		for j := range d {
			d[j] = 0xFF
		}
	case !ok:
	case isWrite:
		dev.Write(devOff, d)
	default:
		dev.Read(devOff, d)
	}
	if v.obs != nil {
		v.rec.Addr, v.rec.Size, v.rec.Count, v.rec.Slot, v.rec.Offset = addr, uint8(length), 1, -1, 0
		if ok {
			v.rec.Slot, v.rec.Offset = slot, devOff
		}
		v.rec.Data = le64(d)
	}
	return kind, nil
}

// handleInternalError hands emulation failures to the Emulator, if there is
// one; otherwise, and for the other suberrors, the VM ends with a report
// that carries the instruction bytes KVM supplied.
func (v *VCPU) handleInternalError() (Kind, error) {
	v.rec.Slot = -1
	sub, _ := v.run.Internal()
	insn, _ := v.run.EmulationFailure()
	if sub != kvm.InternalErrorEmulation || v.emu == nil {
		return KindInternalError, v.unhandledErr(fmt.Sprintf("internal error, suberror %d (%s)", sub, suberrorName(sub)), insn, nil)
	}
	op, err := v.emu.Emulate(v.cpu, insn)
	if err != nil {
		return KindInternalError, v.unhandledErr("emulation failure the fallback cannot handle", insn, err)
	}
	v.ops[op].Add(1)
	v.rec.Op = op
	return KindFallback, nil
}

func (v *VCPU) unhandled(what string) error {
	return v.unhandledErr(what, nil, nil)
}

func (v *VCPU) unhandledErr(what string, insn []byte, cause error) error {
	e := &UnhandledExitError{VCPU: v.id, Reason: v.run.ExitReason, What: what, Err: cause}
	if v.desc != nil {
		e.State = v.desc.Describe(v.cpu, insn)
	} else if r, err := v.cpu.Regs(); err == nil {
		e.State = fmt.Sprintf("RIP %#x RSP %#x RFLAGS %#x", r.RIP, r.RSP, r.RFLAGS)
	}
	return e
}

func suberrorName(s uint32) string {
	switch s {
	case kvm.InternalErrorEmulation:
		return "emulation failure"
	case kvm.InternalErrorSimulEx:
		return "exception while delivering an exception"
	case kvm.InternalErrorDeliveryEv:
		return "event delivery failed"
	case kvm.InternalErrorUnexpectedExit:
		return "unexpected exit"
	}
	return "unknown"
}

// le64 returns up to the first 8 bytes of b as a little-endian number.
func le64(b []byte) uint64 {
	if len(b) > 8 {
		b = b[:8]
	}
	var x uint64
	for i := len(b) - 1; i >= 0; i-- {
		x = x<<8 | uint64(b[i])
	}
	return x
}
