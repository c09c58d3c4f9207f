/* Isolation (spec §10.1): the system calls Swift cannot reach through the Glibc module.
 *
 * Theory of operation:
 *   - pivot_root(2) and the capability bounding set exist only as syscall(2) or
 *     prctl(2) (variadic) and with constants from kernel headers.
 *   - shim_enter_empty_root() is the mount sequence of stage 3, in one place: make every mount
 *     unbindable (so nothing propagates out), mount a read-only tmpfs with no room on /tmp, pivot
 *     into it and detach the old root. The caller must be in a mount namespace of its own.
 *   - Seccomp: the filter is built in Swift (PasstSys/Seccomp.swift) as classic BPF instructions,
 *     laid out like struct sock_filter, and installed here. shim_syscall_number() maps the names of
 *     the allow-lists to this architecture's numbers (-1 for a name it does not know or that the
 *     architecture lacks), so the lists read the same on every architecture.
 * Functions return -1 with errno set on failure, like the syscalls they wrap. */
#ifndef SHIM_ISOLATION_H
#define SHIM_ISOLATION_H

#include <stdint.h>

/* One classic BPF instruction, as struct sock_filter (<linux/filter.h>). */
struct shim_bpf_instruction {
	uint16_t code;
	uint8_t jump_true;
	uint8_t jump_false;
	uint32_t k;
};

/* Classic BPF opcodes and seccomp constants the filter uses (checked in shim_isolation.c). */
#define SHIM_BPF_LOAD_WORD_ABSOLUTE	0x20	/* BPF_LD | BPF_W | BPF_ABS */
#define SHIM_BPF_JUMP_EQUAL		0x15	/* BPF_JMP | BPF_JEQ | BPF_K */
#define SHIM_BPF_RETURN			0x06	/* BPF_RET | BPF_K */
#define SHIM_SECCOMP_DATA_NR		0	/* offsetof(struct seccomp_data, nr) */
#define SHIM_SECCOMP_DATA_ARCH		4	/* offsetof(struct seccomp_data, arch) */
#define SHIM_SECCOMP_RET_ALLOW		0x7fff0000U
#define SHIM_SECCOMP_RET_KILL_PROCESS	0x80000000U

/** The AUDIT_ARCH_* value seccomp reports for this build's architecture. */
uint32_t shim_audit_arch(void);

/** This architecture's number of system call name ("read"), or -1 if unknown here. */
long shim_syscall_number(const char *name);

/** Installs count instructions as a seccomp filter of the calling thread (needs no_new_privs). */
int shim_seccomp_install(const struct shim_bpf_instruction *instructions, uint16_t count);

/** Stage 3's mounts: / unbindable, read-only empty tmpfs on /tmp, pivot_root into it, old root
 *  detached, working directory /. On failure *step names what failed. */
int shim_enter_empty_root(const char **step);

/** Drops every capability from the bounding set (PR_CAPBSET_DROP, needs CAP_SETPCAP). */
int shim_clear_bounding_set(void);

#endif
