package machine

import (
	"fmt"
	stdnet "net"

	"github.com/gvmm/gvmm/devices/pci"
	vnet "github.com/gvmm/gvmm/virtio/net"
	"github.com/gvmm/gvmm/virtio/net/tap"
	vpci "github.com/gvmm/gvmm/virtio/pci"
)

// Net is a network interface of the guest: a virtio network device whose
// frames go through a host tap device.
type Net struct {
	// Tap is the tap device's name. An existing tap is attached to; a
	// missing one is created (which needs CAP_NET_ADMIN) and goes away
	// with the machine.
	Tap string
	// MAC is the guest's address; nil derives a locally administered one
	// from Tap (vnet.DerivedMAC).
	MAC stdnet.HardwareAddr
}

// openNets opens every tap: before any KVM work, so that a busy or
// forbidden tap costs nothing and says so in one line.
func openNets(ns []Net) ([]*tap.Tap, error) {
	var out []*tap.Tap
	seen := map[string]bool{}
	for _, n := range ns {
		if seen[n.Tap] {
			closeTaps(out)
			return nil, fmt.Errorf("tap %s: given twice", n.Tap)
		}
		seen[n.Tap] = true
		if n.MAC != nil {
			if err := vnet.CheckMAC(n.MAC); err != nil {
				closeTaps(out)
				return nil, fmt.Errorf("tap %s: %w", n.Tap, err)
			}
		}
		t, err := tap.Open(n.Tap)
		if err != nil {
			closeTaps(out)
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

func closeTaps(ts []*tap.Tap) {
	for _, t := range ts {
		t.Close()
	}
}

// netVectors is each network device's MSI-X vectors: configuration
// changes, the receive queue and the transmit queue.
const netVectors = 3

// addNets puts one virtio network function per tap on the bus, from slot
// first on.
func (m *Machine) addNets(root *pci.Root, ioev vpci.IOEvents, first int) error {
	b := m.pci
	for i, t := range b.taps {
		slot := first + i
		if slot >= pci.Slots {
			return fmt.Errorf("at most %d disks and network interfaces together", pci.Slots-1)
		}
		mac := m.cfg.Nets[i].MAC
		if mac == nil {
			mac = vnet.DerivedMAC(t.Name())
		}
		dev, err := vnet.New(vnet.Config{Backend: t, MAC: mac, NoGuestUFO: !t.UFO()})
		if err != nil {
			return fmt.Errorf("tap %s: %w", t.Name(), err)
		}
		if err := m.attachVirtio(root, ioev, slot, dev, netVectors, fmt.Sprintf("virtio-net%d", i), "tap "+t.Name()); err != nil {
			return err
		}
		b.nets = append(b.nets, dev)
		how := "attached"
		if t.Created() {
			how = "created"
		}
		m.logf("gvmm: net %d: tap %s (%s), MAC %v, on PCI 00:%02x.0", i, t.Name(), how, mac, slot)
	}
	return nil
}

// NetStats returns each network device's counters.
func (m *Machine) NetStats() []vnet.Stats {
	if m.pci == nil {
		return nil
	}
	var out []vnet.Stats
	for _, d := range m.pci.nets {
		out = append(out, d.Stats())
	}
	return out
}
