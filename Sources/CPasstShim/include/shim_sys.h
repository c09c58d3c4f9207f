/* Kernel interfaces for PasstSys that Swift cannot import from the Glibc module.
 *
 * Theory of operation: the Swift Glibc module leaves out the Linux-specific headers (epoll, timerfd,
 * signalfd, falloc), so they are included here and reach Swift through CPasstShim. Functions below
 * exist only where a direct call is impossible from Swift: variadic prototypes (prctl), a
 * transparent-union parameter (accept4), siginfo_t union members (waitid), GNU-only declarations
 * the Glibc module hides (pipe2, close_range, fallocate, recvmmsg, sendmmsg, splice, struct
 * mmsghdr), and struct tcp_info fields that glibc's <netinet/tcp.h> lacks (tcpi_bytes_acked,
 * tcpi_min_rtt, tcpi_snd_wnd; the .c file reads them through the kernel's <linux/tcp.h>). All
 * return -1 with errno set on failure, like the syscalls they wrap.
 *
 * Include only headers the Glibc module lacks (plus what the declarations below need): a libc
 * header first reached through this module can take its declarations away from Glibc in
 * whole-module builds (seen with <unistd.h>: _SC_PAGESIZE vanished for files importing Glibc). */
#ifndef SHIM_SYS_H
#define SHIM_SYS_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/timerfd.h>
#include <sys/signalfd.h>
#include <sys/statfs.h>
#include <linux/falloc.h>

/* The TCP_INFO fields the TCP translation mirrors towards the guest (spec §6.5). A has_* flag is 0
 * when the running kernel's tcp_info is too short to carry that field; the field is then 0. */
struct shim_tcp_info {
	uint64_t bytes_acked;	/* tcpi_bytes_acked: bytes acknowledged by the peer */
	uint32_t snd_wnd;	/* tcpi_snd_wnd: peer's advertised window, unscaled bytes */
	uint32_t min_rtt;	/* tcpi_min_rtt: minimum RTT seen, microseconds */
	uint32_t snd_mss;	/* tcpi_snd_mss: current sending MSS */
	uint8_t snd_wscale;	/* tcpi_snd_wscale: peer's window scale */
	uint8_t state;		/* tcpi_state: TCP_ESTABLISHED, TCP_SYN_SENT, ... */
	uint8_t has_bytes_acked;
	uint8_t has_min_rtt;
	uint8_t has_snd_wnd;
};

/* Layout twin of struct mmsghdr (GNU-only in <sys/socket.h>): one datagram of recvmmsg/sendmmsg. */
struct shim_mmsghdr {
	struct msghdr msg_hdr;	/* the datagram's buffers, address and control data */
	unsigned int msg_len;	/* bytes received or sent */
};

/* splice(2) flags (Linux ABI values; GNU-only in <fcntl.h>). */
#define SHIM_SPLICE_F_MOVE	1U
#define SHIM_SPLICE_F_NONBLOCK	2U
#define SHIM_SPLICE_F_MORE	4U

/* A child reaped by shim_waitid_nohang(). */
struct shim_child_exit {
	pid_t pid;	/* si_pid of the child */
	int code;	/* si_code: CLD_EXITED, CLD_KILLED or CLD_DUMPED */
	int status;	/* si_status: exit status or signal number */
};

/** Reads TCP_INFO of socket fd into out; returns 0 or -1 with errno. */
int shim_tcp_info(int fd, struct shim_tcp_info *out);

/** accept4(2) with a plain sockaddr pointer; returns the new fd or -1 with errno. */
int shim_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);

/** prctl(2) with all four optional arguments; returns the prctl result or -1 with errno. */
int shim_prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4,
	       unsigned long arg5);

/** pipe2(2); returns 0 with fds filled or -1 with errno. */
int shim_pipe2(int fds[2], int flags);

/** close_range(2); returns 0 or -1 with errno. */
int shim_close_range(unsigned int first, unsigned int last, int flags);

/** fallocate(2) with FALLOC_FL_* mode; returns 0 or -1 with errno. */
int shim_fallocate(int fd, int mode, off_t offset, off_t len);

/** getrandom(2) of len bytes into buf; returns the byte count or -1 with errno. */
ssize_t shim_getrandom(void *buf, size_t len, unsigned int flags);

/** recvmmsg(2) without timeout; returns the number of datagrams or -1 with errno. */
int shim_recvmmsg(int fd, struct shim_mmsghdr *vec, unsigned int vlen, int flags);

/** sendmmsg(2); returns the number of datagrams sent or -1 with errno. */
int shim_sendmmsg(int fd, struct shim_mmsghdr *vec, unsigned int vlen, int flags);

/* Bytes of control data holding one UDP_SEGMENT message (CMSG_SPACE of a 16-bit value). */
#define SHIM_UDP_SEGMENT_SPACE 24

/** Writes a UDP_SEGMENT control message (UDP GSO: the kernel cuts the datagram into segments of
 *  segment_size payload bytes) into buffer, which has SHIM_UDP_SEGMENT_SPACE bytes; returns the
 *  control length for msg_controllen. */
size_t shim_udp_segment_control(void *buffer, uint16_t segment_size);

/** splice(2) between fd_in and fd_out at their current offsets; returns bytes moved or -1. */
ssize_t shim_splice(int fd_in, int fd_out, size_t len, unsigned int flags);

/** Reaps one exited child without blocking; returns 1 (out filled), 0 (none ready) or -1. */
int shim_waitid_nohang(struct shim_child_exit *out);

#endif
