// pasta's target namespace: finding or creating it, and configuring its interfaces (spec §1.3).
//
// Theory of operation: pasta's main process stays in the namespaces it started in (the "init"
// network namespace, where host sockets live) and reaches into the target network namespace
// through an open namespace file: the tap device and a netlink socket are created inside it
// (`TargetNetworkNamespace.run`), then used from outside. There are three ways to a target:
//
//   spawn (no PID, no --netns): unless --netns-only, pasta first gets a user namespace of its
//     own (joins --userns, or unshares a new one mapping root to its own IDs, as upstream's
//     isolate_user), so that it holds every capability over the namespaces it creates next and
//     works unprivileged. Then `PendingChild.spawn` clones the command into new network, mount,
//     UTS, IPC and PID namespaces and holds it until `release()`; the target is
//     /proc/CHILD/ns/net. Dropping the pending child on a failed set-up kills it (§16.15).
//   PID: the target is /proc/PID/ns/net; the user namespace /proc/PID/ns/user (or --userns) is
//     joined first, unless it is the one we are in already (setns would refuse it).
//   --netns PATH: the target is PATH; a user namespace is joined only if --userns names one.
//
// The --runas IDs (root in the init user namespace defaults to nobody) are IDs of the namespace we
// started in, so when a user namespace is joined or created pasta switches to them first, as
// upstream's isolate_user: a created namespace then maps root to them. When no user namespace is
// entered (--netns without --userns, --netns-only, or a PID in our own user namespace) the switch
// waits until the tap is open (`finishUserSwitch`), because /dev/net/tun may be closed to the
// target user (it is 0600 on some machines). Either way the capabilities pasta needs afterwards
// (SYS_ADMIN to enter the target, NET_ADMIN, NET_BIND_SERVICE; SYS_PTRACE when attaching;
// SETPCAP for the bounding set) survive
// the switch and all others go (UserIdentity.swift); upstream loses them all when leaving root and
// cannot attach then. Joining or creating a user namespace needs a single-threaded process: this
// runs before anything could start a thread. Then, in the target, `lo` is brought up, the tap's
// transmit queue is lengthened (see `tapQueueLength`; upstream keeps the default) and the tap MAC
// is set (--ns-mac-addr) or read as the guest's MAC. --config-net additionally sets the MTU (not with
// -m 0), brings the tap up (with NOARP while IPv6 addresses are added so that the kernel skips
// DAD, then NODAD set on the link-local addresses, the global ones' local routes awaited
// (`awaitLocalRoutes`) and NOARP cleared), and per family adds the -a address or copies the
// template interface's non-link-local, non-deprecated addresses, and adds the -g default route
// or copies the template's main-table routes with the tap as output interface (dumps in the
// init namespace, requests in the target; routes that depend on each other are retried,
// EEXIST/ENETUNREACH/EHOSTUNREACH tolerated). This is the control path: it allocates freely and
// throws `PastaSetupError` for upstream's fatal errors.
import CPasstShim
import PasstConfig
import PasstSys
import PasstWire
#if canImport(Glibc)
import Glibc
#endif

/// A fatal set-up error: the message upstream dies with.
public struct PastaSetupError: Error, CustomStringConvertible {
    /// The text to log before exiting with status 1.
    public var description: String

    /// An error with message `description`.
    public init(_ description: String) { self.description = description }
}

/// How pasta notices that an attached namespace went away (spec §1.3, quit-on-namespace-gone).
enum NamespaceQuitWatch {
    /// inotify on the directory holding the namespace file; exit when `name` is deleted.
    case inotify(descriptor: Int32, name: String)
    /// Poll every second: exit once `name` can no longer be opened relative to `directory`.
    case polling(directory: Int32, name: String)

    /// O_PATH (GNU-only in <fcntl.h>): open a file as a location only, without read access.
    static let pathOnly: Int32 = 0o10000000
}

/// The target network namespace and, in spawn mode, the held command.
struct TargetNamespace: ~Copyable {
    /// The network namespace pasta serves (its namespace file, open).
    let namespace: FileDescriptor
    /// The spawned command, held until set-up is done (spawn mode only).
    var child: PendingChild?
    /// How to notice that the namespace is gone (attached modes, unless --no-netns-quit).
    let quitWatch: NamespaceQuitWatch?
    /// The IDs `finishUserSwitch()` still has to switch to; nil once switched.
    var pendingUser: RunAs?
    /// The capabilities kept across the switch and for the main loop.
    let keep: CapabilitySet

    /// Finds or creates the target namespace selected by `options`; switches to `runAs` first if
    /// a user namespace is joined or created, else leaves that to `finishUserSwitch()`.
    static func open(_ options: Options, runAs: RunAs) throws(PastaSetupError) -> TargetNamespace {
        var isSpawn = false
        if case .spawn = options.pastaTarget { isSpawn = true }
        var joined: FileDescriptor?
        if let userns = options.userNamespace { joined = try userNamespaceToJoin(userns) }
        let creates = isSpawn && options.userNamespace == nil && !options.netnsOnly
        let keep = runtimeCapabilities(attaching: !creates)

        var pendingUser: RunAs? = runAs
        if let userns = joined.take() {
            try switchUser(runAs, keeping: keep)
            if case .failure(let code) = Namespaces.enter(userns, type: .user) {
                throw PastaSetupError("Couldn't switch to pasta namespaces: \(SyscallError(code))")
            }
            pendingUser = nil
        } else if creates {
            // Staying root (--runas 0) keeps every capability until the ID map is written: mapping
            // the parent's root needs CAP_SETFCAP (Linux 5.12+), which `keep` does not hold.
            if runAs.uid != geteuid() || runAs.gid != getegid() { try switchUser(runAs, keeping: keep) }
            try Isolation.createUserNamespace()
            pendingUser = nil
        }
        if pendingUser == nil, case .failure(let code) = CapabilitySet.restrict(to: keep) {
            throw PastaSetupError("Couldn't drop capabilities: \(SyscallError(code))")
        }

        switch options.pastaTarget {
        case .spawn(let command):
            let spawnCommand = command.isEmpty ? SpawnCommand.loginShellFromEnvironment() : SpawnCommand(command)
            let child: PendingChild
            do {
                child = try PendingChild.spawn(spawnCommand)
            } catch {
                throw PastaSetupError("\(error)")
            }
            reportSpawnWarnings(child.warnings)
            let namespace = try enterableNamespace(Namespaces.path(.network, pid: child.pid))
            return TargetNamespace(namespace: namespace, child: child, quitWatch: nil,
                                   pendingUser: pendingUser, keep: keep)
        case .pid, .netns:
            let path = options.netnsPath!
            let namespace = try enterableNamespace(path)
            let watch = options.noNetnsQuit ? nil : quitWatch(for: path)
            return TargetNamespace(namespace: namespace, child: nil, quitWatch: watch,
                                   pendingUser: pendingUser, keep: keep)
        }
    }

    /// Switches to the --runas IDs if `open` left that for later (no user namespace entered):
    /// called once the tap is open, so that /dev/net/tun was opened with the caller's rights.
    mutating func finishUserSwitch() throws(PastaSetupError) {
        guard let runAs = pendingUser.take() else { return }
        try Self.switchUser(runAs, keeping: keep)
    }

    /// Creates tap interface `name` inside the target namespace, with the virtio-net header and
    /// its checksum and TCP segmentation offloads when the kernel has them.
    func openTap(name: String) throws(PastaSetupError) -> TapDevice {
        var outcome: SyscallResult<TapDevice> = .wouldBlock
        do {
            try NamespaceThread.run(in: namespace) { outcome = TapDevice.open(name: name, offloads: true) }
        } catch {
            throw PastaSetupError("Couldn't switch to pasta namespaces: \(error)")
        }
        switch consume outcome {
        case .success(let device): return device
        case .wouldBlock: throw PastaSetupError("Failed to open tap device: \(SyscallError(EAGAIN))")
        case .failure(let code): throw PastaSetupError("Failed to open tap device: \(SyscallError(code))")
        }
    }

    /// Opens the network namespace at `path` and checks that we can enter it.
    private static func enterableNamespace(_ path: String) throws(PastaSetupError) -> FileDescriptor {
        let namespace: FileDescriptor
        switch Namespaces.open(path: path) {
        case .success(let fd): namespace = fd
        case .wouldBlock: throw PastaSetupError("Couldn't open network namespace \(path): \(SyscallError(EAGAIN))")
        case .failure(let code): throw PastaSetupError("Couldn't open network namespace \(path): \(SyscallError(code))")
        }
        do {
            try NamespaceThread.run(in: namespace) {}
        } catch {
            throw PastaSetupError("Couldn't switch to pasta namespaces: \(error)")
        }
        return namespace
    }

    /// Opens the user namespace at `path`; nil if it is the one we are in (setns would refuse it).
    private static func userNamespaceToJoin(_ path: String) throws(PastaSetupError) -> FileDescriptor? {
        let fd: FileDescriptor
        switch Namespaces.open(path: path) {
        case .success(let opened): fd = opened
        case .wouldBlock: throw PastaSetupError("Couldn't open user namespace \(path): \(SyscallError(EAGAIN))")
        case .failure(let code): throw PastaSetupError("Couldn't open user namespace \(path): \(SyscallError(code))")
        }
        if case .success(let target) = Namespaces.identity(of: fd),
           case .success(let current) = Namespaces.identity(path: "/proc/self/ns/user"), target == current {
            return nil
        }
        return fd
    }

    /// What pasta keeps once its user namespace is settled (upstream's isolate_user): SYS_ADMIN
    /// to enter the target, NET_ADMIN, NET_BIND_SERVICE, SETPCAP to empty the bounding set
    /// later, and SYS_PTRACE when `attaching` to namespaces it did not create. Stage 3
    /// (Isolation.swift) cuts this to SYS_ADMIN and NET_BIND_SERVICE.
    private static func runtimeCapabilities(attaching: Bool) -> CapabilitySet {
        var keep: CapabilitySet = [.sysAdmin, .netAdmin, .netBindService, .setPCap]
        if attaching { keep.insert(.sysPtrace) }
        return keep
    }

    /// Drops supplementary groups and sets the --runas GID and UID, keeping `keep` (spec §10.1).
    private static func switchUser(_ runAs: RunAs, keeping keep: CapabilitySet) throws(PastaSetupError) {
        do {
            try UserIdentity.switchTo(uid: runAs.uid, gid: runAs.gid, keeping: keep)
        } catch {
            throw PastaSetupError(error.description)
        }
    }

    /// Logs the warnings of the spawned child's own set-up, in upstream's words.
    private static func reportSpawnWarnings(_ warnings: SpawnSetupWarnings) {
        if warnings.contains(.procMount) { Log.warning("Couldn't mount /proc") }
        if warnings.contains(.pingGroupRange) { Log.warning("Cannot set ping_group_range, ICMP requests might fail") }
        if warnings.contains(.hostname) { Log.warning("Unable to set pasta-prefixed hostname") }
    }

    /// The watch for the namespace file `path`: polling on procfs, sysfs and devpts, else inotify;
    /// nil (with a warning) if neither can be set up.
    private static func quitWatch(for path: String) -> NamespaceQuitWatch? {
        let slash = path.lastIndex(of: "/")
        let directory = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        var fs = statfs()
        guard statfs(directory, &fs) == 0 else {
            Log.warning("statfs \(directory): \(SyscallError(errno)), won't quit once netns is gone")
            return nil
        }
        let procfs = 0x9fa0, sysfs = 0x6265_6572, devpts = 0x1cd1
        if [procfs, sysfs, devpts].contains(Int(fs.f_type)) {
            let dirfd = Glibc.open(directory, NamespaceQuitWatch.pathOnly | O_DIRECTORY | O_CLOEXEC)
            guard dirfd >= 0 else {
                Log.warning("open \(directory): \(SyscallError(errno)), won't quit once netns is gone")
                return nil
            }
            return .polling(directory: dirfd, name: name)
        }
        let fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard fd >= 0 else {
            Log.warning("inotify_init1(): \(SyscallError(errno)), won't quit once netns is gone")
            return nil
        }
        guard inotify_add_watch(fd, directory, UInt32(IN_DELETE)) >= 0 else {
            Log.warning("inotify_add_watch(): \(SyscallError(errno)), won't quit once netns is gone")
            close(fd)
            return nil
        }
        return .inotify(descriptor: fd, name: name)
    }
}

/// What set-up learnt about the target's link: the tap's MAC and, with --config-net, its
/// link-local IPv6 address.
struct NamespaceLink {
    /// The guest's MAC address (the tap's).
    var guestMAC: MACAddress
    /// The namespace's link-local address on the tap, if --config-net brought IPv6 up.
    var guestLinkLocal: IPv6Address?
}

/// Configures `lo` and the tap inside the target namespace (spec §1.3).
enum NamespaceConfigurator {
    /// Frames the tap queues towards us before the kernel drops them (default 1000). A guest
    /// with an unpaced congestion control (cubic) bursts a whole window, about 2900 frames of a
    /// 4 MiB window at MTU 1500: a drop there costs a long recovery, since out-of-order segments
    /// are not kept. 16384 holds several full windows; the memory stays charged to the sockets.
    static let tapQueueLength: UInt32 = 16384

    /// Brings `lo` up, sets or reads the tap MAC and, with --config-net, configures the tap.
    static func configure(_ configuration: Configuration, tap: borrowing TapDevice,
                          namespace: borrowing FileDescriptor) throws(PastaSetupError) -> NamespaceLink {
        var socket: Int32 = -1
        do {
            socket = try NamespaceThread.run(in: namespace) {
                Glibc.socket(AF_NETLINK, RTNetlink.socketType, RTNetlink.NETLINK_ROUTE)
            }
        } catch {
            throw PastaSetupError("Couldn't switch to pasta namespaces: \(error)")
        }
        guard socket >= 0 else {
            throw PastaSetupError("Couldn't open netlink socket in namespace: \(SyscallError(errno))")
        }
        let netlink = Netlink(socket: FileDescriptor(taking: socket))
        var link = NamespaceLink(guestMAC: .zero, guestLinkLocal: nil)
        do {
            guard let loopback = try netlink.link(named: "lo") else { throw PastaSetupError("No loopback interface in namespace") }
            try netlink.setLinkUp(index: loopback.index)
            guard let tapLink = try netlink.link(named: tap.name) else {
                throw PastaSetupError("Tap interface \(tap.name) not found in namespace")
            }
            do {
                try netlink.setTransmitQueueLength(index: tapLink.index, NamespaceConfigurator.tapQueueLength)
            } catch {
                Log.debug("Can't lengthen the tap's queue: \(error)")
            }
            if let mac = configuration.options.namespaceMAC {
                try netlink.setMAC(index: tapLink.index, mac.array)
                link.guestMAC = mac
            } else if case .success(let bytes) = tap.hardwareAddress(), bytes.count == 6 {
                link.guestMAC = MACAddress(bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5])
            }
            if configuration.options.configNet {
                link.guestLinkLocal = try configureNetwork(configuration, netlink: netlink, index: tapLink.index)
            }
        } catch let error as NetlinkError {
            throw PastaSetupError("Couldn't configure namespace: \(error)")
        } catch let error as PastaSetupError {
            throw error
        } catch {
            throw PastaSetupError("Couldn't configure namespace: \(error)")
        }
        return link
    }

    /// --config-net: MTU, link up, addresses and routes; returns the tap's link-local address.
    private static func configureNetwork(_ configuration: Configuration, netlink: Netlink,
                                         index: Int32) throws -> IPv6Address? {
        if configuration.mtu != 0 { try netlink.setMTU(index: index, UInt32(configuration.mtu)) }
        let ipv6 = configuration.ipv6 != nil
        let noARP = ipv6 ? RTNetlink.IFF_NOARP : 0
        try netlink.setLinkFlags(index: index, flags: RTNetlink.IFF_UP | noARP, mask: RTNetlink.IFF_UP | noARP)

        let host = try? Netlink()
        if let ipv4 = configuration.ipv4 {
            if ipv4.copyAddresses, let template = templateIndex(ipv4.templateInterface, host: host) {
                try copyAddresses(family: .ipv4, from: template, host: host!, to: index, netlink: netlink)
            } else {
                try addAddress(ipv4.address.bytes, prefixLength: ipv4.prefixLength, family: .ipv4,
                               index: index, netlink: netlink)
            }
            if ipv4.copyRoutes, let template = templateIndex(ipv4.templateInterface, host: host) {
                try copyRoutes(family: .ipv4, from: template, host: host!, to: index, netlink: netlink)
            } else if let gateway = ipv4.gateway {
                try addRoute(NetlinkRoute(family: .ipv4, gateway: gateway.bytes, outputInterface: index), netlink: netlink)
            }
        }
        var linkLocal: IPv6Address?
        if let settings = configuration.ipv6 {
            if settings.copyAddresses, let template = templateIndex(settings.templateInterface, host: host) {
                try copyAddresses(family: .ipv6, from: template, host: host!, to: index, netlink: netlink)
            } else if let address = settings.address {
                try addAddress(address.bytes, prefixLength: 64, family: .ipv6, index: index, netlink: netlink)
            }
            if settings.copyRoutes, let template = templateIndex(settings.templateInterface, host: host) {
                try copyRoutes(family: .ipv6, from: template, host: host!, to: index, netlink: netlink)
            } else if let gateway = settings.gateway {
                try addRoute(NetlinkRoute(family: .ipv6, gateway: gateway.bytes, outputInterface: index), netlink: netlink)
            }
            linkLocal = try markLinkLocalNoDAD(netlink: netlink, index: index)
            awaitLocalRoutes(netlink: netlink, index: index)
            try netlink.setLinkFlags(index: index, flags: 0, mask: RTNetlink.IFF_NOARP)
        }
        return linkLocal
    }

    /// The index of template interface `name` in the init namespace, nil if unknown.
    private static func templateIndex(_ name: String?, host: Netlink?) -> Int32? {
        guard let name, let host, let link = try? host.link(named: name) else { return nil }
        return link.index
    }

    /// Adds one address (IPv6 with NODAD); an existing one is fine.
    private static func addAddress(_ address: [UInt8], prefixLength: Int, family: NetlinkFamily, index: Int32,
                                   netlink: Netlink) throws(NetlinkError) {
        do {
            try netlink.addAddress(index: index, family: family, address: address, prefixLength: prefixLength,
                                   flags: family == .ipv6 ? RTNetlink.IFA_F_NODAD : 0)
        } catch where error.errno == EEXIST {
            return
        }
    }

    /// Copies the template's non-link-local, non-deprecated addresses of `family` to the tap.
    private static func copyAddresses(family: NetlinkFamily, from template: Int32, host: Netlink, to index: Int32,
                                      netlink: Netlink) throws(NetlinkError) {
        for address in try host.addresses(family: family, interfaceIndex: template)
        where !address.isDeprecated && address.scope != RTNetlink.RT_SCOPE_LINK {
            guard let local = address.localAddress else { continue }
            if family == .ipv4 && local.count == 4 && local[0] == 169 && local[1] == 254 { continue }
            try addAddress(local, prefixLength: address.prefixLength, family: family, index: index, netlink: netlink)
        }
    }

    /// Copies the template's main-table unicast routes of `family` with the tap as output
    /// interface, retrying those that depend on routes not added yet.
    private static func copyRoutes(family: NetlinkFamily, from template: Int32, host: Netlink, to index: Int32,
                                   netlink: Netlink) throws(NetlinkError) {
        var pending: [NetlinkRoute] = []
        for route in try host.routes(family: family) where route.type == RTNetlink.RTN_UNICAST {
            guard route.outputInterface == template || route.nexthops.contains(where: { $0.interfaceIndex == template }),
                  route.nexthops.allSatisfy({ $0.interfaceIndex == template }) else { continue }
            var copy = route
            copy.outputInterface = route.nexthops.isEmpty ? index : nil
            // A template without carrier dumps its routes with LINKDOWN, which a request can't carry.
            let requestable = RTNetlink.RTNH_F_REQUESTABLE
            copy.flags = route.flags & UInt32(requestable)
            copy.nexthops = route.nexthops.map { hop in
                NetlinkNexthop(interfaceIndex: index, gateway: hop.gateway, weight: hop.weight,
                               flags: hop.flags & requestable)
            }
            copy.preferredSource = nil
            pending.append(copy)
        }
        for _ in 0..<max(pending.count, 1) where !pending.isEmpty {
            var failed: [NetlinkRoute] = []
            var lastError: NetlinkError?
            for route in pending {
                do {
                    try netlink.addRoute(route)
                } catch where error.errno == EEXIST {
                    continue
                } catch where error.errno == ENETUNREACH || error.errno == EHOSTUNREACH {
                    failed.append(route)
                    lastError = error
                }
            }
            if failed.count == pending.count, let lastError {
                Log.debug("Couldn't copy \(failed.count) routes: \(lastError)")
                return
            }
            pending = failed
        }
    }

    /// Adds one route; an existing or unreachable one is tolerated.
    private static func addRoute(_ route: NetlinkRoute, netlink: Netlink) throws(NetlinkError) {
        do {
            try netlink.addRoute(route)
        } catch where error.errno == EEXIST || error.errno == ENETUNREACH || error.errno == EHOSTUNREACH {
            Log.debug("Route not added: \(error)")
        }
    }

    /// Waits (at most `localRouteWait` ns) until every global IPv6 address of the tap has its local
    /// route. The kernel adds that route from a work item, even for NODAD addresses; clearing
    /// NOARP restarts that work for every address after a random delay of up to a second
    /// (router_solicitation_delay), and an address whose first pass had not run by then stays
    /// unroutable until the second one does: a spliced connection to it, or the namespace's own,
    /// went out to be resolved and failed after 3 s. (The link-local addresses' first pass itself
    /// waits that random delay, since the link came up; waiting for them would slow every start.)
    private static func awaitLocalRoutes(netlink: Netlink, index: Int32) {
        let deadline = SystemClock.monotonicNanoseconds() + localRouteWait
        while SystemClock.monotonicNanoseconds() < deadline {
            guard let addresses = try? netlink.addresses(family: .ipv6, interfaceIndex: index),
                  let local = try? netlink.routes(family: .ipv6, table: RTNetlink.RT_TABLE_LOCAL) else { return }
            let routed = Set(local.filter { $0.type == RTNetlink.RTN_LOCAL }.compactMap(\.destination))
            let unrouted = addresses.filter { address in
                address.scope != RTNetlink.RT_SCOPE_LINK && !(address.localAddress.map(routed.contains) ?? true)
            }
            if unrouted.isEmpty { return }
            usleep(1000)
        }
        Log.debug("Global IPv6 addresses of the tap still without local routes after \(localRouteWait / 1_000_000) ms")
    }

    /// Longest wait for the local routes of the tap's global IPv6 addresses (ns).
    static let localRouteWait: UInt64 = 500_000_000

    /// Sets NODAD on the tap's link-local addresses; returns the first one.
    private static func markLinkLocalNoDAD(netlink: Netlink, index: Int32) throws(NetlinkError) -> IPv6Address? {
        var first: IPv6Address?
        for address in try netlink.addresses(family: .ipv6, interfaceIndex: index)
        where address.scope == RTNetlink.RT_SCOPE_LINK {
            guard let bytes = address.localAddress, let linkLocal = IPv6Address(bytes: bytes) else { continue }
            try netlink.addAddress(index: index, family: .ipv6, address: bytes, prefixLength: address.prefixLength,
                                   flags: address.flags & ~(RTNetlink.IFA_F_TENTATIVE | RTNetlink.IFA_F_DADFAILED) | RTNetlink.IFA_F_NODAD, scope: address.scope, replace: true)
            if first == nil { first = linkLocal }
        }
        return first
    }
}
