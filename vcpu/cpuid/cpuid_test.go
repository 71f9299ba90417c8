package cpuid

import (
	"testing"

	"github.com/gvmm/gvmm/kvm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sample() []kvm.CPUIDEntry {
	return []kvm.CPUIDEntry{
		{Function: 0, EAX: 0x10},
		{Function: 1, EBX: 0x00010800, ECX: 1<<13 | 1<<23 | 1<<26 | 1<<27 | 1<<28 | 1<<17, EDX: 1 << 28},
		{Function: 7, Index: 0, EBX: 1<<0 | 1<<5 | 1<<10 | 1<<16 | 1<<20, ECX: 1<<3 | 1<<22},
		{Function: 0xB, Index: 0, Flags: kvm.CPUIDFlagSignificantIndex},
		{Function: 0xB, Index: 1, Flags: kvm.CPUIDFlagSignificantIndex},
		{Function: 0xD, Index: 0, EAX: 7},
		{Function: 0xD, Index: 1, EAX: 1},
		{Function: 0x40000000, EAX: 0x40000001, EBX: 0x4b4d564b, ECX: 0x564b4d56, EDX: 0x4d},
		{Function: 0x40000001, EAX: 1<<0 | 1<<3},
		{Function: 0x80000008, ECX: 0x0000700F},
		{Function: 0x8000001E, EAX: 5, EBX: 0x105},
	}
}

func find(t *testing.T, es []kvm.CPUIDEntry, fn, idx uint32) kvm.CPUIDEntry {
	for _, e := range es {
		if e.Function == fn && e.Index == idx {
			return e
		}
	}
	t.Fatalf("leaf %#x.%d missing", fn, idx)
	return kvm.CPUIDEntry{}
}

func TestTopology(t *testing.T) {
	for _, tc := range []struct {
		cpus, id int
		shift    uint32
	}{{1, 0, 0}, {2, 1, 1}, {3, 2, 2}, {4, 3, 2}, {8, 5, 3}} {
		es := Fit(sample(), Options{APICID: uint32(tc.id), CPUs: tc.cpus})
		l1 := find(t, es, 1, 0)
		assert.Equal(t, uint32(tc.id), l1.EBX>>24, "leaf 1 APIC ID")
		assert.Equal(t, uint32(tc.cpus), l1.EBX>>16&0xFF, "leaf 1 logical count")
		assert.Equal(t, uint32(8), l1.EBX>>8&0xFF, "CLFLUSH size")
		assert.Equal(t, tc.cpus > 1, Has(es, HTT))
		assert.True(t, Has(es, Hypervisor))
		b0, b1 := find(t, es, 0xB, 0), find(t, es, 0xB, 1)
		assert.Equal(t, uint32(tc.id), b0.EDX)
		assert.Equal(t, uint32(tc.id), b1.EDX)
		assert.Equal(t, uint32(1), b0.EBX)
		assert.Equal(t, uint32(1<<8), b0.ECX)
		assert.Equal(t, tc.shift, b1.EAX)
		assert.Equal(t, uint32(tc.cpus), b1.EBX)
		assert.Equal(t, uint32(2<<8|1), b1.ECX)
		a8 := find(t, es, 0x80000008, 0)
		assert.Equal(t, uint32(tc.cpus-1), a8.ECX&0xFF)
		assert.Equal(t, tc.shift, a8.ECX>>12&0xF)
		assert.Equal(t, uint32(tc.id), find(t, es, 0x8000001E, 0).EAX)
	}
}

func TestHide(t *testing.T) {
	es := Fit(sample(), Options{CPUs: 1, Hide: []Feature{CX16, POPCNT, SMAP, XSAVE, PKU}})
	for _, f := range []Feature{CX16, POPCNT, SMAP, XSAVE, OSXSAVE, AVX, AVX2, AVX512F, PKU} {
		assert.False(t, Has(es, f), f.Name)
	}
	for _, f := range []Feature{PCID, FSGSBASE, INVPCID, RDPID} {
		assert.True(t, Has(es, f), "%s not asked to be hidden", f.Name)
	}
	for _, e := range es {
		assert.NotEqual(t, uint32(0xD), e.Function, "leaf 0xD goes with XSAVE")
	}
	// The KVM signature survives, so the guest finds kvm-clock.
	sig := find(t, es, 0x40000000, 0)
	assert.Equal(t, uint32(0x4b4d564b), sig.EBX)
	assert.Equal(t, uint32(1<<0|1<<3), find(t, es, 0x40000001, 0).EAX)
}

func TestFitDoesNotModifyInput(t *testing.T) {
	in := sample()
	before := append([]kvm.CPUIDEntry(nil), in...)
	Fit(in, Options{APICID: 3, CPUs: 4, Hide: []Feature{XSAVE}})
	require.Equal(t, before, in)
}

func TestTSCDeadline(t *testing.T) {
	assert.False(t, Has(Fit(sample(), Options{CPUs: 1}), TSCDeadline))
	assert.True(t, Has(Fit(sample(), Options{CPUs: 1, TSCDeadline: true}), TSCDeadline))
}
