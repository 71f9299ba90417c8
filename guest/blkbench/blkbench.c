// SPDX-License-Identifier: Apache-2.0
/*
 * blkbench.c: a block device benchmark for gvmm's test guests.
 *
 *   blkbench seqread  DEV MIB    read MIB MiB from offset 0, 1 MiB at a time
 *   blkbench seqwrite DEV MIB    write MIB MiB from offset 0, 1 MiB at a time
 *   blkbench randread DEV COUNT  COUNT reads of 4 KiB at random 4 KiB-aligned offsets
 *
 * Every access is O_DIRECT, one at a time (queue depth 1), so it measures
 * the device's round trip, not the guest's page cache. It prints
 *   GUEST-BENCH <name> bytes=<bytes moved> ns=<elapsed CLOCK_MONOTONIC ns>
 * and exits 0, or prints GUEST-BENCH-FAIL and exits 1.
 *
 * Like /init it has no libc (raw system calls, entry at _start), so the same
 * build flags work (guest/init/build.sh) and it starts in a few system calls.
 */

#include "../init/freestanding.h"

enum {
	SYS_write = 1, SYS_open = 2, SYS_close = 3, SYS_lseek = 8,
	SYS_pread64 = 17, SYS_pwrite64 = 18, SYS_exit = 60,
	SYS_clock_gettime = 228,
};
enum { O_RDONLY = 0, O_WRONLY = 1, O_DIRECT = 040000, O_CLOEXEC = 02000000 };
enum { SEEK_END = 2, CLOCK_MONOTONIC = 1 };

#define BLOCK (1L << 20)
#define SMALL 4096L

/* O_DIRECT needs an aligned buffer. */
static unsigned char buf[BLOCK] __attribute__((aligned(4096)));

static void put(const char *s)
{
	long n = 0;
	while (s[n])
		n++;
	sys3(SYS_write, 1, s, n);
}

static char *utoa(unsigned long v, char *end)
{
	*--end = 0;
	do {
		*--end = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return end;
}

static unsigned long parse(const char *s)
{
	unsigned long v = 0;
	while (*s >= '0' && *s <= '9')
		v = v * 10 + (unsigned long)(*s++ - '0');
	return v;
}

static int streq(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return *a == *b;
}

struct timespec { long sec, nsec; };

static unsigned long now(void)
{
	struct timespec t;
	sys3(SYS_clock_gettime, CLOCK_MONOTONIC, &t, 0);
	return (unsigned long)t.sec * 1000000000UL + (unsigned long)t.nsec;
}

static void fail(const char *what, long err)
{
	char t[24];
	put("GUEST-BENCH-FAIL ");
	put(what);
	put(" errno=");
	put(utoa((unsigned long)-err, t + sizeof t));
	put("\n");
	sys3(SYS_exit, 1, 0, 0);
}

static int run(int argc, char **argv)
{
	char t[24];
	unsigned long bytes = 0, start, n;
	long fd, r;
	const char *name;

	if (argc != 4)
		fail("usage: blkbench seqread|seqwrite|randread DEV N", -22);
	name = argv[1];
	n = parse(argv[3]);
	fd = sys3(SYS_open, argv[2], (streq(name, "seqwrite") ? O_WRONLY : O_RDONLY) | O_DIRECT | O_CLOEXEC, 0);
	if (fd < 0)
		fail("open", fd);
	memset(buf, 0x5a, sizeof buf);
	start = now();
	if (streq(name, "seqread") || streq(name, "seqwrite")) {
		long nr = streq(name, "seqread") ? SYS_pread64 : SYS_pwrite64;
		for (unsigned long i = 0; i < n; i++) {
			r = sys4(nr, fd, buf, BLOCK, (long)(i * BLOCK));
			if (r != BLOCK)
				fail(name, r < 0 ? r : -5);
			bytes += BLOCK;
		}
	} else if (streq(name, "randread")) {
		long size = sys3(SYS_lseek, fd, 0, SEEK_END);
		unsigned long blocks, x = 0x9E3779B97F4A7C15UL;
		if (size < SMALL)
			fail("size", size < 0 ? size : -22);
		blocks = (unsigned long)size / SMALL;
		for (unsigned long i = 0; i < n; i++) {
			/* xorshift64 */
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			r = sys4(SYS_pread64, fd, buf, SMALL, (long)((x % blocks) * SMALL));
			if (r != SMALL)
				fail(name, r < 0 ? r : -5);
			bytes += SMALL;
		}
	} else {
		fail(name, -22);
	}
	start = now() - start;
	sys3(SYS_close, fd, 0, 0);
	put("GUEST-BENCH ");
	put(name);
	put(" bytes=");
	put(utoa(bytes, t + sizeof t));
	put(" ns=");
	put(utoa(start, t + sizeof t));
	put("\n");
	return 0;
}

__attribute__((used)) static void start_c(long *sp)
{
	int argc = (int)sp[0];
	char **argv = (char **)(sp + 1);

	sys3(SYS_exit, run(argc, argv), 0, 0);
}

__asm__(".text\n"
	".global _start\n"
	"_start:\n"
	"	mov %rsp, %rdi\n"
	"	and $-16, %rsp\n"
	"	call start_c\n"
	"	hlt\n");
