// SPDX-License-Identifier: Apache-2.0
/*
 * freestanding.h: what gvmm's libc-free guest programs (init.c,
 * ../blkbench/blkbench.c) share: raw x86-64 system calls and the two
 * memory functions gcc may call even with -ffreestanding. Included once,
 * by the program's only source file (guest/init/build.sh).
 */
#ifndef GVMM_FREESTANDING_H
#define GVMM_FREESTANDING_H

typedef unsigned long size_t;

/*
 * The x86-64 system call convention (the psABI's A.2.1, and the kernel's
 * arch/x86/entry/entry_64.S): number in rax, arguments in rdi, rsi, rdx,
 * r10, r8, r9; the kernel clobbers rcx and r11. Returns -errno on failure.
 */
static long sys6(long n, long a, long b, long c, long d, long e, long f)
{
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	long ret;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}
#define sys3(n, a, b, c) sys6(n, (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define sys4(n, a, b, c, d) sys6(n, (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)
#define sys5(n, a, b, c, d, e) \
	sys6(n, (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), 0)

/* gcc may emit calls to these even with -ffreestanding. */
void *memset(void *d, int c, size_t n)
{
	unsigned char *p = d;
	while (n--)
		*p++ = (unsigned char)c;
	return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
	unsigned char *p = d;
	const unsigned char *q = s;
	while (n--)
		*p++ = *q++;
	return d;
}

#endif
