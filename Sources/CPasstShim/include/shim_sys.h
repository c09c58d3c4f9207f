/* Kernel interfaces for PasstSys that Swift cannot import from the Glibc module.
 *
 * Theory of operation: the Swift Glibc module leaves out the Linux-specific headers (epoll, timerfd,
 * signalfd, falloc), so they are included here and reach Swift through CPasstShim. Functions below
 * exist only where a direct call is impossible from Swift: variadic prototypes (prctl), a
 * transparent-union parameter (accept4), siginfo_t union members (waitid), and struct tcp_info
 * fields that glibc's <netinet/tcp.h> lacks (tcpi_bytes_acked, tcpi_min_rtt, tcpi_snd_wnd; the .c
 * file reads them through the kernel's <linux/tcp.h>). All return -1 with errno set on failure,
 * like the syscalls they wrap. */
#ifndef SHIM_SYS_H
#define SHIM_SYS_H

#include <stdint.h>
#include <signal.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/uio.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <sys/signalfd.h>
#include <linux/falloc.h>

/* The TCP_INFO fields the TCP translation mirrors towards the guest (spec §6.5). A has_* flag is 0
 * when the running kernel's tcp_info is too short to carry that field; the field is then 0. */
struct shim_tcp_info {
	uint64_t bytes_acked;	/* tcpi_bytes_acked: bytes acknowledged by the peer */
	uint32_t snd_wnd;	/* tcpi_snd_wnd: peer's advertised window, unscaled bytes */
	uint32_t min_rtt;	/* tcpi_min_rtt: minimum RTT seen, microseconds */
	uint32_t snd_mss;	/* tcpi_snd_mss: current sending MSS */
	uint8_t snd_wscale;	/* tcpi_snd_wscale: peer's window scale */
	uint8_t has_bytes_acked;
	uint8_t has_min_rtt;
	uint8_t has_snd_wnd;
};

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

/** Reaps one exited child without blocking; returns 1 (out filled), 0 (none ready) or -1. */
int shim_waitid_nohang(struct shim_child_exit *out);

#endif
