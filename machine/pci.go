package machine

import (
	"fmt"
	"slices"
	"sync"

	"github.com/gvmm/gvmm/boot"
	"github.com/gvmm/gvmm/boot/acpi"
	"github.com/gvmm/gvmm/devices"
	"github.com/gvmm/gvmm/devices/pci"
	"github.com/gvmm/gvmm/eventfd"
	"github.com/gvmm/gvmm/kvm"
	"github.com/gvmm/gvmm/virtio"
	"github.com/gvmm/gvmm/virtio/blk"
	"github.com/gvmm/gvmm/virtio/blk/disk"
	vnet "github.com/gvmm/gvmm/virtio/net"
	"github.com/gvmm/gvmm/virtio/net/tap"
	vpci "github.com/gvmm/gvmm/virtio/pci"
)

// The PCI bus in the guest-physical map (docs/design.md): BARs are assigned
// from a 512 MiB window at the start of the 32-bit hole, and the ECAM window
// of bus 0 follows it, reserved in the e820 map (Linux uses ECAM only where
// the firmware reserved it).
const (
	pciMemStart = 0xC000_0000
	pciMemEnd   = 0xE000_0000
	ecamBase    = 0xE000_0000
	// firstMSIGSI is the first GSI for MSI routes: 0-23 are the
	// irqchip pins of KVM's default routing.
	firstMSIGSI = 24
)

// Disk is a disk image to attach as a virtio block device.
type Disk struct {
	// Path is the image file or block device.
	Path string
	// ReadOnly opens it read-only; the guest sees a read-only disk.
	ReadOnly bool
	// Cache is the cache mode (writeback by default).
	Cache disk.Cache
	// Serial is the device's serial number (at most 20 bytes).
	Serial string
}

// pciBus is the machine's PCI side: the root bus, its devices and the
// eventfds and routes behind their interrupts.
type pciBus struct {
	root       *pci.Root
	disks      []*disk.File
	blks       []*blk.Device
	taps       []*tap.Tap
	nets       []*vnet.Device
	transports []*vpci.Transport
	msi        *msiRouter
	intx       []*intxLine
}

// openDisks opens and locks every image: before any KVM work, so that a
// bad --disk costs nothing and says so in one line.
func openDisks(ds []Disk) ([]*disk.File, error) {
	var out []*disk.File
	for _, d := range ds {
		if len(d.Serial) > blk.IDBytes {
			closeDisks(out)
			return nil, fmt.Errorf("disk %s: serial %q is longer than %d bytes", d.Path, d.Serial, blk.IDBytes)
		}
		f, err := disk.Open(d.Path, disk.Options{ReadOnly: d.ReadOnly, Cache: d.Cache})
		if err != nil {
			closeDisks(out)
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

func closeDisks(ds []*disk.File) {
	for _, d := range ds {
		d.Close()
	}
}

// createPCI builds the PCI bus with one virtio-blk function per disk, in
// order from slot 1, so that the guest names them vda, vdb, ...
func (m *Machine) createPCI(disks []*disk.File, taps []*tap.Tap) error {
	root, err := pci.NewRoot(&m.mmio, pciMemStart, pciMemEnd)
	if err != nil {
		return err
	}
	b := &pciBus{root: root, disks: disks, taps: taps}
	m.pci = b
	if err := m.pio.Insert(root.ConfigIO(), "pci-conf1", pci.ConfigAddressPort, pci.ConfigIOSize); err != nil {
		return err
	}
	if err := m.mmio.Insert(root.ECAM(), "pci-ecam", ecamBase, pci.ECAMBusSize); err != nil {
		return err
	}
	if n, _ := m.vm.CheckExtension(kvm.CapIRQRouting); n > 0 {
		if n, _ := m.vm.CheckExtension(kvm.CapIRQFD); n > 0 {
			b.msi = &msiRouter{vm: m.vm, next: firstMSIGSI, routes: map[uint32]kvm.IRQRoutingEntry{}}
		}
	}
	var ioev vpci.IOEvents
	if n, _ := m.vm.CheckExtension(kvm.CapIOEventFD); n > 0 {
		ioev = ioEvents{m.vm}
	}
	queues := min(m.cfg.CPUs, vpci.MaxVectors-1)
	for i, d := range disks {
		slot := 1 + i
		if slot >= pci.Slots {
			return fmt.Errorf("%d disks: at most %d fit on the PCI bus", len(disks), pci.Slots-1)
		}
		dev, err := blk.New(blk.Config{Disk: d, Queues: queues, Serial: m.cfg.Disks[i].Serial})
		if err != nil {
			return fmt.Errorf("disk %s: %w", d.Path(), err)
		}
		if err := m.attachVirtio(root, ioev, slot, dev, queues+1, fmt.Sprintf("virtio-blk%d", i), d.Path()); err != nil {
			return err
		}
		b.blks = append(b.blks, dev)
		m.logf("gvmm: disk vd%c: %s on PCI 00:%02x.0, %d queues", 'a'+i, d.Describe(), slot, queues)
	}
	return m.addNets(root, ioev, 1+len(disks))
}

// attachVirtio puts dev on the bus at slot behind a virtio PCI transport
// with vectors MSI-X vectors (when KVM routes MSIs) and an INTx line, and
// keeps the transport for Close. what names the device's backend in errors
// and in the log line that says its kicks exit to userspace (no ioeventfd).
func (m *Machine) attachVirtio(root *pci.Root, ioev vpci.IOEvents, slot int, dev virtio.Device, vectors int, name, what string) error {
	b := m.pci
	var vecs []pci.MSIVector
	if b.msi != nil {
		for v := 0; v < vectors; v++ {
			vec, err := b.msi.newVector()
			if err != nil {
				return err
			}
			vecs = append(vecs, vec)
		}
	}
	line, err := m.newINTx(pci.INTxGSI(slot, 1))
	if err != nil {
		return err
	}
	t, err := vpci.New(vpci.Config{Device: dev, Mem: m.mem, Vectors: vecs, INTx: line, IOEvents: ioev})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	b.transports = append(b.transports, t)
	if err := root.Add(slot, t.Function(), name); err != nil {
		return err
	}
	if err := t.IOEventError(); err != nil {
		m.logf("gvmm: %v; notifications of %s exit to userspace", err, what)
	}
	return nil
}

// pciACPI describes the host bridge to the ACPI tables.
func pciACPI() *acpi.PCIHostBridge {
	return &acpi.PCIHostBridge{ECAMBase: ecamBase, MemStart: pciMemStart, MemEnd: pciMemEnd, INTx: pci.INTxGSI}
}

// pciReserved is what the e820 map reserves for the PCI bus.
func pciReserved() []boot.Range {
	return []boot.Range{{Start: ecamBase, Size: pci.ECAMBusSize}}
}

// close stops every device (their workers touch guest memory, so this
// comes before the memory goes), then releases interrupts and images.
func (b *pciBus) close() {
	for _, t := range b.transports {
		t.Close()
	}
	if b.msi != nil {
		b.msi.close()
	}
	for _, l := range b.intx {
		l.close()
	}
	closeDisks(b.disks)
	closeTaps(b.taps)
}

// BlockRequests returns how many requests each disk completed, and how many
// of them failed.
func (m *Machine) BlockRequests() (total, failed []uint64) {
	if m.pci == nil {
		return nil, nil
	}
	for _, d := range m.pci.blks {
		t, f := d.Requests()
		total, failed = append(total, t), append(failed, f)
	}
	return total, failed
}

// ioEvents registers virtio notification addresses with KVM_IOEVENTFD.
type ioEvents struct{ vm *kvm.VM }

func (e ioEvents) RegisterIOEvent(addr uint64, length uint32, ev *eventfd.EventFD) error {
	return e.vm.SetIOEventFD(ev.FD(), addr, length, false)
}

func (e ioEvents) UnregisterIOEvent(addr uint64, length uint32, ev *eventfd.EventFD) error {
	return e.vm.SetIOEventFD(ev.FD(), addr, length, true)
}

// msiRouter gives MSI-X vectors a GSI each, an irqfd on it, and an MSI
// route that follows what the guest programs (KVM_SET_GSI_ROUTING, which
// replaces the whole table: every change installs KVM's default irqchip
// routes plus every MSI route).
type msiRouter struct {
	vm      *kvm.VM
	mu      sync.Mutex
	next    uint32
	routes  map[uint32]kvm.IRQRoutingEntry
	vectors []*msiVector
}

type msiVector struct {
	r   *msiRouter
	gsi uint32
	ev  *eventfd.EventFD
}

func (r *msiRouter) newVector() (*msiVector, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.next >= kvm.MaxIRQRoutes {
		return nil, fmt.Errorf("out of GSIs for MSI-X vectors (%d)", kvm.MaxIRQRoutes)
	}
	ev, err := eventfd.New()
	if err != nil {
		return nil, err
	}
	v := &msiVector{r: r, gsi: r.next, ev: ev}
	if err := r.vm.AssignIRQFD(ev.FD(), v.gsi, -1); err != nil {
		ev.Close()
		return nil, err
	}
	r.next++
	r.vectors = append(r.vectors, v)
	return v, nil
}

// SetMessage implements pci.MSIVector.
func (v *msiVector) SetMessage(msg pci.MSIMessage) error {
	r := v.r
	r.mu.Lock()
	defer r.mu.Unlock()
	r.routes[v.gsi] = kvm.MSIRoute(v.gsi, msg.Address, msg.Data)
	table := kvm.DefaultIRQRoutes()
	gsis := make([]uint32, 0, len(r.routes))
	for g := range r.routes {
		gsis = append(gsis, g)
	}
	slices.Sort(gsis)
	for _, g := range gsis {
		table = append(table, r.routes[g])
	}
	return r.vm.SetGSIRouting(table)
}

// Trigger implements pci.MSIVector: the irqfd injects the MSI inside KVM.
func (v *msiVector) Trigger() error { return v.ev.Signal() }

func (r *msiRouter) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range r.vectors {
		_ = r.vm.DeassignIRQFD(v.ev.FD(), v.gsi)
		v.ev.Close()
	}
	r.vectors = nil
}

// intxLine is a level-triggered PCI INTx line on an I/O APIC pin, driven
// through an irqfd with a resample eventfd (KVM_IRQFD_FLAG_RESAMPLE): the
// irqfd asserts the pin; when the guest acknowledges the interrupt, KVM
// de-asserts it and signals the resample eventfd, and the line asserts it
// again if the device still holds it high. No vCPU exits for any of it.
type intxLine struct {
	vm                *kvm.VM
	gsi               uint32
	trigger, resample *eventfd.EventFD
	stop              *eventfd.EventFD
	level             sync.Mutex
	high              bool
	done              chan struct{}
	raised            uint64
	fallback          *irqLine
}

// newINTx returns the INTx line of a device on gsi: an irqfd with resample
// where KVM has it, else KVM_IRQ_LINE.
func (m *Machine) newINTx(gsi uint32) (devices.IRQLine, error) {
	if n, _ := m.vm.CheckExtension(kvm.CapIRQFDResample); n <= 0 {
		return m.irqLine(gsi), nil
	}
	l := &intxLine{vm: m.vm, gsi: gsi, done: make(chan struct{})}
	var err error
	for _, e := range []**eventfd.EventFD{&l.trigger, &l.resample, &l.stop} {
		if *e, err = eventfd.New(); err != nil {
			l.closeFDs()
			return nil, err
		}
	}
	if err := m.vm.AssignIRQFD(l.trigger.FD(), gsi, l.resample.FD()); err != nil {
		l.closeFDs()
		return nil, err
	}
	m.pci.intx = append(m.pci.intx, l)
	go l.resampler()
	return l, nil
}

// SetLevel implements devices.IRQLine.
func (l *intxLine) SetLevel(high bool) {
	l.level.Lock()
	defer l.level.Unlock()
	l.high = high
	if high {
		l.raised++
		_ = l.trigger.Signal()
	}
}

func (l *intxLine) resampler() {
	defer close(l.done)
	for {
		stopped, err := l.resample.Wait(l.stop)
		if stopped || err != nil {
			return
		}
		l.level.Lock()
		if l.high {
			_ = l.trigger.Signal()
		}
		l.level.Unlock()
	}
}

func (l *intxLine) close() {
	_ = l.stop.Signal()
	<-l.done
	_ = l.vm.DeassignIRQFD(l.trigger.FD(), l.gsi)
	l.closeFDs()
}

func (l *intxLine) closeFDs() {
	for _, e := range []*eventfd.EventFD{l.trigger, l.resample, l.stop} {
		if e != nil {
			e.Close()
		}
	}
}
