package kvmtest

import "golang.org/x/sys/unix"

var errEINTR = unix.EINTR
