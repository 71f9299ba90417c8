package fallback

import "unsafe"

// haveCAS128 says cas128 is implemented.
const haveCAS128 = true

// cas128 atomically compares the 16 bytes at p (16-byte aligned) with
// oldHi:oldLo and, if equal, stores newHi:newLo there. It returns the value
// found and whether it stored. Implemented with LOCK CMPXCHG16B in
// cmpxchg16b_amd64.s.
//
//go:noescape
func cas128(p unsafe.Pointer, oldLo, oldHi, newLo, newHi uint64) (curLo, curHi uint64, swapped bool)
