/* Namespaces, pasta's spawned child and the tap device: the parts Swift cannot do itself.
 *
 * Theory of operation:
 *   - Namespace constants (CLONE_NEW*) and setns()/unshare() need _GNU_SOURCE, which the Swift
 *     Glibc module is not built with; they are re-exported here (values checked against <sched.h>
 *     at compile time in shim_ns.c).
 *   - shim_ns_spawn() starts pasta's command in new namespaces (spec §1.3 step 2). It calls
 *     clone() with a child stack, and everything the child does before execvp() is written in C
 *     from async-signal-safe calls only: the caller may be multi-threaded, and no Swift (or any
 *     code that could take a lock held by another thread at clone time) may run in the child.
 *     The child is held on a control socket pair (a stream: the parent's one-byte writes
 *     cannot raise SIGPIPE in the parent with MSG_NOSIGNAL, and each direction is separate):
 *
 *       parent                                   child (PID 1 of its PID namespace)
 *       clone() ----------------------------->   closes every other fd, resets signals
 *       [write uid/gid maps, send 1 byte] ---->  [waits for that byte when hold_for_id_maps]
 *                                                 / rslave, mount /proc, ping_group_range "0 0",
 *                                                 hostname "pasta-<old>" (new namespaces only)
 *       reads 4 bytes: setup warnings     <-----  sends SHIM_NS_WARN_* bits, waits for a byte
 *       send 1 byte (release) --------------->   execvp(); on failure sends errno, _exit(1)
 *       reads: EOF = exec'd, 4 bytes = errno <--  (its end is close-on-exec)
 *
 *     If the parent's end is closed without a byte (the parent died or gave up), the child's
 *     read sees EOF and it exits: a held child never outlives its parent's interest (§16.15).
 *   - The tap device: TUNSETIFF with a struct ifreq, TUNSETVNETHDRSZ and TUNSETOFFLOAD (the
 *     virtio-net header and its offloads), and SIOCGIFHWADDR/SIOCSIFHWADDR, which the tun
 *     driver answers on the device fd itself (no socket, hence namespace-independent).
 *   - Capabilities of the calling thread (capget/capset exist only as syscall(2), which is
 *     variadic), as 64-bit masks of CAP_* bit numbers, for the switch to --runas IDs.
 * Functions return -1 with errno set on failure, like the syscalls they wrap. */
#ifndef SHIM_NS_H
#define SHIM_NS_H

#include <stdint.h>
#include <sys/types.h>

/* Namespace type flags (CLONE_NEW*), for setns(), unshare() and shim_ns_spawn(). */
#define SHIM_CLONE_NEWNS	0x00020000
#define SHIM_CLONE_NEWCGROUP	0x02000000
#define SHIM_CLONE_NEWUTS	0x04000000
#define SHIM_CLONE_NEWIPC	0x08000000
#define SHIM_CLONE_NEWUSER	0x10000000
#define SHIM_CLONE_NEWPID	0x20000000
#define SHIM_CLONE_NEWNET	0x40000000

/* Setup steps of a spawned child that failed (each is a warning upstream, never fatal). */
#define SHIM_NS_WARN_PROC_MOUNT	1	/* making / a recursive slave or mounting /proc failed */
#define SHIM_NS_WARN_PING_GROUP	2	/* writing "0 0" to net.ipv4.ping_group_range failed */
#define SHIM_NS_WARN_HOSTNAME	4	/* setting hostname "pasta-<old hostname>" failed */

/* Interface name size including the terminating NUL (IFNAMSIZ). */
#define SHIM_IFNAMSIZ		16

/* A child started by shim_ns_spawn(), held before execvp(). */
struct shim_ns_spawn {
	pid_t pid;		/* child PID in the caller's PID namespace */
	int control_fd;		/* parent's end of the control socket pair (close-on-exec) */
};

/** setns(2): moves the calling thread into the namespace of fd; returns 0 or -1 with errno. */
int shim_setns(int fd, int nstype);

/** unshare(2): gives the calling thread new namespaces of the types in flags; 0 or -1. */
int shim_unshare(int flags);

/** Clones a child in the namespaces of clone_flags that will execvp(file, argv) once released;
 *  with hold_for_id_maps it also waits for one control byte before its setup. Returns 0 or -1. */
int shim_ns_spawn(const char *file, char *const argv[], int clone_flags, int hold_for_id_maps,
		  struct shim_ns_spawn *out);

/** Maps a waitpid() status to an exit code: the status, 128 + signal if killed, -1 otherwise. */
int shim_ns_exit_code(int wait_status);

/** TUNSETIFF: makes tun fd a tap (IFF_TAP|IFF_NO_PI, with IFF_VNET_HDR if virtio_header) named
 *  name ("" = kernel's choice), copies the name the kernel used to name_out; 0 or -1 with errno. */
int shim_tap_set_interface(int fd, const char *name, int virtio_header, char name_out[SHIM_IFNAMSIZ]);

/** TUNSETVNETHDRSZ header_length, then TUNSETOFFLOAD TUN_F_CSUM|TUN_F_TSO4|TUN_F_TSO6 on a tap
 *  made with IFF_VNET_HDR: the kernel then hands over and takes TCP segments of up to 64 KiB
 *  with partial checksums. Returns 0 or -1 with errno. */
int shim_tap_set_offloads(int fd, int header_length);

/** SIOCGIFHWADDR on a tap fd: copies the interface's MAC address to mac; returns 0 or -1. */
int shim_tap_get_mac(int fd, uint8_t mac[6]);

/** SIOCSIFHWADDR on a tap fd: sets the interface's MAC address; returns 0 or -1. */
int shim_tap_set_mac(int fd, const uint8_t mac[6]);

/* Capability bit numbers (<linux/capability.h>), as masks for shim_capget()/shim_capset(). */
#define SHIM_CAP_SETGID		(1ULL << 6)
#define SHIM_CAP_SETUID		(1ULL << 7)
#define SHIM_CAP_SETPCAP		(1ULL << 8)
#define SHIM_CAP_NET_BIND_SERVICE	(1ULL << 10)
#define SHIM_CAP_NET_ADMIN		(1ULL << 12)
#define SHIM_CAP_SYS_PTRACE		(1ULL << 19)
#define SHIM_CAP_SYS_ADMIN		(1ULL << 21)
#define SHIM_CAP_SETFCAP		(1ULL << 31)

/** capget(2) of the calling thread: fills the effective and permitted masks; returns 0 or -1. */
int shim_capget(uint64_t *effective, uint64_t *permitted);

/** capset(2) of the calling thread: sets effective and permitted, clears inheritable; 0 or -1. */
int shim_capset(uint64_t effective, uint64_t permitted);

#endif
