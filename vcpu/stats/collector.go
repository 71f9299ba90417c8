package stats

import (
	"fmt"
	"math/bits"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gvmm/gvmm/kvm"
	"github.com/gvmm/gvmm/vcpu"
)

// Namer gives devices and their registers the names reports print. The VMM
// implements it from its buses. Its methods are called on the vCPU threads,
// concurrently, the first time an exit touches a device register (never again
// for the same register), so they must be safe for concurrent use; reading
// immutable tables is.
type Namer interface {
	// DeviceName names the device in slot of the bus kind k uses (port I/O
	// or MMIO), such as "serial0". Slot -1 means no device claimed the
	// access. "" lets the report choose ("unclaimed", "slot3").
	DeviceName(k vcpu.Kind, slot int) string
	// RegisterName names the register at offset within the device in slot,
	// such as "LSR"; write tells a write from a read, for registers that
	// differ (the 8250's THR and RBR). With slot -1, offset is the port or
	// guest-physical address itself. "" means unknown: the report prints
	// the offset (or port, or address) in hex.
	RegisterName(k vcpu.Kind, slot int, offset uint64, write bool) string
}

const (
	// MaxGSI bounds the GSIs counted one by one: KVM's routing table holds
	// at most 4096 entries (KVM_MAX_IRQ_ROUTES), so a fixed array covers
	// every line without a map on the interrupt path.
	MaxGSI = 4096
	// maxKeys bounds the registers tracked per vCPU. A guest probing a wide
	// unclaimed MMIO range would otherwise create a histogram (4 KiB) per
	// address; beyond the bound, new registers of a kind share one
	// "(other)" row.
	maxKeys = 512
	// slotOverflow marks that shared row in a key.
	slotOverflow = -2
)

// key identifies what an exit touched, at the finest grain a report shows:
// the device register for I/O and MMIO, the port or address when no device
// claims it, the emulated instruction for fallback exits, the KVM exit reason
// for other exits, and just the kind for the rest.
type key struct {
	kind vcpu.Kind
	slot int32
	off  uint64
}

// keyOf derives e's key, reading only the fields meaningful for e's kind:
// the exit loop reuses one Exit per vCPU and leaves the rest stale.
func keyOf(e *vcpu.Exit) key {
	switch k := e.Kind; k {
	case vcpu.KindIOIn, vcpu.KindIOOut, vcpu.KindMMIORead, vcpu.KindMMIOWrite:
		if e.Slot < 0 {
			return key{k, -1, e.Addr}
		}
		return key{k, int32(e.Slot), e.Offset}
	case vcpu.KindFallback:
		return key{k, -1, uint64(e.Op)}
	case vcpu.KindOther:
		return key{k, -1, uint64(e.Reason)}
	default:
		if k >= vcpu.NumKinds {
			return key{vcpu.KindOther, -1, uint64(e.Reason)}
		}
		return key{k, -1, 0}
	}
}

// detailed reports whether a kind's keys are finer than the kind itself, and
// so deserve rows of their own below the per-kind rows.
func detailed(k vcpu.Kind) bool {
	switch k {
	case vcpu.KindIOIn, vcpu.KindIOOut, vcpu.KindMMIORead, vcpu.KindMMIOWrite,
		vcpu.KindFallback, vcpu.KindOther:
		return true
	}
	return false
}

// isWrite reports whether an I/O or MMIO kind moves data to the device.
func isWrite(k vcpu.Kind) bool { return k == vcpu.KindIOOut || k == vcpu.KindMMIOWrite }

// keyStats is the handling-time histogram of one key on one vCPU, with the
// key's names resolved once, when the vCPU first met it.
type keyStats struct {
	key      key
	device   string
	register string
	h        histogram
}

// Collector gathers exit statistics for one VM. Create it with New, attach
// VCPU(i) to each vCPU's exit loop, and call Report from anywhere. The
// Kick, IRQ and EventFD counters are safe to call on a nil *Collector, so
// callers need not check whether statistics are on.
type Collector struct {
	namer  Namer
	opName func(uint8) string
	start  atomic.Int64 // wall clock, Unix ns

	vcpus []*vcpuStats
	// kicks has one counter per vCPU and a last one for out-of-range
	// indices, which are a caller's bug but should not be lost silently.
	kicks []atomic.Uint64
	// irqs is indexed by GSI; irqs[MaxGSI] counts GSIs beyond the table.
	irqs [MaxGSI + 1]atomic.Uint64

	// eventfds maps a device's eventfd name to its counter. It is
	// copy-on-write: signalling only loads the map, and a new name copies
	// it under eventfdMu, which nothing else takes.
	eventfds  atomic.Pointer[map[string]*atomic.Uint64]
	eventfdMu sync.Mutex
}

// New returns a Collector for nvcpu vCPUs. namer names devices and
// registers (nil prints slots and offsets); opName names the instructions of
// fallback exits, such as fallback.Op(op).String (nil prints numbers). The
// clock for rates starts now; see SetStart.
func New(nvcpu int, namer Namer, opName func(uint8) string) *Collector {
	c := &Collector{
		namer:  namer,
		opName: opName,
		vcpus:  make([]*vcpuStats, nvcpu),
		kicks:  make([]atomic.Uint64, nvcpu+1),
	}
	for i := range c.vcpus {
		c.vcpus[i] = &vcpuStats{c: c, idx: i}
		c.vcpus[i].pub.Store(new([]*keyStats))
	}
	c.SetStart(time.Now())
	return c
}

// SetStart sets the time rates are computed from, typically when the vCPUs
// start running.
func (c *Collector) SetStart(t time.Time) { c.start.Store(t.UnixNano()) }

// VCPU returns the Observer for vCPU i. It must be attached to that vCPU's
// exit loop only: it assumes it is the only writer of its counters.
func (c *Collector) VCPU(i int) vcpu.Observer { return c.vcpus[i] }

// Kick counts a kick of vCPU i (a signal sent to pull it out of KVM_RUN).
// It may be called from any goroutine.
func (c *Collector) Kick(i int) {
	if c == nil {
		return
	}
	if uint(i) >= uint(len(c.vcpus)) {
		i = len(c.vcpus)
	}
	c.kicks[i].Add(1)
}

// IRQ counts an interrupt injected on GSI line gsi (KVM_IRQ_LINE or an
// irqfd). It may be called from any goroutine.
func (c *Collector) IRQ(gsi uint32) {
	if c == nil {
		return
	}
	c.irqs[min(gsi, MaxGSI)].Add(1)
}

// EventFD counts a signal on the ioeventfd or irqfd called name (a device
// and queue, such as "virtio-blk0 notify"). It may be called from any
// goroutine; the first signal under a new name allocates, later ones do not.
func (c *Collector) EventFD(name string) {
	if c == nil {
		return
	}
	if m := c.eventfds.Load(); m != nil {
		if n, ok := (*m)[name]; ok {
			n.Add(1)
			return
		}
	}
	c.eventfdCounter(name).Add(1)
}

// eventfdCounter returns name's counter, adding it to a copy of the map.
func (c *Collector) eventfdCounter(name string) *atomic.Uint64 {
	c.eventfdMu.Lock()
	defer c.eventfdMu.Unlock()
	old := c.eventfds.Load()
	if old != nil {
		if n, ok := (*old)[name]; ok {
			return n // another goroutine added it meanwhile
		}
	}
	m := make(map[string]*atomic.Uint64, 1+len(deref(old)))
	for k, v := range deref(old) {
		m[k] = v
	}
	n := new(atomic.Uint64)
	m[name] = n
	c.eventfds.Store(&m)
	return n
}

func deref(m *map[string]*atomic.Uint64) map[string]*atomic.Uint64 {
	if m == nil {
		return nil
	}
	return *m
}

// names resolves what a report calls k: device and register for I/O and
// MMIO, the instruction for fallback exits, the exit reason for other exits.
func (c *Collector) names(k key) (device, register string) {
	switch {
	case k.slot == slotOverflow:
		return "(other)", "(other)"
	case k.kind == vcpu.KindFallback:
		if c.opName != nil {
			if n := c.opName(uint8(k.off)); n != "" {
				return "", n
			}
		}
		return "", "op" + strconv.FormatUint(k.off, 10)
	case k.kind == vcpu.KindOther:
		return "", kvm.ExitName(uint32(k.off))
	case !detailed(k.kind):
		return "", ""
	}
	if c.namer != nil {
		device = c.namer.DeviceName(k.kind, int(k.slot))
		register = c.namer.RegisterName(k.kind, int(k.slot), k.off, isWrite(k.kind))
	}
	if device == "" {
		if k.slot < 0 {
			device = "unclaimed"
		} else {
			device = "slot" + strconv.Itoa(int(k.slot))
		}
	}
	if register == "" {
		register = fmt.Sprintf("%#x", k.off)
	}
	return device, register
}

// vcpuStats is one vCPU's Observer. Only that vCPU's thread writes it.
type vcpuStats struct {
	c   *Collector
	idx int
	// run is the time in KVM_RUN before each exit.
	run histogram
	// keys and last are private to the vCPU thread; readers see pub.
	keys keyTable
	last *keyStats
	// pub publishes the vCPU's keys to readers: the vCPU thread appends to
	// list and stores a new slice header here. Elements below a published
	// length are never written again, so readers need no lock.
	pub  atomic.Pointer[[]*keyStats]
	list []*keyStats
}

// Observe records one exit. It does not allocate once the exit's register
// has been seen on this vCPU, and takes no lock.
func (v *vcpuStats) Observe(e *vcpu.Exit) {
	v.run.record(e.RunNs)
	k := keyOf(e)
	ks := v.last
	if ks == nil || ks.key != k {
		ks = v.keys.get(k)
		if ks == nil {
			ks = v.add(k)
		}
		v.last = ks
	}
	ks.h.record(e.HandleNs)
}

// add creates the stats for a key met for the first time, or returns the
// kind's overflow row once the vCPU tracks maxKeys keys.
func (v *vcpuStats) add(k key) *keyStats {
	if len(v.list) >= maxKeys {
		k = key{kind: k.kind, slot: slotOverflow}
		if ks := v.keys.get(k); ks != nil {
			return ks
		}
	}
	ks := &keyStats{key: k}
	ks.device, ks.register = v.c.names(k)
	v.keys.put(ks)
	v.list = append(v.list, ks)
	list := v.list
	v.pub.Store(&list)
	return ks
}

// keyTable maps keys to their stats on the exit path: open addressing with
// linear probing, kept at most half full. It replaces a Go map, whose
// hashing of the struct key cost as much as the rest of Observe together.
// It holds at most maxKeys + NumKinds entries, and never deletes.
type keyTable struct {
	slots []*keyStats
	shift uint // 64 - log2(len(slots))
	n     int
}

// index hashes k by Fibonacci hashing: the multiply spreads the packed key
// over the high bits, which the shift keeps.
func (t *keyTable) index(k key) int {
	x := k.off ^ uint64(k.kind)<<56 ^ uint64(uint32(k.slot))<<32
	return int((x * 0x9e3779b97f4a7c15) >> t.shift)
}

func (t *keyTable) get(k key) *keyStats {
	if t.n == 0 {
		return nil
	}
	mask := len(t.slots) - 1
	for i := t.index(k); ; i = (i + 1) & mask {
		if ks := t.slots[i]; ks == nil || ks.key == k {
			return ks
		}
	}
}

// put adds ks, whose key is not in the table.
func (t *keyTable) put(ks *keyStats) {
	if 2*(t.n+1) > len(t.slots) {
		old := t.slots
		size := max(64, 2*len(old))
		t.slots = make([]*keyStats, size)
		t.shift = uint(64 - bits.TrailingZeros(uint(size)))
		t.n = 0
		for _, o := range old {
			if o != nil {
				t.put(o)
			}
		}
	}
	mask := len(t.slots) - 1
	i := t.index(ks.key)
	for t.slots[i] != nil {
		i = (i + 1) & mask
	}
	t.slots[i] = ks
	t.n++
}
