package fallback

import (
	"encoding/binary"
	"errors"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/gvmm/gvmm/kvm"
	"github.com/gvmm/gvmm/kvm/kvmtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// code concatenates instruction encodings.
func code(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
func le64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

// Instruction encodings used by the test guests (SDM vol. 2).
var (
	outAL = []byte{0xE6, 0xF4} // out $0xf4, %al
	hlt   = []byte{0xF4}
	// movRAX and movRBX load a 64-bit immediate (REX.W B8+r).
	movRAX = func(v uint64) []byte { return code([]byte{0x48, 0xB8}, le64(v)) }
	movRBX = func(v uint64) []byte { return code([]byte{0x48, 0xBB}, le64(v)) }
	movRCX = func(v uint64) []byte { return code([]byte{0x48, 0xB9}, le64(v)) }
	movRDX = func(v uint64) []byte { return code([]byte{0x48, 0xBA}, le64(v)) }
	// Absolute addressing: ModRM rm=100 with a SIB of no base, no index:
	// [disp32].
	abs      = func(modrmReg byte, addr uint32) []byte { return code([]byte{modrmReg<<3 | 0x04, 0x25}, le32(addr)) }
	seteAL   = []byte{0x0F, 0x94, 0xC0}       // sete %al
	cmpRAXBX = []byte{0x48, 0x39, 0xD8}       // cmp %rbx,%rax
	readAC   = []byte{0x9C, 0x58, 0x48, 0xC1, // pushfq; pop %rax; shr $18,%rax; and $1,%al
		0xE8, 0x12, 0x24, 0x01}
)

const data = kvmtest.DataAddr

// kvmCase is a tiny CPL0 guest that executes instructions the host may fail
// to emulate and reports results with "out %al, $0xf4" before hlt.
var kvmCases = []struct {
	name string
	code []byte
	want []byte
}{
	{
		name: "popcnt",
		code: code(
			movRAX(0xF0F0_F0F0_F0F0_F0F1),
			[]byte{0xF3, 0x48, 0x0F, 0xB8, 0xD8}, // popcnt %rax,%rbx
			[]byte{0x88, 0xD8}, outAL,            // mov %bl,%al
			[]byte{0xC7, 0x04, 0x25}, le32(data), le32(0x00FF_00F0), // movl $0xff00f0, data
			[]byte{0xF3, 0x0F, 0xB8}, abs(3, data), // popcnt data,%ebx
			[]byte{0x88, 0xD8}, outAL,
			[]byte{0x31, 0xC9},                   // xor %ecx,%ecx
			[]byte{0x66, 0xF3, 0x0F, 0xB8, 0xD9}, // popcnt %cx,%bx
			seteAL, outAL,
			hlt),
		want: []byte{33, 12, 1},
	},
	{
		name: "clac-stac",
		code: code(
			[]byte{0x0F, 0x01, 0xCB}, readAC, outAL, // stac
			[]byte{0x0F, 0x01, 0xCA}, readAC, outAL, // clac
			hlt),
		want: []byte{1, 0},
	},
	{
		name: "fwait",
		code: code([]byte{0x9B, 0xB0, 0x07}, outAL, hlt), // fwait; mov $7,%al
		want: []byte{7},
	},
	{
		name: "fxsave-fxrstor",
		code: code(
			movRBX(0x1122_3344_5566_7788),
			[]byte{0x48, 0x89}, abs(3, data+0x400), // mov %rbx,data+0x400
			[]byte{0xF3, 0x0F, 0x6F}, abs(0, data+0x400), // movdqu data+0x400,%xmm0
			[]byte{0x48, 0x0F, 0xAE}, abs(0, data), // fxsave64 data
			[]byte{0x48, 0x8B}, abs(0, data+160), // mov data+160,%rax (XMM0)
			cmpRAXBX, seteAL, outAL,
			movRBX(0xCAFE_BABE_DEAD_BEEF),
			[]byte{0x48, 0x89}, abs(3, data+160), // mov %rbx,data+160
			[]byte{0x48, 0x0F, 0xAE}, abs(1, data), // fxrstor64 data
			[]byte{0xF3, 0x0F, 0x7F}, abs(0, data+0x400), // movdqu %xmm0,data+0x400
			[]byte{0x48, 0x8B}, abs(0, data+0x400), // mov data+0x400,%rax
			cmpRAXBX, seteAL, outAL,
			hlt),
		want: []byte{1, 1},
	},
	{
		name: "cmpxchg16b",
		code: code(
			movRAX(1), []byte{0x48, 0x89}, abs(0, data), // data = 1
			movRAX(2), []byte{0x48, 0x89}, abs(0, data+8), // data+8 = 2
			movRDX(2), movRAX(1), movRCX(4), movRBX(3),
			[]byte{0xF0, 0x48, 0x0F, 0xC7}, abs(1, data), // lock cmpxchg16b data: equal
			seteAL, outAL,
			[]byte{0x48, 0x8B}, abs(0, data), cmpRAXBX, seteAL, outAL, // data == 3
			movRDX(2), movRAX(1),
			[]byte{0xF0, 0x48, 0x0F, 0xC7}, abs(1, data), // not equal now
			[]byte{0x0F, 0x94, 0xC1},           // sete %cl
			cmpRAXBX, []byte{0x0F, 0x94, 0xC2}, // RAX loaded with 3: sete %dl
			[]byte{0x88, 0xC8}, outAL, // mov %cl,%al
			[]byte{0x88, 0xD0}, outAL, // mov %dl,%al
			hlt),
		want: []byte{1, 1, 0, 1},
	},
}

// forceMarker, written to port 0xF4, asks kvmRun to emulate the next
// instruction with Emulate, whether or not KVM could.
const forceMarker = 0xEE

// kvmRun runs a test guest to hlt, emulating the instructions KVM fails to
// emulate, and returns the bytes written to port 0xF4 (but forceMarker) and
// the instructions the fallback emulated. With useCap, the
// emulation-failure exits carry the instruction bytes; it reports whether
// any did.
func kvmRun(t *testing.T, g *kvmtest.Guest, useCap bool) (out []byte, ops []Op, capBytes bool) {
	t.Helper()
	run := g.VCPU.RunData()
	for range 10000 {
		err := g.VCPU.Run()
		if errors.Is(err, unix.EINTR) {
			continue
		}
		require.NoError(t, err)
		switch run.ExitReason {
		case kvm.ExitIO:
			dir, size, port, count, off := run.IO()
			require.Equal(t, uint8(kvm.IOOut), dir)
			require.Equal(t, uint16(0xF4), port)
			require.Equal(t, uint8(1), size)
			require.Equal(t, uint32(1), count)
			v := g.VCPU.RunPage()[off]
			if v != forceMarker {
				out = append(out, v)
				continue
			}
			completeIO(t, g)
			op, err := Emulate(g.VCPU, g.Mem, nil)
			require.NoError(t, err, Describe(g.VCPU, g.Mem, nil))
			ops = append(ops, op)
		case kvm.ExitHLT:
			return out, ops, capBytes
		case kvm.ExitInternalError:
			sub, _ := run.Internal()
			require.Equal(t, uint32(kvm.InternalErrorEmulation), sub, Describe(g.VCPU, g.Mem, nil))
			var insn []byte
			if useCap {
				b, ok := run.EmulationFailure()
				if ok {
					insn, capBytes = b, true
				}
			}
			op, err := Emulate(g.VCPU, g.Mem, insn)
			require.NoError(t, err, Describe(g.VCPU, g.Mem, insn))
			ops = append(ops, op)
		default:
			t.Fatalf("exit %s\n%s", kvm.ExitName(run.ExitReason), Describe(g.VCPU, g.Mem, nil))
		}
	}
	t.Fatalf("guest did not halt\n%s", Describe(g.VCPU, g.Mem, nil))
	return nil, nil, false
}

// completeIO finishes the port write the vCPU just exited with, without
// running any further guest instruction: KVM_RUN with immediate_exit set
// completes the pending operation and returns EINTR (api.rst, KVM_RUN:
// "the corresponding operations are complete (and guest state is
// consistent) only after userspace has re-entered the kernel with
// KVM_RUN"; immediate_exit). Until then the vCPU's registers are those
// before the OUT wherever KVM ran it in hardware (SVM and VMX defer the
// RIP update to the next KVM_RUN); where KVM's instruction emulator ran it
// (kvm_pvm at CPL0), RIP has already moved past it, and there is nothing
// left to complete.
func completeIO(t *testing.T, g *kvmtest.Guest) {
	t.Helper()
	run := g.VCPU.RunData()
	run.ImmediateExit = 1
	err := g.VCPU.Run()
	run.ImmediateExit = 0
	require.ErrorIs(t, err, unix.EINTR)
}

// enableEmulationFailureExits turns on KVM_CAP_EXIT_ON_EMULATION_FAILURE,
// skipping the test where the host lacks it.
func enableEmulationFailureExits(t *testing.T, g *kvmtest.Guest) {
	t.Helper()
	n, err := g.VM.CheckExtension(kvm.CapExitOnEmulationFailure)
	require.NoError(t, err)
	if n == 0 {
		t.Skip("KVM_CAP_EXIT_ON_EMULATION_FAILURE not supported")
	}
	require.NoError(t, g.VM.EnableCap(kvm.CapExitOnEmulationFailure, 1))
}

// nestedPVM reports a kvm_pvm host, where guest CPL0 code is emulated.
func nestedPVM() bool {
	_, err := os.Stat("/sys/module/kvm_pvm")
	return err == nil
}

// TestKVMInstructions runs each guest with instruction bytes from the exit
// (KVM_CAP_EXIT_ON_EMULATION_FAILURE) and fetched from guest memory. It
// exercises the fallback only on kvm_pvm, whose instruction emulator fails
// on these instructions. Elsewhere (hardware, or the emulated SVM host of
// make test) the instructions run in the guest and the test checks that
// the results are the same and that the fallback never ran; the
// fallback's own logic is covered by the unit tests on a fake CPU
// (emulate_test.go).
func TestKVMInstructions(t *testing.T) {
	for _, path := range []string{"cap", "fetch"} {
		for _, c := range kvmCases {
			t.Run(path+"/"+c.name, func(t *testing.T) {
				g := kvmtest.New(t, c.code, kvmtest.Options{})
				if path == "cap" {
					enableEmulationFailureExits(t, g)
				}
				out, ops, capBytes := kvmRun(t, g, path == "cap")
				assert.Equal(t, c.want, out)
				if !nestedPVM() {
					assert.Empty(t, ops, "this host runs the instructions itself")
				}
				t.Logf("fallback emulated %v (bytes from the exit: %v, kvm_pvm host: %v)", ops, capBytes, nestedPVM())
			})
		}
	}
}

// setIDT installs an IDT with vectors 0-31 in which only vector has a gate:
// a 64-bit interrupt gate (SDM vol. 3A section 6.14.1) to the code at
// CodeAddr+handler.
func setIDT(t *testing.T, g *kvmtest.Guest, vector int, handler uint64) {
	const idt = data + 0x1000
	var gates [32 * 16]byte
	off := kvmtest.CodeAddr + handler
	gate := gates[vector*16:]
	binary.LittleEndian.PutUint16(gate[0:], uint16(off))
	binary.LittleEndian.PutUint16(gate[2:], kvmtest.KernelCS)
	gate[5] = 0x8E // present, DPL0, 64-bit interrupt gate
	binary.LittleEndian.PutUint16(gate[6:], uint16(off>>16))
	binary.LittleEndian.PutUint32(gate[8:], uint32(off>>32))
	_, err := g.Mem.WriteAt(gates[:], idt)
	require.NoError(t, err)
	sr, err := g.VCPU.Sregs()
	require.NoError(t, err)
	sr.IDT = kvm.DTable{Base: idt, Limit: uint16(len(gates) - 1)}
	require.NoError(t, g.VCPU.SetSregs(sr))
}

// guestMem reads n bytes of test guest memory.
func guestMem(t *testing.T, g *kvmtest.Guest, gpa int64, n int) []byte {
	b := make([]byte, n)
	_, err := g.Mem.ReadAt(b, gpa)
	require.NoError(t, err)
	return b
}

// TestKVMForced runs fxsave and fxrstor through Emulate even where the host
// runs them itself (in hardware, or in kvm_pvm's instruction emulator),
// next to the same instruction run by the host, and compares the results:
// this checks the KVM_GET_XSAVE and KVM_SET_XSAVE paths against the real
// thing. The guest writes forceMarker just before each instruction Emulate
// must run; kvmRun completes that port write before it emulates.
func TestKVMForced(t *testing.T) {
	force := []byte{0xB0, forceMarker, 0xE6, 0xF4} // mov $0xee,%al; out
	setXMM := code(
		movRBX(0x1122_3344_5566_7788), []byte{0x48, 0x89}, abs(3, data+0x400),
		movRBX(0x99AA_BBCC_DDEE_FF00), []byte{0x48, 0x89}, abs(3, data+0x408),
		[]byte{0xF3, 0x0F, 0x6F}, abs(0, data+0x400), // movdqu data+0x400,%xmm0
		[]byte{0xF3, 0x0F, 0x6F}, abs(7, data+0x3F8), // movdqu data+0x3f8,%xmm7
	)
	fxsave64 := func(addr uint32) []byte { return code([]byte{0x48, 0x0F, 0xAE}, abs(0, addr)) }
	fxsave := func(addr uint32) []byte { return code([]byte{0x0F, 0xAE}, abs(0, addr)) }
	fxrstor64 := func(addr uint32) []byte { return code([]byte{0x48, 0x0F, 0xAE}, abs(1, addr)) }
	cases := []struct {
		name string
		code []byte
		want []Op
		// same: guest memory at data and data+0x200 must match for this
		// many bytes.
		same int
	}{
		{"fxsave64", code(setXMM, force, fxsave64(data), fxsave64(data+0x200), hlt), []Op{OpFxsave}, 416},
		{"fxsave", code(setXMM, force, fxsave(data), fxsave(data+0x200), hlt), []Op{OpFxsave}, 416},
		{"fxrstor64", code(setXMM, fxsave64(data),
			movRBX(0x0123_4567_89AB_CDEF), []byte{0x48, 0x89}, abs(3, data+160+16*3), // XMM3
			[]byte{0xC7, 0x04, 0x25}, le32(data+24), le32(0x1F80|0x6000), // MXCSR: RC = toward zero
			force, fxrstor64(data), fxsave64(data+0x200), hlt), []Op{OpFxrstor}, 416},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := kvmtest.New(t, c.code, kvmtest.Options{})
			_, ops, _ := kvmRun(t, g, false)
			assert.Equal(t, c.want, ops)
			assert.Equal(t, guestMem(t, g, data+0x200, c.same), guestMem(t, g, data, c.same))
			if c.name == "fxrstor64" { // the loaded state is the new one
				assert.Equal(t, le64(0x0123_4567_89AB_CDEF), guestMem(t, g, data+0x200+160+16*3, 8))
				assert.Equal(t, le32(0x7F80), guestMem(t, g, data+0x200+24, 4))
			}
		})
	}

	t.Run("fxsave64-misaligned", func(t *testing.T) {
		// The #GP handler reports the error code and the low byte of the
		// faulting RIP, then 0xD0, and halts.
		const handler = 0x200
		main := code(force, fxsave64(data+8), hlt)
		img := make([]byte, handler)
		copy(img, main)
		img = append(img, code(
			[]byte{0x48, 0x8B, 0x04, 0x24}, outAL, // mov (%rsp),%rax
			[]byte{0x48, 0x8B, 0x44, 0x24, 0x08}, outAL, // mov 8(%rsp),%rax
			[]byte{0xB0, 0xD0}, outAL, hlt)...)
		g := kvmtest.New(t, img, kvmtest.Options{})
		setIDT(t, g, vecGP, handler)
		out, ops, _ := kvmRun(t, g, false)
		assert.Equal(t, []Op{OpFxsave}, ops)
		assert.Equal(t, []byte{0, byte(kvmtest.CodeAddr + len(force)), 0xD0}, out)
	})

	t.Run("fxsave64-page-fault", func(t *testing.T) {
		// The test guest maps 1 GiB: 0x40000000 is not mapped. The #PF
		// handler reports the error code, CR2 bits 24-31, then 0xD0.
		const handler = 0x200
		const unmapped = 0x4000_0000
		main := code([]byte{0x48, 0xBF}, le64(unmapped), force, // mov $unmapped,%rdi
			[]byte{0x48, 0x0F, 0xAE, 0x07}, hlt) // fxsave64 (%rdi)
		img := make([]byte, handler)
		copy(img, main)
		img = append(img, code(
			[]byte{0x48, 0x8B, 0x04, 0x24}, outAL, // mov (%rsp),%rax
			[]byte{0x0F, 0x20, 0xD0},              // mov %cr2,%rax
			[]byte{0x48, 0xC1, 0xE8, 0x18}, outAL, // shr $24,%rax
			[]byte{0xB0, 0xD0}, outAL, hlt)...)
		g := kvmtest.New(t, img, kvmtest.Options{})
		setIDT(t, g, vecPF, handler)
		out, ops, _ := kvmRun(t, g, false)
		assert.Equal(t, []Op{OpFxsave}, ops)
		assert.Equal(t, []byte{pfWrite, unmapped >> 24, 0xD0}, out)
	})
}

// TestKVMInt3 installs a #BP handler (64-bit interrupt gate, SDM vol. 3A
// section 6.14.1) that writes 0xBB to port 0xF4 and returns with iretq; the
// main code executes int3 and then writes 0x42. Both writes in order show
// that the handler ran and execution resumed after the int3. The fallback
// delivers the #BP only on kvm_pvm; elsewhere the CPU does, and the test
// checks that the fallback stayed out of the way (TestInt3 and
// TestDeliverInt3 cover its logic on a fake CPU).
func TestKVMInt3(t *testing.T) {
	for _, path := range []string{"cap", "fetch"} {
		t.Run(path, func(t *testing.T) {
			const handler = 0x100
			main := code([]byte{0xCC, 0xB0, 0x42}, outAL, hlt) // int3; mov $0x42,%al
			img := make([]byte, handler)
			copy(img, main)
			img = append(img, code([]byte{0xB0, 0xBB}, outAL, []byte{0x48, 0xCF})...) // mov $0xbb,%al; out; iretq
			g := kvmtest.New(t, img, kvmtest.Options{})
			if path == "cap" {
				enableEmulationFailureExits(t, g)
			}
			setIDT(t, g, vecBP, handler)

			out, ops, capBytes := kvmRun(t, g, path == "cap")
			assert.Equal(t, []byte{0xBB, 0x42}, out)
			regs, err := g.VCPU.Regs()
			require.NoError(t, err)
			assert.Equal(t, uint64(kvmtest.CodeAddr+len(main)), regs.RIP, "RIP after the final hlt")
			assert.Equal(t, uint64(kvmtest.StackTop), regs.RSP, "iretq restored the stack")
			if !nestedPVM() {
				assert.Empty(t, ops, "this host delivers #BP itself")
			}
			t.Logf("fallback emulated %v (bytes from the exit: %v, kvm_pvm host: %v)", ops, capBytes, nestedPVM())
		})
	}
}

// TestKVMClockPairing runs "vmcall" with EAX = KVM_HC_CLOCK_PAIRING. On
// kvm_pvm the vCPU never leaves it: the test kicks the vCPU thread with a
// signal every 20 ms (KVM_RUN returns EINTR) and calls SkipClockPairing, as
// the VMM does for a quiet vCPU. On hardware KVM completes the hypercall
// itself, and the test checks that the fallback did nothing: the skip
// itself only happens on kvm_pvm (TestSkipClockPairing covers it on a fake
// CPU). Either way the guest must get past it and report AL.
func TestKVMClockPairing(t *testing.T) {
	g := kvmtest.New(t, code(
		[]byte{0xB8, 0x09, 0x00, 0x00, 0x00}, // mov $9,%eax
		movRBX(data), []byte{0x31, 0xC9},     // xor %ecx,%ecx (KVM_CLOCK_PAIRING_WALLCLOCK)
		[]byte{0x0F, 0x01, 0xC1}, // vmcall
		outAL, hlt), kvmtest.Options{})

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid := unix.Gettid()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				// SIGURG is Go's preemption signal: harmless to the runtime.
				_ = unix.Tgkill(unix.Getpid(), tid, unix.SIGURG)
			}
		}
	}()

	run := g.VCPU.RunData()
	var out []byte
	skipped, kicks, viaExit := 0, 0, false
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		err := g.VCPU.Run()
		if errors.Is(err, unix.EINTR) {
			kicks++
			ok, err := SkipClockPairing(g.VCPU, g.Mem)
			require.NoError(t, err)
			if ok {
				skipped++
			}
			continue
		}
		require.NoError(t, err)
		switch run.ExitReason {
		case kvm.ExitIO:
			_, _, _, _, off := run.IO()
			out = append(out, g.VCPU.RunPage()[off])
			continue
		case kvm.ExitInternalError:
			op, err := Emulate(g.VCPU, g.Mem, nil)
			require.NoError(t, err, Describe(g.VCPU, g.Mem, nil))
			require.Equal(t, OpClockPairing, op)
			skipped, viaExit = skipped+1, true
			continue
		case kvm.ExitHLT:
		default:
			t.Fatalf("exit %s\n%s", kvm.ExitName(run.ExitReason), Describe(g.VCPU, g.Mem, nil))
		}
		break
	}
	require.Len(t, out, 1, "guest did not get past the vmcall\n%s", Describe(g.VCPU, g.Mem, nil))
	regs, err := g.VCPU.Regs()
	require.NoError(t, err)
	if !nestedPVM() {
		assert.Zero(t, skipped, "this host completes the hypercall itself")
	}
	if skipped > 0 {
		assert.Equal(t, 1, skipped)
		assert.Equal(t, uint64(1<<64-1000), regs.RAX, "-KVM_ENOSYS")
		assert.Equal(t, byte(0x18), out[0])
	}
	t.Logf("hypercall skipped by the fallback: %v (after %d kicks, from an emulation-failure exit: %v); RAX %#x (kvm_pvm host: %v)",
		skipped > 0, kicks, viaExit, regs.RAX, nestedPVM())
}
