package fallback

import (
	"errors"
	"fmt"

	"github.com/gvmm/gvmm/kvm"
)

// fakeCPU is a vCPU in memory: registers, an XSAVE image, events, MSRs,
// debug registers, and a page table as a map from linear to guest-physical
// page addresses.
type fakeCPU struct {
	regs   kvm.Regs
	sregs  kvm.Sregs
	xsave  kvm.XSave
	events kvm.VCPUEvents
	msrs   map[uint32]uint64
	dbg    kvm.DebugRegs
	// guestDebug is the last KVM_SET_GUEST_DEBUG.
	guestDebug kvm.GuestDebug
	pages      map[uint64]uint64 // linear page -> guest-physical page
	ro         map[uint64]bool   // linear pages Translate reports read-only
	calls      map[string]int    // method -> number of calls
	fail       string            // a method that fails
}

var errFake = errors.New("fake ioctl failure")

func (c *fakeCPU) call(m string) error {
	c.calls[m]++
	if c.fail == m {
		return fmt.Errorf("%s: %w", m, errFake)
	}
	return nil
}

func (c *fakeCPU) Regs() (kvm.Regs, error)   { return c.regs, c.call("Regs") }
func (c *fakeCPU) Sregs() (kvm.Sregs, error) { return c.sregs, c.call("Sregs") }
func (c *fakeCPU) SetRegs(r kvm.Regs) error {
	if err := c.call("SetRegs"); err != nil {
		return err
	}
	c.regs = r
	return nil
}
func (c *fakeCPU) SetSregs(s kvm.Sregs) error {
	if err := c.call("SetSregs"); err != nil {
		return err
	}
	c.sregs = s
	return nil
}
func (c *fakeCPU) XSave() (*kvm.XSave, error) {
	x := c.xsave
	return &x, c.call("XSave")
}
func (c *fakeCPU) SetXSave(x *kvm.XSave) error {
	if err := c.call("SetXSave"); err != nil {
		return err
	}
	c.xsave = *x
	return nil
}
func (c *fakeCPU) VCPUEvents() (kvm.VCPUEvents, error) { return c.events, c.call("VCPUEvents") }
func (c *fakeCPU) SetVCPUEvents(e kvm.VCPUEvents) error {
	if err := c.call("SetVCPUEvents"); err != nil {
		return err
	}
	c.events = e
	return nil
}
func (c *fakeCPU) MSRs(m []kvm.MSREntry) error {
	if err := c.call("MSRs"); err != nil {
		return err
	}
	for i := range m {
		m[i].Data = c.msrs[m[i].Index]
	}
	return nil
}
func (c *fakeCPU) SetMSRs(m []kvm.MSREntry) error {
	if err := c.call("SetMSRs"); err != nil {
		return err
	}
	if c.msrs == nil {
		c.msrs = map[uint32]uint64{}
	}
	for _, e := range m {
		c.msrs[e.Index] = e.Data
	}
	return nil
}
func (c *fakeCPU) SetGuestDebug(d kvm.GuestDebug) error {
	if err := c.call("SetGuestDebug"); err != nil {
		return err
	}
	c.guestDebug = d
	return nil
}
func (c *fakeCPU) DebugRegs() (kvm.DebugRegs, error) { return c.dbg, c.call("DebugRegs") }
func (c *fakeCPU) SetDebugRegs(d kvm.DebugRegs) error {
	if err := c.call("SetDebugRegs"); err != nil {
		return err
	}
	c.dbg = d
	return nil
}
func (c *fakeCPU) Translate(gva uint64) (kvm.Translation, error) {
	t := kvm.Translation{LinearAddress: gva}
	if err := c.call("Translate"); err != nil {
		return t, err
	}
	if gpa, ok := c.pages[gva&^(pageSize-1)]; ok {
		t.PhysicalAddress = gpa | gva&(pageSize-1)
		t.Valid = 1
		if !c.ro[gva&^(pageSize-1)] {
			t.Writeable = 1
		}
	}
	return t, nil
}

// fakeMem is guest RAM [0, len(b)). Its backing array is page-aligned
// (large Go allocations are), as guest memory is.
type fakeMem struct{ b []byte }

func (m *fakeMem) Slice(gpa, n uint64) ([]byte, error) {
	if gpa > uint64(len(m.b)) || n > uint64(len(m.b))-gpa {
		return nil, fmt.Errorf("fake RAM: [%#x, +%#x) out of range", gpa, n)
	}
	return m.b[gpa : gpa+n], nil
}
func (m *fakeMem) ReadAt(p []byte, off int64) (int, error) {
	s, err := m.Slice(uint64(off), uint64(len(p)))
	if err != nil {
		return 0, err
	}
	return copy(p, s), nil
}
func (m *fakeMem) WriteAt(p []byte, off int64) (int, error) {
	s, err := m.Slice(uint64(off), uint64(len(p)))
	if err != nil {
		return 0, err
	}
	return copy(s, p), nil
}

// plainMem hides fakeMem's Slice method.
type plainMem struct{ m *fakeMem }

func (p plainMem) ReadAt(b []byte, off int64) (int, error)  { return p.m.ReadAt(b, off) }
func (p plainMem) WriteAt(b []byte, off int64) (int, error) { return p.m.WriteAt(b, off) }

// Layout of the fake guest.
const (
	fakeRAM  = 1 << 20 // bytes of RAM
	fakeRIP  = 0x1000  // where the instruction is
	fakeData = 0x8000  // a scratch page
	// fakeIdentity: linear pages below it are identity-mapped.
	fakeIdentity = 0x80000
)

// Code modes of newFake.
const (
	mode64   = 64
	mode32   = 32
	mode16   = 16
	modeReal = 0
)

// newFake returns a vCPU at CPL0 in the given mode with RIP = fakeRIP and
// the instruction bytes there, the low 512 KiB identity-mapped, and 1 MiB of
// RAM.
func newFake(mode int, insn []byte) (*fakeCPU, *fakeMem) {
	c := &fakeCPU{pages: map[uint64]uint64{}, ro: map[uint64]bool{}, calls: map[string]int{}}
	for p := uint64(0); p < fakeIdentity; p += pageSize {
		c.pages[p] = p
	}
	sr := &c.sregs
	sr.CS = kvm.Segment{Limit: 0xFFFF_FFFF, Selector: 0x10, Type: 0xB, Present: 1, S: 1, G: 1}
	sr.SS = kvm.Segment{Limit: 0xFFFF_FFFF, Selector: 0x18, Type: 0x3, Present: 1, S: 1, G: 1, DB: 1}
	sr.DS, sr.ES, sr.FS, sr.GS = sr.SS, sr.SS, sr.SS, sr.SS
	sr.CR4 = 1<<5 | cr4OSFXSR // PAE, OSFXSR
	switch mode {
	case mode64:
		sr.CR0 = cr0PE | cr0MP | 1<<31 // PE, MP, PG
		sr.EFER = 1<<8 | eferLMA
		sr.CS.L = 1
	case mode32:
		sr.CR0 = cr0PE | cr0MP
		sr.CS.DB = 1
	case mode16:
		sr.CR0 = cr0PE | cr0MP
	case modeReal:
		sr.CR0 = 0
		sr.CR4 = cr4OSFXSR
		sr.CS.Selector, sr.SS.Selector = 0, 0
		sr.SS.DB = 0
		sr.DS, sr.ES, sr.FS, sr.GS = sr.SS, sr.SS, sr.SS, sr.SS
	}
	c.regs.RIP = fakeRIP
	c.regs.RFLAGS = 2
	m := &fakeMem{b: make([]byte, fakeRAM)}
	copy(m.b[fakeRIP:], insn)
	return c, m
}
