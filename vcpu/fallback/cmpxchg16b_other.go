//go:build !amd64

package fallback

import "unsafe"

// haveCAS128 is false off amd64: gvmm runs x86 guests only on amd64 hosts.
const haveCAS128 = false

// cas128 is never called off amd64 (see haveCAS128).
func cas128(p unsafe.Pointer, oldLo, oldHi, newLo, newHi uint64) (curLo, curHi uint64, swapped bool) {
	return 0, 0, false
}
