//go:build !amd64

package guest

import "errors"

// outbIoperm is x86-only: other architectures have no I/O ports.
func outbIoperm(uint8) error { return errors.New("no I/O ports on this architecture") }
