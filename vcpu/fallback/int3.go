package fallback

// emulateInt3 emulates int3 (CC), the one-byte breakpoint (SDM vol. 2A,
// "INT n/INTO/INT3/INT1"): it raises #BP, a trap, so the return address the
// guest's handler sees is the byte after the int3 (SDM vol. 3A section 6.5
// and 6.15, interrupt 3). Emulate moves RIP past the instruction and injects
// vector 3 without an error code (KVM_SET_VCPU_EVENTS, exception.injected =
// 1, nr = 3), which KVM delivers through the guest's IDT. Only the
// one-byte form is handled: "int $3" (CD 03) is a software interrupt with
// its own privilege checks.
//
// On VMX hardware, KVM injects #BP as a software exception whose length
// comes from the last exit; the emulation-failure path never runs there, as
// int3 does not reach KVM's emulator.
func emulateInt3(*state) error {
	return &exception{vector: vecBP, trap: true}
}
