package fallback

// KVM hypercall ABI (Linux Documentation/virt/kvm/x86/hypercalls.rst): the
// number in RAX, the result in RAX; -KVM_ENOSYS for an unknown call.
const (
	hcClockPairing = 9    // KVM_HC_CLOCK_PAIRING
	kvmENOSYS      = 1000 // KVM_ENOSYS (include/uapi/linux/kvm_para.h)
)

// isClockPairing reports whether the decoded instruction is vmcall or
// vmmcall with the KVM_HC_CLOCK_PAIRING number: RAX in 64-bit mode, EAX
// otherwise (KVM reads the number and arguments at the code size).
func isClockPairing(s *state) bool {
	nr := s.regs.RAX
	if s.mode != 64 {
		nr &= 0xFFFF_FFFF
	}
	return s.in.op == OpClockPairing && nr == hcClockPairing
}

// emulateClockPairing completes a KVM_HC_CLOCK_PAIRING hypercall with
// -KVM_ENOSYS in RAX (truncated to 32 bits outside 64-bit mode, as KVM
// does). Linux's ptp_kvm driver (drivers/ptp/ptp_kvm_x86.c,
// kvm_arch_ptp_init) then fails its init with -ENODEV and makes no more
// such calls.
func emulateClockPairing(s *state) error {
	ret := uint64(1<<64 - kvmENOSYS)
	if s.mode != 64 {
		ret &= 0xFFFF_FFFF
	}
	s.regs.RAX = ret
	return nil
}

// SkipClockPairing completes a stuck KVM_HC_CLOCK_PAIRING hypercall. On
// kvm_pvm a vmcall (0F 01 C1) or vmmcall (0F 01 D9) with RAX = 9, issued by
// Linux's ptp_kvm driver at boot, never completes and never exits to
// userspace; the VMM kicks a vCPU that has made no progress for a while and
// calls SkipClockPairing. If the instruction at CS:RIP is vmcall or vmmcall
// and RAX is KVM_HC_CLOCK_PAIRING, it sets RAX to -KVM_ENOSYS, moves RIP
// past the 3-byte instruction and returns true; otherwise it changes nothing
// and returns false. An error means the registers or the instruction bytes
// could not be read.
func SkipClockPairing(cpu CPU, mem Memory) (bool, error) {
	s, err := newState(cpu, mem, nil)
	if err != nil {
		return false, err
	}
	if !isClockPairing(s) {
		return false, nil
	}
	if err := emulateClockPairing(s); err != nil {
		return false, err
	}
	s.regs.RIP = s.next()
	if err := cpu.SetRegs(s.regs); err != nil {
		return false, err
	}
	return true, nil
}
