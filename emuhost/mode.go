package emuhost

import (
	"fmt"
	"strings"
)

// Mode says when a command runs in the emulated host.
type Mode int

const (
	// Auto uses the emulated host only where /dev/kvm is not usable.
	Auto Mode = iota
	// Always uses the emulated host even where /dev/kvm works.
	Always
	// Never runs the command directly, with or without /dev/kvm.
	Never
)

// ModeEnv is the environment variable that overrides the mode:
// always, never or auto.
const ModeEnv = "GVMM_EMULATED_HOST"

// ParseMode parses "auto", "always" or "never" (empty means Auto).
func ParseMode(s string) (Mode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "auto":
		return Auto, nil
	case "always":
		return Always, nil
	case "never":
		return Never, nil
	}
	return Auto, fmt.Errorf("%s=%q: want always, never or auto", ModeEnv, s)
}

func (m Mode) String() string {
	switch m {
	case Always:
		return "always"
	case Never:
		return "never"
	}
	return "auto"
}

// Emulate reports whether a command runs in the emulated host, given the
// mode and whether this machine's /dev/kvm works. A working /dev/kvm is
// never bypassed in Auto mode: the emulated host is slower by orders of
// magnitude, and hardware (or kvm_pvm) is what users run on.
func (m Mode) Emulate(kvmUsable bool) bool {
	switch m {
	case Always:
		return true
	case Never:
		return false
	}
	return !kvmUsable
}
