package pci

import (
	"encoding/binary"
	"testing"

	devpci "github.com/gvmm/gvmm/devices/pci"
	"github.com/gvmm/gvmm/eventfd"
	"github.com/gvmm/gvmm/memory"
	"github.com/gvmm/gvmm/virtio"
)

// fuzzOpSize is one guest access in FuzzTransport's input: a flags byte
// (bit 0: BAR 0 rather than configuration space; bit 1: write; bits 2-3:
// the size, 1, 2, 4 or 8 bytes), a le16 offset and the le64 value
// written.
const fuzzOpSize = 11

// FuzzTransport lets the fuzzer be the driver: any sequence of reads and
// writes of the function's configuration space (BARs, command register,
// capabilities, the MSI-X control, the PCI configuration access window)
// and of BAR 0 (common configuration, ISR, device configuration,
// notifications, the MSI-X table and PBA), at any offset and size. The
// transport must not panic, a read must fill only its own bytes, and the
// notification ioeventfds must be registered exactly while BAR 0 is
// decoded, inside it.
func FuzzTransport(f *testing.F) {
	op := func(bar bool, write bool, size int, off uint16, v uint64) []byte {
		var flags byte
		if bar {
			flags |= 1
		}
		if write {
			flags |= 2
		}
		flags |= map[int]byte{1: 0, 2: 1, 4: 2, 8: 3}[size] << 2
		b := []byte{flags}
		b = binary.LittleEndian.AppendUint16(b, off)
		return binary.LittleEndian.AppendUint64(b, v)
	}
	seq := func(ops ...[]byte) []byte {
		var out []byte
		for _, o := range ops {
			out = append(out, o...)
		}
		return out
	}
	// What Linux's virtio_pci does at probe, with a BAR moved by the
	// guest's sizing.
	f.Add(seq(
		op(false, true, 4, devpci.RegBAR0, 0xFFFF_FFFF),
		op(false, false, 4, devpci.RegBAR0, 0),
		op(false, true, 4, devpci.RegBAR0, 0xC000_0000),
		op(false, true, 2, devpci.RegCommand, devpci.CommandMemory),
		op(true, true, 1, ccDeviceStatus, 0),
		op(true, true, 1, ccDeviceStatus, uint64(virtio.StatusAcknowledge|virtio.StatusDriver)),
		op(true, true, 4, ccDriverFeatureSelect, 1),
		op(true, true, 4, ccDriverFeature, 1),
		op(true, true, 1, ccDeviceStatus, uint64(virtio.StatusAcknowledge|virtio.StatusDriver|virtio.StatusFeaturesOK)),
		op(false, true, 2, 0x42, 0x8002),
		op(true, true, 2, ccQueueSelect, 0),
		op(true, true, 2, ccQueueSize, 16),
		op(true, true, 8, ccQueueDesc, 0x10000),
		op(true, true, 8, ccQueueDriver, 0x11000),
		op(true, true, 8, ccQueueDevice, 0x12000),
		op(true, true, 2, ccQueueMSIXVector, 1),
		op(true, true, 2, ccQueueEnable, 1),
		op(true, true, 1, ccDeviceStatus, uint64(virtio.StatusAcknowledge|virtio.StatusDriver|virtio.StatusFeaturesOK|virtio.StatusDriverOK)),
		op(true, true, 2, notifyOff, 0),
		op(true, false, 1, isrOff, 0),
		op(true, true, 4, msixTableOff+8, 1),
		op(true, false, 8, msixPBAOff, 0),
		op(false, true, 2, devpci.RegCommand, 0),
	))
	f.Add(seq(op(true, false, 8, commonOff+commonSize-4, 0), op(false, false, 8, 0xFFC, 0)))
	f.Add([]byte{})

	g, err := memory.New(memory.MinSize)
	if err != nil {
		f.Fatal(err)
	}
	defer g.Close()
	f.Fuzz(func(t *testing.T, data []byte) {
		ev := &ioev{regs: map[uint64]*eventfd.EventFD{}}
		var vs []devpci.MSIVector
		for i := 0; i < 3; i++ {
			vs = append(vs, &vec{})
		}
		tr, err := New(Config{Device: &fakeDevice{}, Mem: g, Vectors: vs, INTx: &line{}, IOEvents: ev})
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		fn := tr.Function()
		for ; len(data) >= fuzzOpSize; data = data[fuzzOpSize:] {
			flags := data[0]
			off := uint64(binary.LittleEndian.Uint16(data[1:]))
			var buf [16]byte
			size := 1 << (flags >> 2 & 3)
			b := buf[4 : 4+size]
			if flags&2 != 0 {
				copy(b, data[3:3+size])
			} else {
				for i := range buf {
					buf[i] = 0xA5
				}
			}
			switch {
			case flags&1 == 0 && flags&2 != 0:
				fn.WriteConfig(off%0x1000, b)
			case flags&1 == 0:
				fn.ReadConfig(off%0x1000, b)
			case flags&2 != 0:
				tr.bar0Access(off%bar0Size, b, true)
			default:
				tr.bar0Access(off%bar0Size, b, false)
			}
			for i, x := range buf {
				if (i < 4 || i >= 4+size) && x != 0xA5 && flags&2 == 0 {
					t.Fatalf("a %d-byte read at %#x wrote byte %d outside its buffer", size, off, i-4)
				}
			}
			_, addr := fn.BAR(0)
			decoded := fn.Command()&devpci.CommandMemory != 0 && addr != 0 && addr+bar0Size <= 1<<32
			if decoded {
				if len(ev.regs) != len(tr.kicks) {
					t.Fatalf("BAR 0 at %#x decoded with %d of %d notification ioeventfds", addr, len(ev.regs), len(tr.kicks))
				}
				for a := range ev.regs {
					if a < addr+notifyOff || a >= addr+notifyOff+notifySize {
						t.Fatalf("notification ioeventfd at %#x, BAR 0 at %#x", a, addr)
					}
				}
			} else if len(ev.regs) != 0 {
				t.Fatalf("%d notification ioeventfds with BAR 0 not decoded (%#x, command %#x)", len(ev.regs), addr, fn.Command())
			}
		}
	})
}
