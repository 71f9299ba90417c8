package vcpu

import (
	"encoding/binary"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gvmm/gvmm/devices"
	"github.com/gvmm/gvmm/kvm/kvmtest"
)

// access is one device access seen by recorder.
type access struct {
	write  bool
	offset uint64
	data   []byte
}

// recorder is a device that logs accesses and answers reads with a fixed
// byte.
type recorder struct {
	mu    sync.Mutex
	log   []access
	reply byte
	onW   func(data []byte)
}

func (r *recorder) Read(offset uint64, data []byte) {
	for i := range data {
		data[i] = r.reply
	}
	r.mu.Lock()
	r.log = append(r.log, access{false, offset, append([]byte(nil), data...)})
	r.mu.Unlock()
}

func (r *recorder) Write(offset uint64, data []byte) {
	r.mu.Lock()
	r.log = append(r.log, access{true, offset, append([]byte(nil), data...)})
	r.mu.Unlock()
	if r.onW != nil {
		r.onW(data)
	}
}

// exitPort returns a device for port 0xF4 that stops v with the written value.
func exitPort(v **VCPU, got *uint32) *recorder {
	return &recorder{onW: func(d []byte) {
		var b [4]byte
		copy(b[:], d)
		*got = binary.LittleEndian.Uint32(b[:])
		(*v).Stop()
	}}
}

func movRBX(addr uint64) []byte {
	b := []byte{0x48, 0xBB}
	return binary.LittleEndian.AppendUint64(b, addr)
}

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// TestDispatch runs a CPL3 guest through port writes and reads, MMIO writes
// and reads, an unclaimed port and the exit port, and checks what each
// device saw.
func TestDispatch(t *testing.T) {
	code := cat(
		[]byte{0xB0, 0x41, 0xE6, 0x80}, // mov al, 0x41; out 0x80, al
		[]byte{0xE4, 0x81},             // in al, 0x81
		movRBX(kvmtest.MMIOAddr),       // mov rbx, MMIOAddr
		[]byte{0x88, 0x03},             // mov [rbx], al
		[]byte{0x8A, 0x43, 0x08},       // mov al, [rbx+8]
		[]byte{0xE6, 0x82},             // out 0x82, al
		[]byte{0xE4, 0x99},             // in al, 0x99 (nobody there)
		[]byte{0xE6, 0xF4},             // out 0xf4, al
	)
	g := kvmtest.New(t, code, kvmtest.Options{User: true})
	pio, mmio := &recorder{reply: 0x5A}, &recorder{reply: 0x77}
	var v *VCPU
	var exitValue uint32
	var pioBus, mmioBus devices.Bus
	require.NoError(t, pioBus.Insert(pio, "rec", 0x80, 3))
	require.NoError(t, pioBus.Insert(exitPort(&v, &exitValue), "exit", 0xF4, 1))
	require.NoError(t, mmioBus.Insert(mmio, "mrec", kvmtest.MMIOAddr, 16))
	v = New(Config{CPU: g.VCPU, PIO: &pioBus, MMIO: &mmioBus})

	require.NoError(t, v.Run())
	assert.Equal(t, uint32(0xFF), exitValue, "an unclaimed port reads as all ones")
	assert.Equal(t, []access{
		{true, 0, []byte{0x41}},
		{false, 1, []byte{0x5A}},
		{true, 2, []byte{0x77}},
	}, pio.log)
	assert.Equal(t, []access{
		{true, 0, []byte{0x5A}},
		{false, 8, []byte{0x77}},
	}, mmio.log)
	assert.Equal(t, uint64(3), v.Exits(KindIOOut))
	assert.Equal(t, uint64(2), v.Exits(KindIOIn))
	assert.Equal(t, uint64(1), v.Exits(KindMMIOWrite))
	assert.Equal(t, uint64(1), v.Exits(KindMMIORead))
}

// TestStringIO checks that "rep outsb" delivers every byte, in order.
func TestStringIO(t *testing.T) {
	code := cat(
		[]byte{0x48, 0xBE}, binary.LittleEndian.AppendUint64(nil, kvmtest.DataAddr), // mov rsi, DataAddr
		[]byte{0xB9, 0x04, 0x00, 0x00, 0x00}, // mov ecx, 4
		[]byte{0x66, 0xBA, 0x80, 0x00},       // mov dx, 0x80
		[]byte{0xF3, 0x6E},                   // rep outsb
		[]byte{0xE6, 0xF4},                   // out 0xf4, al
	)
	g := kvmtest.New(t, code, kvmtest.Options{User: true})
	_, err := g.Mem.WriteAt([]byte("gvmm"), kvmtest.DataAddr)
	require.NoError(t, err)
	rec := &recorder{}
	var v *VCPU
	var exitValue uint32
	var pioBus, mmioBus devices.Bus
	require.NoError(t, pioBus.Insert(rec, "rec", 0x80, 1))
	require.NoError(t, pioBus.Insert(exitPort(&v, &exitValue), "exit", 0xF4, 1))
	v = New(Config{CPU: g.VCPU, PIO: &pioBus, MMIO: &mmioBus})
	require.NoError(t, v.Run())
	var got []byte
	for _, a := range rec.log {
		got = append(got, a.data...)
	}
	assert.Equal(t, "gvmm", string(got))
}

// TestTripleFault runs ud2 with an empty IDT: #UD cannot be delivered, nor
// the #DF after it, so the CPU shuts down.
func TestTripleFault(t *testing.T) {
	g := kvmtest.New(t, []byte{0x0F, 0x0B}, kvmtest.Options{User: true})
	var pioBus, mmioBus devices.Bus
	v := New(Config{CPU: g.VCPU, PIO: &pioBus, MMIO: &mmioBus})
	err := v.Run()
	var ev *GuestEvent
	require.True(t, errors.As(err, &ev), "got %v", err)
	assert.Equal(t, EventTripleFault, ev.Event)
	assert.Equal(t, uint64(1), v.Exits(KindShutdown))
}

// TestStopHalted stops a vCPU halted in the guest with interrupts off: only
// a kick (signal plus immediate_exit) gets it out of KVM_RUN.
func TestStopHalted(t *testing.T) {
	// cli; hlt; jmp back to hlt
	g := kvmtest.New(t, []byte{0xFA, 0xF4, 0xEB, 0xFD}, kvmtest.Options{IRQChip: true})
	var pioBus, mmioBus devices.Bus
	v := New(Config{CPU: g.VCPU, PIO: &pioBus, MMIO: &mmioBus})
	done := make(chan error, 1)
	go func() { done <- v.Run() }()

	// Kicks that are not stops leave it running.
	time.Sleep(100 * time.Millisecond)
	v.Kick()
	v.Kick()
	select {
	case err := <-done:
		t.Fatalf("vCPU returned after a kick: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	start := time.Now()
	v.Stop()
	select {
	case err := <-done:
		require.NoError(t, err)
		assert.Less(t, time.Since(start), time.Second)
	case <-time.After(5 * time.Second):
		t.Fatal("a halted vCPU did not stop within 5 s")
	}
	assert.GreaterOrEqual(t, v.Exits(KindIntr), uint64(2), "each kick interrupts KVM_RUN")
	assert.Equal(t, uint64(3), v.Kicks())
}

// TestStopBeforeRun checks that a Stop issued before Run starts is not lost.
func TestStopBeforeRun(t *testing.T) {
	g := kvmtest.New(t, []byte{0xEB, 0xFE}, kvmtest.Options{User: true}) // jmp .
	var pioBus, mmioBus devices.Bus
	v := New(Config{CPU: g.VCPU, PIO: &pioBus, MMIO: &mmioBus})
	v.Stop()
	done := make(chan error, 1)
	go func() { done <- v.Run() }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Stop before Run was lost")
	}
}

// TestStopSpinning stops a vCPU spinning at CPL3 (never exiting on its own).
func TestStopSpinning(t *testing.T) {
	g := kvmtest.New(t, []byte{0xEB, 0xFE}, kvmtest.Options{User: true}) // jmp .
	var pioBus, mmioBus devices.Bus
	v := New(Config{CPU: g.VCPU, PIO: &pioBus, MMIO: &mmioBus})
	done := make(chan error, 1)
	go func() { done <- v.Run() }()
	time.Sleep(50 * time.Millisecond)
	v.Stop()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("a spinning vCPU did not stop within 5 s")
	}
}

func TestLE64(t *testing.T) {
	assert.Equal(t, uint64(0), le64(nil))
	assert.Equal(t, uint64(0x41), le64([]byte{0x41}))
	assert.Equal(t, uint64(0x0403020100), le64([]byte{0, 1, 2, 3, 4}))
	assert.Equal(t, uint64(0x0706050403020100), le64([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}), "string I/O: the first 8 bytes")
}

// ripSampler records samples for TestSample.
type ripSampler struct{ got chan [2]uint64 }

func (s *ripSampler) Sample(vcpu int, rip uint64) { s.got <- [2]uint64{uint64(vcpu), rip} }

// TestSample samples a vCPU spinning at CPL3: each Sample yields the RIP of
// its `jmp .` and costs one kick.
func TestSample(t *testing.T) {
	g := kvmtest.New(t, []byte{0x90, 0xEB, 0xFE}, kvmtest.Options{User: true}) // nop; jmp .
	var pioBus, mmioBus devices.Bus
	s := &ripSampler{got: make(chan [2]uint64, 8)}
	v := New(Config{CPU: g.VCPU, PIO: &pioBus, MMIO: &mmioBus, Sampler: s})
	done := make(chan error, 1)
	go func() { done <- v.Run() }()
	for range 3 {
		time.Sleep(20 * time.Millisecond)
		v.Sample()
		select {
		case got := <-s.got:
			assert.Equal(t, [2]uint64{0, kvmtest.CodeAddr + 1}, got)
		case <-time.After(5 * time.Second):
			t.Fatal("no sample within 5 s")
		}
	}
	v.Stop()
	require.NoError(t, <-done)
	assert.Equal(t, uint64(4), v.Kicks(), "three samples and a stop")

	// Without a Sampler, Sample does nothing, not even kick.
	v2 := New(Config{CPU: g.VCPU, PIO: &pioBus, MMIO: &mmioBus})
	v2.Sample()
	assert.Zero(t, v2.Kicks())
}
