#include "textflag.h"

// func outb(port uint16, val uint8)
// OUT DX, AL (Intel SDM vol. 2B, OUT): the port number in DX, the byte in AL.
TEXT ·outb(SB), NOSPLIT, $0-3
	MOVW port+0(FP), DX
	MOVB val+2(FP), AL
	OUTB
	RET
