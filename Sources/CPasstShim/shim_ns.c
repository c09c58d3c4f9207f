/* Namespaces, pasta's spawned child, the tap device and capabilities (see shim_ns.h).
 *
 * Rule for everything reachable from spawn_child(): async-signal-safe calls only (raw syscalls,
 * read/write/open/close, sigaction, execvp), no malloc, no stdio, no locks. The child is a copy
 * of a possibly multi-threaded process and only the cloning thread exists in it. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <linux/capability.h>
#include <linux/if_tun.h>

#include "shim_ns.h"

_Static_assert(SHIM_CLONE_NEWNS == CLONE_NEWNS && SHIM_CLONE_NEWCGROUP == CLONE_NEWCGROUP &&
	       SHIM_CLONE_NEWUTS == CLONE_NEWUTS && SHIM_CLONE_NEWIPC == CLONE_NEWIPC &&
	       SHIM_CLONE_NEWUSER == CLONE_NEWUSER && SHIM_CLONE_NEWPID == CLONE_NEWPID &&
	       SHIM_CLONE_NEWNET == CLONE_NEWNET, "CLONE_NEW* values");
_Static_assert(SHIM_IFNAMSIZ == IFNAMSIZ, "IFNAMSIZ");
_Static_assert(SHIM_CAP_NET_BIND_SERVICE == 1ULL << CAP_NET_BIND_SERVICE &&
	       SHIM_CAP_NET_ADMIN == 1ULL << CAP_NET_ADMIN && SHIM_CAP_SYS_PTRACE == 1ULL << CAP_SYS_PTRACE &&
	       SHIM_CAP_SYS_ADMIN == 1ULL << CAP_SYS_ADMIN && SHIM_CAP_SETGID == 1ULL << CAP_SETGID &&
	       SHIM_CAP_SETUID == 1ULL << CAP_SETUID && SHIM_CAP_SETPCAP == 1ULL << CAP_SETPCAP &&
	       SHIM_CAP_SETFCAP == 1ULL << CAP_SETFCAP, "CAP_* values");

/* The child runs on its own copy of this stack until execvp(); only touched pages cost memory. */
#define SPAWN_STACK_SIZE	(256 * 1024)

/* Highest descriptor closed one by one when close_range(2) is unavailable (kernels < 5.9). */
#define SPAWN_FD_SCAN_LIMIT	65536

#define HOSTNAME_PREFIX		"pasta-"

/* Exit status of a child that never ran its command (upstream exits with EXIT_FAILURE). */
#define CHILD_FAILURE		1

/* What spawn_child() needs; lives on the parent's stack, the child sees its own copy. */
struct spawn_child_arg {
	const char *file;	/* command, looked up in PATH by execvp() */
	char *const *argv;	/* its arguments, argv[0] included */
	int control_fd;		/* child's end of the control socket pair */
	int hold_for_id_maps;	/* wait for a first control byte before the setup */
	int clone_flags;	/* namespaces the child got: setup steps touch only new ones */
};

int shim_setns(int fd, int nstype)
{
	return setns(fd, nstype);
}

int shim_unshare(int flags)
{
	return unshare(flags);
}

/** Waits for one byte from the parent; returns 1 if it came, 0 on EOF or error. */
static int wait_for_parent(int fd)
{
	ssize_t n;
	char b;

	do
		n = read(fd, &b, 1);
	while (n < 0 && errno == EINTR);

	return n == 1;
}

/** Sends all of buf to the parent, best effort (it may have gone away). */
static void send_to_parent(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		p += n;
		len -= (size_t)n;
	}
}

/** Closes descriptors first..last (inclusive), by close_range() or one by one. */
static void close_fds(unsigned int first, unsigned int last)
{
	struct rlimit lim;

	if (first > last || !close_range(first, last, 0))
		return;

	if (getrlimit(RLIMIT_NOFILE, &lim) || lim.rlim_cur > SPAWN_FD_SCAN_LIMIT)
		lim.rlim_cur = SPAWN_FD_SCAN_LIMIT;
	if (last >= lim.rlim_cur)
		last = (unsigned int)lim.rlim_cur - 1;
	for (; first <= last && first < lim.rlim_cur; first++)
		close((int)first);
}

/** Closes every descriptor above stderr except keep (which is above 2). */
static void close_other_fds(int keep)
{
	if (keep > 3)
		close_fds(3, (unsigned int)keep - 1);
	close_fds((unsigned int)keep + 1, ~0U);
}

/** Puts caught signals and SIGPIPE back to their defaults, then unblocks every signal. */
static void reset_signals(void)
{
	struct sigaction sa;
	sigset_t none;
	int sig;

	for (sig = 1; sig < NSIG; sig++) {
		if (sig == SIGKILL || sig == SIGSTOP || sigaction(sig, NULL, &sa))
			continue;
		if (sa.sa_handler == SIG_DFL || (sa.sa_handler == SIG_IGN && sig != SIGPIPE))
			continue;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = SIG_DFL;
		sigaction(sig, &sa, NULL);
	}

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/** Sets "pasta-<current hostname>" (truncated to HOST_NAME_MAX); returns 0 or -1. */
static int set_prefixed_hostname(void)
{
	char name[HOST_NAME_MAX + 1] = HOSTNAME_PREFIX;
	size_t len = sizeof(HOSTNAME_PREFIX) - 1;
	struct utsname uts;
	const char *p;

	if (uname(&uts))
		return -1;
	for (p = uts.nodename; *p && len < HOST_NAME_MAX; p++)
		name[len++] = *p;

	return sethostname(name, len);
}

/** Writes "0 0" to net.ipv4.ping_group_range of the current netns; returns 0 or -1. */
static int write_ping_group_range(void)
{
	static const char value[] = "0 0";
	int fd = open("/proc/sys/net/ipv4/ping_group_range", O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	do
		n = write(fd, value, sizeof(value) - 1);
	while (n < 0 && errno == EINTR);
	close(fd);

	return n == (ssize_t)(sizeof(value) - 1) ? 0 : -1;
}

/** The child's setup in its new namespaces; returns the SHIM_NS_WARN_* bits of failed steps. */
static unsigned int child_setup(const struct spawn_child_arg *a)
{
	unsigned int warnings = 0;

	/* Make / a recursive slave first: if it were shared with the parent's mount namespace,
	 * the new /proc would propagate there. */
	if (a->clone_flags & CLONE_NEWNS) {
		if (mount("", "/", NULL, MS_REC | MS_SLAVE, NULL) ||
		    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL))
			warnings |= SHIM_NS_WARN_PROC_MOUNT;
	}

	if ((a->clone_flags & CLONE_NEWNET) && write_ping_group_range())
		warnings |= SHIM_NS_WARN_PING_GROUP;

	if ((a->clone_flags & CLONE_NEWUTS) && set_prefixed_hostname())
		warnings |= SHIM_NS_WARN_HOSTNAME;

	return warnings;
}

/** Entry point of the cloned child: setup, wait for release, execvp; never returns. */
static int spawn_child(void *arg)
{
	const struct spawn_child_arg *a = arg;
	unsigned int warnings;
	int err;

	close_other_fds(a->control_fd);
	reset_signals();

	if (a->hold_for_id_maps && !wait_for_parent(a->control_fd))
		_exit(CHILD_FAILURE);

	warnings = child_setup(a);
	send_to_parent(a->control_fd, &warnings, sizeof(warnings));

	if (!wait_for_parent(a->control_fd))
		_exit(CHILD_FAILURE);

	execvp(a->file, a->argv);

	err = errno;
	send_to_parent(a->control_fd, &err, sizeof(err));
	_exit(CHILD_FAILURE);
}

int shim_ns_spawn(const char *file, char *const argv[], int clone_flags, int hold_for_id_maps,
		  struct shim_ns_spawn *out)
{
	struct spawn_child_arg a = { file, argv, -1, hold_for_id_maps, clone_flags };
	sigset_t all, old;
	int control[2], err;
	void *stack;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, control))
		return -1;

	stack = mmap(NULL, SPAWN_STACK_SIZE, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (stack == MAP_FAILED) {
		err = errno;
		close(control[0]);
		close(control[1]);
		errno = err;
		return -1;
	}

	a.control_fd = control[0];

	/* No handler of ours may run in the child before it resets them: block everything
	 * across clone(); the child starts with this mask and clears it itself. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pid = clone(spawn_child, (char *)stack + SPAWN_STACK_SIZE, clone_flags | SIGCHLD, &a);
	err = errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);

	munmap(stack, SPAWN_STACK_SIZE);
	close(control[0]);

	if (pid < 0) {
		close(control[1]);
		errno = err;
		return -1;
	}

	out->pid = pid;
	out->control_fd = control[1];
	return 0;
}

int shim_ns_exit_code(int wait_status)
{
	if (WIFEXITED(wait_status))
		return WEXITSTATUS(wait_status);
	if (WIFSIGNALED(wait_status))
		return 128 + WTERMSIG(wait_status);
	return -1;
}

int shim_tap_set_interface(int fd, const char *name, int virtio_header, char name_out[SHIM_IFNAMSIZ])
{
	size_t len = strlen(name);
	struct ifreq ifr;

	if (len >= IFNAMSIZ) {
		errno = EINVAL;
		return -1;
	}

	memset(&ifr, 0, sizeof(ifr));
	memcpy(ifr.ifr_name, name, len);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (virtio_header ? IFF_VNET_HDR : 0);
	if (ioctl(fd, TUNSETIFF, &ifr))
		return -1;

	memcpy(name_out, ifr.ifr_name, IFNAMSIZ);
	name_out[IFNAMSIZ - 1] = '\0';
	return 0;
}

int shim_tap_set_offloads(int fd, int header_length)
{
	unsigned int offloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;

	if (ioctl(fd, TUNSETVNETHDRSZ, &header_length))
		return -1;
	return ioctl(fd, TUNSETOFFLOAD, offloads);
}

int shim_tap_get_mac(int fd, uint8_t mac[6])
{
	struct ifreq ifr;

	memset(&ifr, 0, sizeof(ifr));
	if (ioctl(fd, SIOCGIFHWADDR, &ifr))
		return -1;

	memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
	return 0;
}

int shim_tap_set_mac(int fd, const uint8_t mac[6])
{
	struct ifreq ifr;

	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
	memcpy(ifr.ifr_hwaddr.sa_data, mac, 6);
	return ioctl(fd, SIOCSIFHWADDR, &ifr);
}

int shim_capget(uint64_t *effective, uint64_t *permitted)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

	if (syscall(SYS_capget, &hdr, data))
		return -1;

	*effective = (uint64_t)data[1].effective << 32 | data[0].effective;
	*permitted = (uint64_t)data[1].permitted << 32 | data[0].permitted;
	return 0;
}

int shim_capset(uint64_t effective, uint64_t permitted)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
	int i;

	if (syscall(SYS_capget, &hdr, data))
		return -1;

	for (i = 0; i < _LINUX_CAPABILITY_U32S_3; i++) {
		data[i].effective = (uint32_t)(effective >> (32 * i));
		data[i].permitted = (uint32_t)(permitted >> (32 * i));
		data[i].inheritable = 0;
	}

	return (int)syscall(SYS_capset, &hdr, data);
}
