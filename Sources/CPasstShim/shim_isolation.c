/* Isolation system calls (see shim_isolation.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#include "shim_isolation.h"

_Static_assert(sizeof(struct shim_bpf_instruction) == sizeof(struct sock_filter) &&
	       offsetof(struct shim_bpf_instruction, k) == offsetof(struct sock_filter, k),
	       "struct shim_bpf_instruction must match struct sock_filter");
_Static_assert(SHIM_BPF_LOAD_WORD_ABSOLUTE == (BPF_LD | BPF_W | BPF_ABS) &&
	       SHIM_BPF_JUMP_EQUAL == (BPF_JMP | BPF_JEQ | BPF_K) && SHIM_BPF_RETURN == (BPF_RET | BPF_K),
	       "BPF opcodes");
_Static_assert(SHIM_SECCOMP_DATA_NR == offsetof(struct seccomp_data, nr) &&
	       SHIM_SECCOMP_DATA_ARCH == offsetof(struct seccomp_data, arch), "struct seccomp_data");
_Static_assert(SHIM_SECCOMP_RET_ALLOW == SECCOMP_RET_ALLOW &&
	       SHIM_SECCOMP_RET_KILL_PROCESS == SECCOMP_RET_KILL_PROCESS, "seccomp return values");

#if defined(__x86_64__)
#define THIS_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define THIS_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#error "no seccomp architecture for this target"
#endif

uint32_t shim_audit_arch(void)
{
	return THIS_AUDIT_ARCH;
}

/* Every system call an allow-list may name; entries missing on an architecture are left out. */
#define SYSCALL(name) { #name, __NR_##name },
static const struct {
	const char *name;
	long number;
} known_syscalls[] = {
	SYSCALL(accept) SYSCALL(accept4) SYSCALL(bind) SYSCALL(brk) SYSCALL(clock_gettime)
	SYSCALL(clock_nanosleep) SYSCALL(clone) SYSCALL(clone3) SYSCALL(close) SYSCALL(connect)
	SYSCALL(dup) SYSCALL(dup3) SYSCALL(epoll_ctl) SYSCALL(epoll_pwait) SYSCALL(exit)
	SYSCALL(exit_group) SYSCALL(fallocate) SYSCALL(fcntl) SYSCALL(fstat) SYSCALL(ftruncate)
	SYSCALL(futex) SYSCALL(getpid) SYSCALL(getrandom) SYSCALL(getsockname) SYSCALL(getpeername)
	SYSCALL(getsockopt) SYSCALL(gettid) SYSCALL(ioctl) SYSCALL(kill) SYSCALL(listen) SYSCALL(lseek)
	SYSCALL(madvise) SYSCALL(mmap) SYSCALL(mprotect) SYSCALL(mremap) SYSCALL(munmap)
	SYSCALL(nanosleep) SYSCALL(newfstatat) SYSCALL(openat) SYSCALL(pipe2) SYSCALL(ppoll)
	SYSCALL(pread64) SYSCALL(pwrite64) SYSCALL(read) SYSCALL(readv) SYSCALL(recvfrom) SYSCALL(recvmmsg)
	SYSCALL(recvmsg) SYSCALL(rseq) SYSCALL(rt_sigprocmask) SYSCALL(rt_sigreturn)
	SYSCALL(sched_yield) SYSCALL(sendmmsg) SYSCALL(sendmsg) SYSCALL(sendto) SYSCALL(set_robust_list)
	SYSCALL(setns) SYSCALL(setsockopt) SYSCALL(shutdown) SYSCALL(socket) SYSCALL(splice)
	SYSCALL(timerfd_create) SYSCALL(timerfd_gettime) SYSCALL(timerfd_settime) SYSCALL(waitid)
	SYSCALL(wait4) SYSCALL(write) SYSCALL(writev)
#ifdef __NR_epoll_wait
	SYSCALL(epoll_wait)
#endif
#ifdef __NR_poll
	SYSCALL(poll)
#endif
#ifdef __NR_getppid
	SYSCALL(getppid)
#endif
#ifdef __NR_mkdirat
	SYSCALL(mkdirat)
#endif
};

long shim_syscall_number(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(known_syscalls) / sizeof(known_syscalls[0]); i++) {
		if (!strcmp(known_syscalls[i].name, name))
			return known_syscalls[i].number;
	}
	return -1;
}

int shim_seccomp_install(const struct shim_bpf_instruction *instructions, uint16_t count)
{
	struct sock_fprog program = {
		.len = count,
		.filter = (struct sock_filter *)instructions,
	};

	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program, 0, 0);
}

int shim_enter_empty_root(const char **step)
{
	*step = "make / unbindable";
	if (mount("", "/", "", MS_UNBINDABLE | MS_REC, NULL))
		return -1;
	*step = "mount an empty tmpfs on /tmp";
	if (mount("", "/tmp", "tmpfs", MS_NODEV | MS_NOEXEC | MS_NOSUID | MS_RDONLY, "nr_inodes=2,nr_blocks=0"))
		return -1;
	*step = "chdir /tmp";
	if (chdir("/tmp"))
		return -1;
	*step = "pivot_root";
	if (syscall(SYS_pivot_root, ".", "."))
		return -1;
	*step = "detach the old root";
	if (umount2(".", MNT_DETACH | UMOUNT_NOFOLLOW))
		return -1;
	*step = "chdir /";
	return chdir("/");
}

int shim_clear_bounding_set(void)
{
	int cap;

	for (cap = 0; cap <= 63; cap++) {
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)) {
			if (errno == EINVAL)
				return 0;	/* past the kernel's last capability */
			return -1;
		}
	}
	return 0;
}
