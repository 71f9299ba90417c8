package devices

// TestExit is a test-exit port like QEMU's isa-debug-exit (iobase 0xF4,
// iosize 1 to 4): a guest under test writes a value to it to end the VM and
// report a result, for example from a test runner's shutdown path.
//
// A write of value v, the access's bytes taken little-endian (1, 2, 3 or 4
// of them; wider accesses use their low 4 bytes), calls exit(v), at any
// offset within the range the port was inserted with. The device only
// reports v: mapping it to a status is the VMM's business, and gvmm does it
// as QEMU does, exiting with status (v<<1)|1, so a guest can never produce
// status 0 and the VMM's own statuses stay distinguishable. Reads return 0.
//
// TestExit has no state and is safe for concurrent use.
type TestExit struct {
	exit func(value uint32)
}

// testExitMaxSize is the widest register the port has: isa-debug-exit's
// iosize is at most 4.
const testExitMaxSize = 4

// NewTestExit returns a test-exit port that calls exit with each value the
// guest writes. exit is called on the vCPU thread and may be called more
// than once (several vCPUs may write); it should arrange for the VM to stop
// and return promptly. A nil exit ignores writes.
func NewTestExit(exit func(value uint32)) *TestExit {
	if exit == nil {
		exit = func(uint32) {}
	}
	return &TestExit{exit: exit}
}

// Read implements Device.Read: the port reads as 0.
func (t *TestExit) Read(offset uint64, data []byte) {
	clear(data)
}

// Write implements Device.Write. An empty access (a malformed exit) is
// ignored.
func (t *TestExit) Write(offset uint64, data []byte) {
	if len(data) == 0 {
		return
	}
	var v uint32
	for i, b := range data[:min(len(data), testExitMaxSize)] {
		v |= uint32(b) << (8 * i)
	}
	t.exit(v)
}

// RegisterName implements RegisterNamer.
func (t *TestExit) RegisterName(offset uint64, write bool) string {
	return "EXIT"
}
