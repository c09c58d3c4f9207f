// Switching to the user and group the daemon runs as (--runas), keeping chosen capabilities.
//
// Theory of operation (spec §10.1 stage 2, upstream's isolate_user): before it joins or creates
// a user namespace the daemon drops its supplementary groups (setgroups(0); EPERM tolerated, an
// unprivileged caller has none to drop), then sets its GID and UID, in that order (setgid after
// setuid would need privileges already gone). For an unprivileged caller running as itself the
// calls change nothing.
//
// Leaving UID 0 makes the kernel clear the permitted and effective capability sets and mark the
// process non-dumpable. Upstream lets both happen, so pasta started as root and attached to an
// existing namespace can no longer setns() into it, and in spawn mode cannot write its own
// /proc/self/uid_map (that file then belongs to root). We keep the capabilities asked for across
// the switch instead (PR_SET_KEEPCAPS, then capset to raise them again, since setuid clears the
// effective set even then) and make the process dumpable again, so that /proc/self belongs to the
// new user. Capabilities are per thread: this runs while the process has a single thread, and
// threads created later inherit the result.
#if canImport(Glibc)
import Glibc
#endif
import CPasstShim

/// A set of capabilities, as bits numbered like CAP_* in <linux/capability.h>.
public struct CapabilitySet: OptionSet, Hashable, Sendable {
    public let rawValue: UInt64

    /// Wraps a mask of CAP_* bits.
    @inlinable public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// Bind ports below 1024 (CAP_NET_BIND_SERVICE).
    public static let netBindService = CapabilitySet(rawValue: SHIM_CAP_NET_BIND_SERVICE)
    /// Configure interfaces, addresses and routes (CAP_NET_ADMIN).
    public static let netAdmin = CapabilitySet(rawValue: SHIM_CAP_NET_ADMIN)
    /// Open another user's /proc/PID/ns files (CAP_SYS_PTRACE).
    public static let sysPtrace = CapabilitySet(rawValue: SHIM_CAP_SYS_PTRACE)
    /// setns(2), unshare(2), mount(2) (CAP_SYS_ADMIN).
    public static let sysAdmin = CapabilitySet(rawValue: SHIM_CAP_SYS_ADMIN)
    /// Change the group IDs (CAP_SETGID).
    public static let setGID = CapabilitySet(rawValue: SHIM_CAP_SETGID)
    /// Change the user IDs (CAP_SETUID).
    public static let setUID = CapabilitySet(rawValue: SHIM_CAP_SETUID)
    /// Drop capabilities from the bounding set (CAP_SETPCAP).
    public static let setPCap = CapabilitySet(rawValue: SHIM_CAP_SETPCAP)
    /// Map root of the parent namespace in a user namespace's ID map (CAP_SETFCAP).
    public static let setFCap = CapabilitySet(rawValue: SHIM_CAP_SETFCAP)

    /// The calling thread's (effective, permitted) sets.
    public static func current() -> SyscallResult<(effective: CapabilitySet, permitted: CapabilitySet)> {
        var effective: UInt64 = 0
        var permitted: UInt64 = 0
        guard shim_capget(&effective, &permitted) == 0 else { return .failure(errno) }
        return .success((CapabilitySet(rawValue: effective), CapabilitySet(rawValue: permitted)))
    }

    /// Limits the calling thread's effective and permitted sets to the permitted ones in `keep`,
    /// all of them effective, and empties its inheritable set.
    public static func restrict(to keep: CapabilitySet) -> SyscallResult<Void> {
        let permitted: CapabilitySet
        switch current() {
        case .success(let sets): permitted = sets.permitted.intersection(keep)
        case .wouldBlock: return .wouldBlock
        case .failure(let code): return .failure(code)
        }
        return shim_capset(permitted.rawValue, permitted.rawValue) == 0 ? .success(()) : .failure(errno)
    }
}

/// Which step of `UserIdentity.switchTo` failed, and how (upstream's fatal messages).
public enum UserIdentityError: Error, Equatable, Sendable, CustomStringConvertible {
    /// setgroups(0) failed with something other than EPERM.
    case groups(Int32)
    /// setgid(gid) failed.
    case gid(UInt32, Int32)
    /// setuid(uid) failed.
    case uid(UInt32, Int32)
    /// Raising the kept capabilities again failed.
    case capabilities(Int32)

    /// The message to die with.
    public var description: String {
        switch self {
        case .groups(let code): return "Can't drop supplementary groups: \(SyscallError(code))"
        case .gid(let gid, let code): return "Can't set GID to \(gid): \(SyscallError(code))"
        case .uid(let uid, let code): return "Can't set UID to \(uid): \(SyscallError(code))"
        case .capabilities(let code): return "Couldn't keep capabilities: \(SyscallError(code))"
        }
    }
}

/// The process's user and group.
public enum UserIdentity {
    /// Drops supplementary groups and sets GID `gid` and UID `uid`, leaving the thread with the
    /// capabilities of `keep` it held before (effective and permitted) and no others.
    public static func switchTo(uid: UInt32, gid: UInt32, keeping keep: CapabilitySet) throws(UserIdentityError) {
        let changesUser = geteuid() != uid
        if changesUser { _ = Sys.prctl(PR_SET_KEEPCAPS, 1) }
        defer { if changesUser { _ = Sys.prctl(PR_SET_KEEPCAPS, 0) } }

        if setgroups(0, nil) != 0 && errno != EPERM { throw .groups(errno) }
        if setgid(gid) != 0 { throw .gid(gid, errno) }
        if setuid(uid) != 0 { throw .uid(uid, errno) }
        if case .failure(let code) = CapabilitySet.restrict(to: keep) { throw .capabilities(code) }
        if changesUser { _ = Sys.prctl(PR_SET_DUMPABLE, 1) }
    }
}
