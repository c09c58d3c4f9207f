// Giving up what the daemon does not need (spec §10.1), in upstream's four stages.
//
// Theory of operation: a guest is untrusted, so the process that parses its frames should hold
// as little as possible by the time the first frame arrives.
//   1. At start (`startUp`, right after the command line is parsed, before any file is opened):
//      every inherited descriptor above 2 is closed, except passt's -F socket, and the
//      capabilities are cut to those set-up may still need (NET_BIND_SERVICE, NET_ADMIN,
//      SYS_ADMIN, SETUID, SETGID; SETFCAP and SYS_PTRACE for user namespace maps and attaching;
//      SETPCAP for stage 3's bounding set).
//   2. The --runas switch and the user namespace: pasta's in NamespaceSetup.swift; passt switches
//      to its IDs keeping nothing, then creates a user namespace of its own
//      (`createUserNamespace`), in which it holds every capability for stage 3 only.
//   3. Before going to the background (`detach`): new IPC, mount and UTS namespaces (and PID,
//      which only the processes forked later enter: not for a pasta staying in the foreground,
//      as it could not start its namespace threads then), every mount made unbindable, a read-only
//      tmpfs with no room mounted on /tmp and pivoted into, the old root detached: from here no
//      path resolves to anything, so every file is opened before (PID file, pcap, log, /dev/null,
//      /proc tables, namespace files). The bounding and inheritable sets are emptied and only
//      what the loop needs stays: nothing for passt, SYS_ADMIN (setns into the target for
//      sockets there) and NET_BIND_SERVICE (low ports there) for pasta.
//   4. Right before the loop (`lockDown`): not dumpable (no core dumps, no ptrace or /proc access
//      by our own user), no_new_privs, and the seccomp allow-list of the mode (`allowedSyscalls`,
//      Seccomp.swift), which kills the process on any other system call.
// The lists are longer than upstream's (31 and 41 calls): this daemon allocates on its control
// path (brk, mmap, munmap, mremap, madvise, mprotect), and pasta reaches into its namespace from
// short-lived threads rather than clone(2) children (clone3, set_robust_list, rseq, exit). Each
// entry is used by the code or by the C or Swift runtime under it; the integration tests run every
// feature under the filter, and a missing entry shows as a daemon killed by SIGSYS.
import CPasstShim
import PasstConfig
import PasstFlow
import PasstSys
#if canImport(Glibc)
import Glibc
#endif

/// The four isolation stages and the seccomp allow-lists.
enum Isolation {
    /// What stage 1 keeps for set-up (see the file comment).
    static let setUpCapabilities: CapabilitySet = [.netBindService, .netAdmin, .sysAdmin, .setUID, .setGID,
                                                   .setFCap, .sysPtrace, .setPCap]

    /// System calls both modes make once the loop runs, the packet path's first.
    static let commonSyscalls = [
        "epoll_wait", "read", "write", "recvmsg", "sendmsg", "recvmmsg", "sendmmsg", "recvfrom", "sendto",
        "writev", "timerfd_settime", "timerfd_gettime", "epoll_ctl", "getsockopt", "setsockopt",
        "socket", "bind", "connect", "listen", "accept", "accept4", "shutdown", "close", "dup", "fcntl",
        "timerfd_create", "clock_gettime", "poll", "pread64", "pwrite64", "lseek", "fallocate", "ftruncate",
        "getpid", "gettid", "getrandom", "brk", "mmap", "munmap", "mremap", "madvise", "mprotect", "futex",
        "rt_sigprocmask", "rt_sigreturn", "exit_group",
    ]

    /// What pasta adds: splicing, threads entering the namespace, the /proc tables, its child.
    static let pastaOnlySyscalls = [
        "splice", "pipe2", "openat", "clone3", "clone", "set_robust_list", "rseq", "setns", "exit",
        "waitid", "kill",
    ]

    /// The seccomp allow-list of `mode`.
    static func allowedSyscalls(_ mode: ProgramMode) -> [String] {
        switch mode {
        case .passt: return commonSyscalls
        case .pasta: return commonSyscalls + pastaOnlySyscalls
        }
    }

    /// Stage 1: closes inherited descriptors above 2 but `keep` (passt's -F) and cuts the
    /// capabilities to `setUpCapabilities` (failures are logged: going on loses nothing).
    static func startUp(keeping keep: Int32?) {
        let firstInherited: UInt32 = 3
        var ranges = [(firstInherited, UInt32.max)]
        if let keep, keep >= firstInherited {
            ranges = [(firstInherited, UInt32(keep) - 1), (UInt32(keep) + 1, UInt32.max)]
        }
        for (first, last) in ranges where first <= last {
            if case .failure(let code) = Sys.closeRange(first: first, last: last) {
                Log.warning("Couldn't close inherited file descriptors: \(SyscallError(code))")
            }
        }
        if case .failure(let code) = CapabilitySet.restrict(to: setUpCapabilities) {
            Log.warning("Couldn't drop capabilities: \(SyscallError(code))")
        }
    }

    /// Stage 2 for passt (and pasta's spawn mode): unshares a user namespace mapping root inside
    /// to our own user and group (warnings only if the maps cannot be written, as upstream).
    static func createUserNamespace() throws(PastaSetupError) {
        let mapping = UserNamespaceMapping(uid: geteuid(), gid: getegid())
        if case .failure(let code) = Namespaces.unshare(.user) {
            throw PastaSetupError("Couldn't create user namespace: \(SyscallError(code))")
        }
        for failure in Namespaces.writeIDMaps(mapping) { Log.warning(failure.description) }
    }

    /// Stage 3: new IPC, mount, UTS (and with `pidNamespace` PID) namespaces, an empty read-only
    /// root, empty bounding and inheritable sets, and only `keep` of the capabilities.
    static func detach(pidNamespace: Bool, keep: CapabilitySet) throws(PastaSetupError) {
        // Files read lazily by the packet path's set-up code must be read while there is a root.
        _ = TCPFlows.largeBuffersAllowed
        var types: NamespaceTypes = [.ipc, .mount, .uts]
        if pidNamespace { types.insert(.pid) }
        if case .failure(let code) = Namespaces.unshare(types) {
            throw PastaSetupError("Couldn't unshare IPC, mount, UTS\(pidNamespace ? " and PID" : "") namespaces: "
                                  + "\(SyscallError(code))")
        }
        var step: UnsafePointer<CChar>?
        if shim_enter_empty_root(&step) != 0 {
            let code = errno
            throw PastaSetupError("Couldn't \(step.map { String(cString: $0) } ?? "pivot"): \(SyscallError(code))")
        }
        if shim_clear_bounding_set() != 0 {
            Log.debug("Couldn't clear the capability bounding set: \(SyscallError(errno))")
        }
        if case .failure(let code) = CapabilitySet.restrict(to: keep) {
            throw PastaSetupError("Couldn't drop capabilities: \(SyscallError(code))")
        }
    }

    /// PR_SET_DUMPABLE and PR_SET_NO_NEW_PRIVS (linux/prctl.h; not in Glibc's module).
    static let setDumpable: Int32 = 4
    static let setNoNewPrivileges: Int32 = 38

    /// Stage 4: not dumpable (no core dumps, no ptrace by our own user, /proc/PID files owned by
    /// root), no privilege gain through execve (nothing is executed any more: pasta's command was
    /// started before), and the seccomp allow-list of `mode`.
    /// Builds with PASST_SANITIZED defined (scripts/sanitizer-test.sh) leave the filter out: the
    /// sanitizer's runtime makes calls of its own (sigaltstack, sched_getaffinity, ...).
    static func lockDown(mode: ProgramMode) throws(PastaSetupError) {
        let filter: SeccompFilter
        do {
            filter = try SeccompFilter(allowing: allowedSyscalls(mode))
        } catch {
            throw PastaSetupError("Couldn't build the seccomp filter: \(error)")
        }
        if case .failure(let code) = Sys.prctl(Isolation.setDumpable, 0) {
            Log.warning("Couldn't clear the dumpable flag: \(SyscallError(code))")
        }
        if case .failure(let code) = Sys.prctl(Isolation.setNoNewPrivileges, 1) {
            throw PastaSetupError("Couldn't set no_new_privs: \(SyscallError(code))")
        }
        #if PASST_SANITIZED
        _ = filter   // built all the same: its names are checked
        Log.debug("Sanitizer build: no seccomp filter")
        #else
        if case .failure(let code) = filter.install() {
            throw PastaSetupError("Couldn't install the seccomp filter: \(SyscallError(code))")
        }
        #endif
    }
}
