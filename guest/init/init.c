// SPDX-License-Identifier: Apache-2.0
/*
 * init.c: PID 1 of gvmm's test initramfs.
 *
 * Why it is written like this: on the nested KVM backend of the development
 * and CI machines (kvm_pvm) guest kernel code is emulated about 1000x slower
 * than native, so every system call, page fault, fork and exec costs
 * milliseconds to seconds. A busybox shell script as /init, forking once per
 * command, took many minutes. This program reaches a verdict with a few dozen
 * system calls, touches a handful of pages, never forks and only execs when a
 * test asks for the busybox script. It has no libc (no startup code, stdio,
 * TLS or locale): raw system calls through inline asm, entry at _start.
 *
 * Contract (guest/README.md has the full text):
 *   - mount proc, sysfs, devtmpfs; print GUEST-BOOT-OK;
 *   - load /lib/modules/load-order with finit_module and print
 *     GUEST-MODULES with how many loaded (GUEST-INSMOD-FAIL for each that
 *     did not);
 *   - print GUEST-KERNEL, GUEST-NPROC, GUEST-MEM, GUEST-CMDLINE,
 *     GUEST-UPTIME, one per line;
 *   - test=LIST on the kernel command line: exec "/bin/busybox sh /test.sh",
 *     which ends with "exec /init --exit VERDICT" (the exit step below);
 *   - exit step chosen by initexit= (poweroff, reboot, halt, testexit,
 *     testexit=N), after printing GUEST-VERDICT and GUEST-EXIT.
 *
 * Build (guest/init/build.sh): gcc -static -nostdlib -ffreestanding -Os ...
 */

#include "freestanding.h"

/* x86-64 system call numbers (arch/x86/entry/syscalls/syscall_64.tbl). */
enum {
	SYS_read = 0, SYS_write = 1, SYS_open = 2, SYS_close = 3, SYS_ioctl = 16,
	SYS_pwrite64 = 18, SYS_dup2 = 33, SYS_execve = 59, SYS_exit = 60,
	SYS_uname = 63, SYS_fcntl = 72, SYS_sync = 162, SYS_mount = 165,
	SYS_reboot = 169, SYS_ioperm = 173, SYS_finit_module = 313,
};

enum { O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2, O_CLOEXEC = 02000000 };
enum { F_GETFD = 1 };
/* TCSBRK with a non-zero argument is tcdrain() (include/uapi/asm-generic/ioctls.h). */
enum { TCSBRK = 0x5409 };
enum { EINTR = 4, EBUSY = 16, EEXIST = 17 };

/* reboot(2) magic numbers and commands (include/uapi/linux/reboot.h). */
#define REBOOT_MAGIC1 0xfee1deadL
#define REBOOT_MAGIC2 672274793L
#define REBOOT_RESTART 0x01234567L
#define REBOOT_HALT 0xCDEF0123L
#define REBOOT_POWER_OFF 0x4321FEDCL

/* The test-exit port, like QEMU's isa-debug-exit: the VMM exits with
 * status (value << 1) | 1. */
#define TESTEXIT_PORT 0xf4

/*
 * Verdict bits, ORed together; 0 means every check passed. test.sh uses
 * the same numbers (8, 16) for its own checks.
 */
enum {
	V_MOUNT = 1,  /* mounting proc, sysfs or devtmpfs failed, or no console */
	V_MODULE = 2, /* a module in load-order failed to load */
	V_READ = 4,   /* reading /proc or /sys failed */
	V_TEST = 8,   /* test.sh: a test failed */
	V_UNKNOWN = 16, /* test.sh: unknown test name */
	V_EXEC = 32,  /* exec of /bin/busybox sh /test.sh failed */
};

static int verdict;

/*
 * Output is collected in one buffer and written with a single write(2) per
 * flush: each system call is expensive here, and the serial console costs
 * the same per byte either way. flush() is called before anything that may
 * take long or not return, so a stuck guest still shows how far it got.
 */
static char obuf[1024];
static int olen;

static void flush(void)
{
	char *p = obuf;

	while (olen > 0) {
		long n = sys3(SYS_write, 1, p, olen);
		if (n == -EINTR)
			continue;
		if (n <= 0)
			break; /* no console: nothing else to do with the text */
		p += n;
		olen -= (int)n;
	}
	olen = 0;
}

static void put(const char *s)
{
	while (*s) {
		if (olen == (int)sizeof obuf)
			flush();
		obuf[olen++] = *s++;
	}
}

/* utoa writes v in decimal, NUL-terminated, ending just before end;
 * returns where it starts. */
static char *utoa(unsigned long v, char *end)
{
	*--end = 0;
	do {
		*--end = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return end;
}

static void putnum(unsigned long v)
{
	char t[24];

	put(utoa(v, t + sizeof t));
}

/* fail reports a failed step without stopping: the guest must still reach
 * its exit step so the VMM sees a verdict instead of a hang. */
static void fail(int bit, const char *what, const char *arg, long err)
{
	put("GUEST-PANIC ");
	put(what);
	if (arg) {
		put(" ");
		put(arg);
	}
	put(" errno=");
	putnum((unsigned long)-err);
	put("\n");
	verdict |= bit;
}

static int startswith(const char *s, const char *p)
{
	while (*p)
		if (*s++ != *p++)
			return 0;
	return 1;
}

static int streq(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return *a == *b;
}

static unsigned long parsenum(const char **sp)
{
	const char *s = *sp;
	unsigned long v = 0;

	while (*s >= '0' && *s <= '9')
		v = v * 10 + (unsigned long)(*s++ - '0');
	*sp = s;
	return v;
}

/*
 * readfile reads up to size-1 bytes with one read(2) (enough for the small
 * /proc and /sys files used here), NUL-terminates, and strips one trailing
 * newline. Returns the length or -errno.
 */
static long readfile(const char *path, char *buf, long size)
{
	long fd = sys3(SYS_open, path, O_RDONLY | O_CLOEXEC, 0);
	long n;

	if (fd < 0)
		return fd;
	n = sys3(SYS_read, fd, buf, size - 1);
	sys3(SYS_close, fd, 0, 0);
	if (n < 0)
		return n;
	if (n > 0 && buf[n - 1] == '\n')
		n--;
	buf[n] = 0;
	return n;
}

/*
 * console makes fds 0-2 the console if the kernel could not open it (it
 * does so before starting /init only when /dev/console exists).
 */
static int console(void)
{
	long fd;

	if (sys3(SYS_fcntl, 1, F_GETFD, 0) >= 0)
		return 1;
	fd = sys3(SYS_open, "/dev/console", O_RDWR, 0);
	if (fd < 0)
		return 0;
	for (int i = 0; i < 3; i++)
		if (fd != i)
			sys3(SYS_dup2, fd, i, 0);
	if (fd > 2)
		sys3(SYS_close, fd, 0, 0);
	return 1;
}

static void mountfs(const char *type, const char *dir)
{
	long err = sys5(SYS_mount, type, dir, type, 0, 0);

	/* EBUSY: already mounted (devtmpfs with CONFIG_DEVTMPFS_MOUNT). */
	if (err < 0 && err != -EBUSY)
		fail(V_MOUNT, "mount", dir, err);
}

/* The command line, and pointers into it for the options /init reads. */
static char cmdline[2048 + 1]; /* x86 COMMAND_LINE_SIZE is 2048 */
static const char *opt_test, *opt_exit;

/* option returns the value of the first "key=value" word on the command
 * line (copied to dst, which ends at the next space) or 0. */
static const char *option(const char *key, char *dst, int size)
{
	const char *s = cmdline;

	while (*s) {
		while (*s == ' ')
			s++;
		if (startswith(s, key)) {
			int i = 0;
			while (*key)
				key++, s++;
			while (*s && *s != ' ' && i < size - 1)
				dst[i++] = *s++;
			dst[i] = 0;
			return dst;
		}
		while (*s && *s != ' ')
			s++;
	}
	return 0;
}

/*
 * loadmodules loads each module named in /lib/modules/load-order, one file
 * name per line, in that order (dependencies first; modprobe is not
 * available and would need modules.dep).
 */
static void loadmodules(void)
{
	static char list[1024];
	static char path[256] = "/lib/modules/";
	const int dirlen = 13; /* strlen("/lib/modules/") */
	long n = readfile("/lib/modules/load-order", list, sizeof list);
	char *s = list;

	unsigned long loaded = 0;

	if (n < 0)
		return; /* no modules in this image */
	while (*s) {
		char *name = s;
		int i = dirlen;
		long fd, err;

		while (*s && *s != '\n')
			s++;
		if (*s)
			*s++ = 0;
		if (!*name || *name == '#')
			continue;
		for (const char *p = name; *p && i < (int)sizeof path - 1;)
			path[i++] = *p++;
		path[i] = 0;
		fd = sys3(SYS_open, path, O_RDONLY | O_CLOEXEC, 0);
		err = fd;
		if (fd >= 0) {
			err = sys3(SYS_finit_module, fd, "", 0);
			sys3(SYS_close, fd, 0, 0);
		}
		if (err < 0 && err != -EEXIST) {
			put("GUEST-INSMOD-FAIL ");
			put(name);
			put(" ");
			putnum((unsigned long)-err);
			put("\n");
			verdict |= V_MODULE;
		} else {
			loaded++;
		}
	}
	put("GUEST-MODULES ");
	putnum(loaded);
	put("\n");
}

/* nproc counts the CPUs in a list such as "0-1", "0" or "0-3,5". */
static unsigned long nproc(const char *s)
{
	unsigned long count = 0;

	while (*s >= '0' && *s <= '9') {
		unsigned long lo = parsenum(&s), hi = lo;
		if (*s == '-') {
			s++;
			hi = parsenum(&s);
		}
		if (hi >= lo)
			count += hi - lo + 1;
		if (*s == ',')
			s++;
	}
	return count;
}

static void report(void)
{
	static char buf[256];
	static char uts[6 * 65]; /* struct utsname */
	const char *s;
	long n;

	n = sys3(SYS_uname, uts, 0, 0);
	if (n < 0)
		fail(V_READ, "uname", 0, n);
	else {
		put("GUEST-KERNEL ");
		put(uts + 2 * 65); /* release */
		put("\n");
	}

	n = readfile("/sys/devices/system/cpu/online", buf, sizeof buf);
	if (n < 0)
		fail(V_READ, "read", "/sys/devices/system/cpu/online", n);
	else {
		put("GUEST-NPROC ");
		putnum(nproc(buf));
		put("\n");
	}

	/* MemTotal is the first line; 128 bytes hold it. */
	n = readfile("/proc/meminfo", buf, 128);
	s = buf + 9;
	if (n < 0)
		fail(V_READ, "read", "/proc/meminfo", n);
	else if (!startswith(buf, "MemTotal:"))
		fail(V_READ, "parse", "/proc/meminfo", 0);
	else {
		while (*s == ' ')
			s++;
		put("GUEST-MEM MemTotal: ");
		putnum(parsenum(&s));
		put(" kB\n");
	}

	put("GUEST-CMDLINE ");
	put(cmdline);
	put("\n");
}

static void uptime(void)
{
	static char buf[64];
	long n = readfile("/proc/uptime", buf, sizeof buf);
	char *s = buf;

	if (n < 0) {
		fail(V_READ, "read", "/proc/uptime", n);
		return;
	}
	while (*s && *s != ' ')
		s++;
	*s = 0;
	put("GUEST-UPTIME ");
	put(buf);
	put("\n");
}

/*
 * testexit writes v to the test-exit port. /dev/port first: the kernel does
 * the outb at CPL0, which needs nothing from the nested backend's handling of
 * user-mode port I/O, and the small CI kernel has CONFIG_DEVPORT but no
 * CONFIG_X86_IOPL_IOPERM. ioperm + outb second: Debian's kernels have
 * ioperm but no /dev/port. Returns only if neither ended the VM.
 */
static void testexit(unsigned char v)
{
	long fd = sys3(SYS_open, "/dev/port", O_WRONLY | O_CLOEXEC, 0);
	long err;

	if (fd >= 0) {
		err = sys4(SYS_pwrite64, fd, &v, 1, TESTEXIT_PORT);
		sys3(SYS_close, fd, 0, 0);
		if (err < 0)
			fail(0, "write", "/dev/port", err);
	}
	err = sys3(SYS_ioperm, TESTEXIT_PORT, 1, 1);
	if (err == 0)
		__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"((unsigned short)TESTEXIT_PORT));
	else
		fail(0, "ioperm", 0, err);
	put("GUEST-PANIC testexit: port 0xf4 did not stop the VM\n");
}

/*
 * finish is the exit step. PID 1 must never return, so whatever fails falls
 * through to the next, more drastic way out: poweroff, then reboot, then
 * exit (a kernel panic, which panic=-1 turns into a reboot).
 */
static void __attribute__((noreturn)) finish(void)
{
	const char *m = opt_exit ? opt_exit : "poweroff";
	long cmd = REBOOT_POWER_OFF;

	put("GUEST-VERDICT ");
	putnum((unsigned long)verdict);
	put("\nGUEST-EXIT ");
	put(m);
	put("\n");
	flush();
	/*
	 * write() returns once the tty has the bytes, not once the UART sent
	 * them: with several CPUs the transmit interrupt may run after this
	 * point. Wait for the console to drain, or a test exit, which ends the
	 * VM at once, cuts off the last lines.
	 */
	sys3(SYS_ioctl, 1, TCSBRK, 1);
	sys3(SYS_sync, 0, 0, 0);

	if (startswith(m, "testexit") && (m[8] == 0 || m[8] == '=')) {
		const char *s = m + 8;
		unsigned long v = (unsigned long)verdict;
		if (*s == '=') {
			s++;
			v = parsenum(&s);
		}
		testexit((unsigned char)v);
	} else if (streq(m, "reboot"))
		cmd = REBOOT_RESTART;
	else if (streq(m, "halt"))
		cmd = REBOOT_HALT;
	else if (!streq(m, "poweroff")) {
		put("GUEST-PANIC unknown initexit=");
		put(m);
		put(", powering off\n");
		flush();
	}

	sys4(SYS_reboot, REBOOT_MAGIC1, REBOOT_MAGIC2, cmd, 0);
	sys4(SYS_reboot, REBOOT_MAGIC1, REBOOT_MAGIC2, REBOOT_RESTART, 0);
	put("GUEST-PANIC reboot returned\n");
	flush();
	for (;;)
		sys3(SYS_exit, verdict, 0, 0);
}

static char *const script_argv[] = { "/bin/busybox", "sh", "/test.sh", 0 };

/* runtests replaces /init with the busybox script; it only returns if the
 * exec failed. The script gets the test list and the verdict so far in its
 * environment and hands back with "exec /init --exit VERDICT". */
static void runtests(const char *tests)
{
	static char envtest[160] = "GUEST_TEST=";
	static char envverdict[40] = "GUEST_VERDICT=";
	char *envp[] = { "HOME=/", "TERM=linux", "PATH=/bin:/sbin:/usr/bin:/usr/sbin",
			 envtest, envverdict, 0 };
	char num[24], *d = envtest + 11;
	const char *s;
	long err;

	while (*tests && d < envtest + sizeof envtest - 1)
		*d++ = *tests++;
	*d = 0;
	d = envverdict + 14;
	for (s = utoa((unsigned long)verdict, num + sizeof num); *s;)
		*d++ = *s++;
	*d = 0;

	err = sys3(SYS_execve, script_argv[0], script_argv, envp);
	fail(V_EXEC, "exec", "/bin/busybox sh /test.sh", err);
}

/* Not static: _start below calls it by name. */
void __attribute__((noreturn)) start(long *sp);
void start(long *sp)
{
	static char testbuf[128], exitbuf[32];
	long argc = sp[0];
	char **argv = (char **)(sp + 1);
	long n;

	/* "/init --exit VERDICT": test.sh is done, only the exit step is left
	 * (/proc is mounted already). */
	if (argc >= 3 && streq(argv[1], "--exit")) {
		const char *s = argv[2];
		verdict = (int)parsenum(&s);
		if (readfile("/proc/cmdline", cmdline, sizeof cmdline) >= 0)
			opt_exit = option("initexit=", exitbuf, sizeof exitbuf);
		uptime();
		finish();
	}

	int have_console = console();
	mountfs("proc", "/proc");
	mountfs("sysfs", "/sys");
	mountfs("devtmpfs", "/dev");
	if (!have_console && !console())
		verdict |= V_MOUNT; /* nobody will read this, but the verdict will */

	n = readfile("/proc/cmdline", cmdline, sizeof cmdline);
	if (n < 0)
		fail(V_READ, "read", "/proc/cmdline", n);
	opt_test = option("test=", testbuf, sizeof testbuf);
	opt_exit = option("initexit=", exitbuf, sizeof exitbuf);

	/*
	 * User space is up: say so before the modules take their time (each
	 * is hashed and its signature checked in kernel code, minutes on an
	 * emulating host). The first sign of life matters most on a slow
	 * guest, and the mount failures above go out with it.
	 */
	put("GUEST-BOOT-OK\n");
	flush();
	loadmodules();
	report();
	uptime();

	if (opt_test) {
		flush(); /* exec discards the buffer */
		runtests(opt_test);
	}
	finish();
}

/* The kernel enters with the stack pointer at argc; the ABI wants it 16-byte
 * aligned before the call. */
__asm__(".text\n"
	".global _start\n"
	"_start:\n"
	"	xor %ebp, %ebp\n"
	"	mov %rsp, %rdi\n"
	"	and $-16, %rsp\n"
	"	call start\n"
	"	ud2\n");
