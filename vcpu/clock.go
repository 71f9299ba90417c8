package vcpu

import _ "unsafe" // for go:linkname

// nanotime is the runtime's monotonic clock in nanoseconds: one vDSO call,
// about half the cost of time.Now, which reads the wall clock too. The exit
// loop calls it twice per exit when an Observer is attached.
//
//go:linkname nanotime runtime.nanotime
func nanotime() int64

// Now returns the monotonic clock the loop timestamps exits with, in ns.
func Now() int64 { return nanotime() }
