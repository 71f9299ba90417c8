#include "textflag.h"

// func cas128(p unsafe.Pointer, oldLo, oldHi, newLo, newHi uint64) (curLo, curHi uint64, swapped bool)
//
// LOCK CMPXCHG16B m128 (Intel SDM vol. 2A, "CMPXCHG8B/CMPXCHG16B"): compares
// RDX:RAX with m128; equal: ZF = 1 and m128 = RCX:RBX; else ZF = 0 and
// RDX:RAX = m128. The LOCK prefix makes it atomic (SDM vol. 3A section 9.1.2).
TEXT ·cas128(SB), NOSPLIT, $0-57
	MOVQ p+0(FP), DI
	MOVQ oldLo+8(FP), AX
	MOVQ oldHi+16(FP), DX
	MOVQ newLo+24(FP), BX
	MOVQ newHi+32(FP), CX
	LOCK
	CMPXCHG16B (DI)
	SETEQ swapped+56(FP)
	MOVQ AX, curLo+40(FP)
	MOVQ DX, curHi+48(FP)
	RET
