/* Kernel interfaces for PasstSys that Swift cannot call directly (see shim_sys.h).
 *
 * struct tcp_info comes from the kernel's <linux/tcp.h>, which is newer than glibc's copy and has
 * tcpi_snd_wnd; the two headers conflict, so this file includes only the kernel one. A field is
 * reported as present when the length the kernel returned covers it (older kernels return a
 * shorter struct). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <linux/tcp.h>

#include "shim_sys.h"

_Static_assert(sizeof(struct shim_mmsghdr) == sizeof(struct mmsghdr) &&
	       offsetof(struct shim_mmsghdr, msg_len) == offsetof(struct mmsghdr, msg_len),
	       "struct shim_mmsghdr must match struct mmsghdr");
_Static_assert(SHIM_SPLICE_F_MOVE == SPLICE_F_MOVE && SHIM_SPLICE_F_NONBLOCK == SPLICE_F_NONBLOCK &&
	       SHIM_SPLICE_F_MORE == SPLICE_F_MORE, "splice flag values");

/** True when a returned tcp_info of len bytes covers the named member. */
#define TCPI_HAS(len, member) \
	((len) >= offsetof(struct tcp_info, member) + sizeof(((struct tcp_info *)0)->member))

int shim_tcp_info(int fd, struct shim_tcp_info *out)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	memset(&ti, 0, sizeof(ti));
	memset(out, 0, sizeof(*out));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len))
		return -1;

	out->snd_mss = ti.tcpi_snd_mss;
	out->snd_wscale = ti.tcpi_snd_wscale;
	out->state = ti.tcpi_state;
	out->has_bytes_acked = TCPI_HAS(len, tcpi_bytes_acked);
	out->has_min_rtt = TCPI_HAS(len, tcpi_min_rtt);
	out->has_snd_wnd = TCPI_HAS(len, tcpi_snd_wnd);
	if (out->has_bytes_acked)
		out->bytes_acked = ti.tcpi_bytes_acked;
	if (out->has_min_rtt)
		out->min_rtt = ti.tcpi_min_rtt;
	if (out->has_snd_wnd)
		out->snd_wnd = ti.tcpi_snd_wnd;
	return 0;
}

int shim_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	return accept4(fd, addr, len, flags);
}

int shim_pipe2(int fds[2], int flags)
{
	return pipe2(fds, flags);
}

int shim_close_range(unsigned int first, unsigned int last, int flags)
{
	return close_range(first, last, flags);
}

int shim_fallocate(int fd, int mode, off_t offset, off_t len)
{
	return fallocate(fd, mode, offset, len);
}

ssize_t shim_getrandom(void *buf, size_t len, unsigned int flags)
{
	return getrandom(buf, len, flags);
}

int shim_recvmmsg(int fd, struct shim_mmsghdr *vec, unsigned int vlen, int flags)
{
	return recvmmsg(fd, (struct mmsghdr *)vec, vlen, flags, NULL);
}

int shim_sendmmsg(int fd, struct shim_mmsghdr *vec, unsigned int vlen, int flags)
{
	return sendmmsg(fd, (struct mmsghdr *)vec, vlen, flags);
}

_Static_assert(SHIM_UDP_SEGMENT_SPACE == CMSG_SPACE(sizeof(uint16_t)), "UDP_SEGMENT control space");

size_t shim_udp_segment_control(void *buffer, uint16_t segment_size)
{
	struct cmsghdr *cmsg = buffer;

	memset(buffer, 0, SHIM_UDP_SEGMENT_SPACE);
	cmsg->cmsg_level = SOL_UDP;
	cmsg->cmsg_type = UDP_SEGMENT;
	cmsg->cmsg_len = CMSG_LEN(sizeof(uint16_t));
	memcpy(CMSG_DATA(cmsg), &segment_size, sizeof(segment_size));
	return SHIM_UDP_SEGMENT_SPACE;
}

ssize_t shim_splice(int fd_in, int fd_out, size_t len, unsigned int flags)
{
	return splice(fd_in, NULL, fd_out, NULL, len, flags);
}

int shim_prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4,
	       unsigned long arg5)
{
	return prctl(option, arg2, arg3, arg4, arg5);
}

int shim_waitid_nohang(struct shim_child_exit *out)
{
	siginfo_t info;

	memset(&info, 0, sizeof(info));
	if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG))
		return -1;
	if (!info.si_pid)
		return 0;

	out->pid = info.si_pid;
	out->code = info.si_code;
	out->status = info.si_status;
	return 1;
}
