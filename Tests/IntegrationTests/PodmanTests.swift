// podman's use of pasta replayed end to end (spec §14): the argument list podman's
// createPastaArgs() builds, the real pasta binary run without -f exactly as podman runs it, and
// what podman and its containers then rely on, checked against the real kernel in the test bed.
//
// Theory of operation. `podmanPastaArguments` rebuilds podman's list (containers/common
// libnetwork/pasta/pasta_linux.go): `--config-net`, the pasta_options/`--network pasta:...`
// options, `-t`/`-u` in range form per published port and protocol (`[HOSTIP/]H-H+R-1:C-C+R-1`),
// `--dns-forward 169.254.1.1`, `-t none`/`-u none`/`-T none`/`-U none` for each direction nothing
// else set, `--no-map-gw`, `--quiet`, `--netns PATH`, `--map-guest-addr 169.254.1.2`. The extra
// options are `--runas 0` and `--pid FILE` (the slot the rootless-netns code uses for `--pid`).
// `--runas 0` stands in for "pasta runs as the user owning the namespace": podman runs pasta as
// that user inside its rootless user namespace, while these tests run as root in the init user
// namespace, where pasta would switch to nobody (warning "Started as root, will change to
// nobody."). Upstream, as nobody, then cannot join the namespace (the 2023.03 build installed here
// fails with "Couldn't switch to pasta namespaces") nor open /dev/net/tun, mode 0600 on this
// machine. Ours opens the tap before switching and would cope, but the tests do not rely on that.
//
// podman runs pasta with exec.Command(...).CombinedOutput(): stdout and stderr on one pipe read
// to end of file, then the exit status; status 0 means ready, any output is logged as "pasta logged
// warnings". A small perl launcher does the same (`PodmanLauncher`): it reads the pipe to EOF
// (so a daemon keeping the pipe open would hang it, as it would hang podman), records the exit
// status, and, being a child subreaper (PR_SET_CHILD_SUBREAPER), inherits the daemonised pasta
// and records its exit status too: that is how "exits 0 once the namespace file is deleted" is
// observed for a process that is nobody's child. The launcher runs in the bed's host namespace
// through `ip netns exec`, so pasta reads the bed's private resolv.conf.
//
// The container namespace is either made by `ip netns add` (the path /run/netns/NAME) or, as
// podman makes it, a bind mount of a namespace file onto a file in a directory of its own: here
// /proc/PID/ns/net of an `unshare --net sleep` onto DIR/netns-UUID (the namespace is also attached
// as /run/netns/NAME for the test's own sockets and `ip -n`). Deleting it is `ip netns del`, or
// podman's unmount (MNT_DETACH) and unlink of the file.
//
// Servers are threads of the test with sockets opened in the right namespace: in the container
// they answer "PORT PEER\n" followed by what they received, so every check sees which port was
// reached, from which address, with which content. DNS queries to 169.254.1.1 are answered by
// `DNSStub` (PastaUDPSpliceTests.swift) on the first nameserver of the resolv.conf pasta read:
// the bed's 192.0.2.1 (the router namespace), or 127.0.0.53 in the host namespace (a
// systemd-resolved host, where upstream warns "Couldn't get any nameserver address" even with
// --quiet, as podman's own code notes).
import Foundation
import Synchronization
import Testing
import PasstSys

/// A published port as podman's types.PortMapping describes it.
struct PodmanPortMapping {
    var hostIP: String?
    var hostPort: UInt16
    var containerPort: UInt16
    var range: UInt16
    var protocols: String
}

/// pasta's arguments as podman's createPastaArgs() builds them (containers/common, 2024-2025);
/// `quiet: false` is what podman passes when its pasta options ask for --debug.
func podmanPastaArguments(extraOptions: [String], ports: [PodmanPortMapping], netns: String,
                          quiet: Bool = true) -> [String] {
    var arguments = ["--config-net"] + extraOptions
    var tcpInit = false, udpInit = false, tcpNamespace = false, udpNamespace = false
    for option in extraOptions {
        switch option {
        case "-t", "--tcp-ports": tcpInit = true
        case "-u", "--udp-ports": udpInit = true
        case "-T", "--tcp-ns": tcpNamespace = true
        case "-U", "--udp-ns": udpNamespace = true
        default: break
        }
    }
    for port in ports {
        for proto in port.protocols.split(separator: ",") {
            if proto == "tcp" { tcpInit = true; arguments.append("-t") } else { udpInit = true; arguments.append("-u") }
            arguments.append((port.hostIP.map { $0 + "/" } ?? "")
                + "\(port.hostPort)-\(port.hostPort + port.range - 1):\(port.containerPort)-\(port.containerPort + port.range - 1)")
        }
    }
    arguments += ["--dns-forward", "169.254.1.1"]
    if !tcpInit { arguments += ["-t", "none"] }
    if !udpInit { arguments += ["-u", "none"] }
    if !tcpNamespace { arguments += ["-T", "none"] }
    if !udpNamespace { arguments += ["-U", "none"] }
    arguments.append("--no-map-gw")
    if quiet { arguments.append("--quiet") }
    return arguments + ["--netns", netns, "--map-guest-addr", "169.254.1.2"]
}

/// pasta run the way podman runs it, under a perl child subreaper that reports both exit statuses.
struct PodmanLauncher {
    /// Reads pasta's combined output to EOF, then reports "exit STATUS", then "orphan PID STATUS"
    /// for each inherited process (the daemon) as it exits.
    static let script = #"""
        use strict; use warnings; use IO::Handle;
        require "syscall.ph";
        my ($report, $output, @command) = @ARGV;
        open(my $log, ">", $report) or die "$report: $!";
        $log->autoflush(1);
        syscall(&SYS_prctl, 36, 1, 0, 0, 0) == 0 or die "PR_SET_CHILD_SUBREAPER: $!";
        pipe(my $read, my $write) or die "pipe: $!";
        my $pid = fork() // die "fork: $!";
        if (!$pid) {
            open(STDOUT, ">&", $write); open(STDERR, ">&", $write);
            exec { $command[0] } @command; die "exec: $!";
        }
        close($write);
        my $text = do { local $/; <$read> };
        open(my $out, ">", $output) or die "$output: $!";
        print $out $text; close($out);
        sub code { my $s = shift; return $s & 127 ? 128 + ($s & 127) : $s >> 8; }
        waitpid($pid, 0);
        print $log "exit ", code($?), "\n";
        while ((my $orphan = waitpid(-1, 0)) > 0) { print $log "orphan $orphan ", code($?), "\n"; }
        """#

    let bed: TestBed
    /// The launcher (perl), the daemon's parent once pasta has exited.
    let process: BackgroundProcess
    /// "exit STATUS" and "orphan PID STATUS" lines.
    let reportPath: String
    /// pasta's combined stdout and stderr, written once the pipe reached end of file.
    let outputPath: String

    /// Starts pasta with `arguments` in the bed's host namespace under the launcher.
    init(_ bed: TestBed, arguments: [String]) throws {
        self.bed = bed
        let base = bed.directory + "/podman-\(Command.nextID())"
        reportPath = base + ".report"
        outputPath = base + ".output"
        process = try bed.startBackground(in: bed.host, ["perl", "-e", PodmanLauncher.script, reportPath, outputPath,
                                                         try pastaBinary()] + arguments)
    }

    /// The launcher's report lines so far.
    func report() -> [String] {
        ((try? String(contentsOfFile: reportPath, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    /// Waits up to `timeout` s for pasta (the process podman started) to exit; returns its status
    /// and combined output, nil if it did not exit or did not close its output.
    func waitForExit(_ timeout: Double) -> (status: Int32, output: String)? {
        var status: Int32?
        _ = waitUntil(timeout) {
            status = report().first { $0.hasPrefix("exit ") }.flatMap { Int32($0.dropFirst(5)) }
            return status != nil
        }
        guard let status else { return nil }
        return (status, (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "")
    }

    /// The exit status of inherited process `pid` once it has exited, waiting up to `timeout` s.
    func orphanStatus(_ pid: pid_t, timeout: Double) -> Int32? {
        var status: Int32?
        _ = waitUntil(timeout) {
            status = report().first { $0.hasPrefix("orphan \(pid) ") }.flatMap { Int32($0.split(separator: " ")[2]) }
            return status != nil
        }
        return status
    }

    /// Kills daemon `pid` if it is still the launcher's child (not yet reported), then the launcher.
    func stop(daemon pid: pid_t?) {
        if let pid, orphanStatus(pid, timeout: 0) == nil, parentPID(of: pid) == process.pid {
            kill(pid, SIGKILL)
            _ = orphanStatus(pid, timeout: 5)
        }
        bed.stop(process, signal: SIGKILL)
    }
}

/// The parent PID of `pid` from /proc/PID/stat, nil if it is gone.
func parentPID(of pid: pid_t) -> pid_t? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let end = stat.lastIndex(of: ")") else { return nil }
    let fields = stat[stat.index(after: end)...].split(separator: " ")
    return fields.count > 1 ? pid_t(fields[1]) : nil
}

/// How the container's network namespace is made and named.
enum PodmanNamespaceKind: String, CaseIterable, CustomTestStringConvertible {
    case ipNetnsAdd = "ip netns add"
    case bindMount = "bind mount in a directory"
    var testDescription: String { rawValue }
}

/// The container's network namespace: a name for the test's sockets, a path for pasta.
struct PodmanNamespace {
    /// The /run/netns name (for `ip -n` and `TestBed.openSocket`).
    let name: String
    /// What podman passes to --netns.
    let path: String
    let kind: PodmanNamespaceKind
    /// The `unshare --net sleep` holding a bind-mounted namespace.
    let holder: BackgroundProcess?

    /// Makes a namespace of `kind` in `bed`.
    init(_ kind: PodmanNamespaceKind, in bed: TestBed) throws {
        self.kind = kind
        switch kind {
        case .ipNetnsAdd:
            name = try bed.makeNamespace("pod")
            path = "/run/netns/" + name
            holder = nil
        case .bindMount:
            let holder = try bed.startBackground(in: nil, ["unshare", "--net", "sleep", "120"])
            self.holder = holder
            let ours = try? Sys.readLink("/proc/self/ns/net").get()
            guard waitUntil(5, { (try? Sys.readLink("/proc/\(holder.pid)/ns/net").get()) != ours }) else {
                throw TestBedError(description: "unshare --net did not start")
            }
            name = "ptpod-\(getpid())-\(Command.nextID())"
            try Command.check(["ip", "netns", "attach", name, "\(holder.pid)"])
            let directory = bed.directory + "/netns"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            path = directory + "/netns-\(UUID().uuidString.lowercased())"
            guard FileManager.default.createFile(atPath: path, contents: nil) else {
                throw TestBedError(description: "cannot create \(path)")
            }
            try Command.check(["mount", "--bind", "/proc/\(holder.pid)/ns/net", path])
            try bed.ip(name, "link", "set", "lo", "up")
        }
    }

    /// Deletes the namespace file as its owner does: `ip netns del`, or podman's detach and unlink.
    func remove() throws {
        switch kind {
        case .ipNetnsAdd:
            try Command.check(["ip", "netns", "del", name])
        case .bindMount:
            guard umount2(path, Int32(MNT_DETACH)) == 0, unlink(path) == 0 else {
                throw TestBedError(description: "removing \(path): \(String(cString: strerror(errno)))")
            }
        }
    }

    /// Undoes what the bed does not: the bind mount, the attached name, the holder.
    func cleanUp(_ bed: TestBed) {
        guard kind == .bindMount else { return }
        _ = umount2(path, Int32(MNT_DETACH))
        _ = try? Command.run(["ip", "netns", "del", name])
        if let holder { bed.stop(holder, signal: SIGKILL) }
    }
}

/// The text form and port of a socket address (IPv4-mapped IPv6 shown as IPv4).
func socketAddressText(_ storage: sockaddr_storage) -> (String, UInt16) {
    var copy = storage
    var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
    return withUnsafePointer(to: &copy) { pointer in
        if storage.ss_family == sa_family_t(AF_INET) {
            return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { address in
                var raw = address.pointee.sin_addr
                inet_ntop(AF_INET, &raw, &text, socklen_t(text.count))
                return (cText(text), UInt16(bigEndian: address.pointee.sin_port))
            }
        }
        return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { address in
            var raw = address.pointee.sin6_addr
            inet_ntop(AF_INET6, &raw, &text, socklen_t(text.count))
            let name = cText(text)
            return (name.hasPrefix("::ffff:") && name.contains(".") ? String(name.dropFirst(7)) : name,
                    UInt16(bigEndian: address.pointee.sin6_port))
        }
    }
}

/// The characters of NUL-terminated `text`.
func cText(_ text: [CChar]) -> String {
    String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// "PORT PEER\n": how the tagging servers introduce their answer.
func podmanTag(port: UInt16, peer: String) -> [UInt8] { Array("\(port) \(peer)\n".utf8) }

/// A TCP server on a thread of the test: per connection, reads to end of file, then answers
/// `podmanTag` of its own port and the peer's address followed by what it read, and closes.
final class TaggingTCPServer: Sendable {
    let listeners: [Int32]
    let stopping = Atomic<Bool>(false)
    let finished = DispatchSemaphore(value: 0)

    /// Starts serving on `listeners` (bound and listening); `stop` closes them.
    init(listeners: [Int32]) {
        self.listeners = listeners
        Thread { [self] in run() }.start()
    }

    /// The server loop: poll for a connection, read it to the end, answer.
    private func run() {
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        var fds = listeners.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        while !stopping.load(ordering: .relaxed) {
            guard poll(&fds, nfds_t(fds.count), 50) > 0 else { continue }
            for entry in fds where entry.revents & Int16(POLLIN) != 0 {
                var peer = sockaddr_storage()
                var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
                let fd = withUnsafeMutablePointer(to: &peer) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { accept(entry.fd, $0, &length) }
                }
                guard fd >= 0 else { continue }
                var timeout = timeval(tv_sec: 5, tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
                var answer = podmanTag(port: UDPTestSocket.port(of: entry.fd), peer: socketAddressText(peer).0)
                while true {
                    let count = recv(fd, &buffer, buffer.count, 0)
                    if count <= 0 { break }
                    answer += buffer[..<count]
                }
                _ = answer.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                close(fd)
            }
        }
        finished.signal()
    }

    /// Stops the thread and closes the listeners.
    func stop() {
        stopping.store(true, ordering: .relaxed)
        finished.wait()
        for fd in listeners { close(fd) }
    }
}

/// A UDP server on a thread of the test: answers each datagram with `podmanTag` of its own
/// port and the sender's address followed by the datagram.
final class TaggingUDPServer: Sendable {
    let sockets: [Int32]
    let stopping = Atomic<Bool>(false)
    let finished = DispatchSemaphore(value: 0)

    /// Starts answering on `sockets` (bound); `stop` closes them.
    init(sockets: [Int32]) {
        self.sockets = sockets
        Thread { [self] in run() }.start()
    }

    /// The server loop: poll, receive, answer.
    private func run() {
        var buffer = [UInt8](repeating: 0, count: 65536)
        var fds = sockets.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        while !stopping.load(ordering: .relaxed) {
            guard poll(&fds, nfds_t(fds.count), 50) > 0 else { continue }
            for entry in fds where entry.revents & Int16(POLLIN) != 0 {
                var peer = sockaddr_storage()
                var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
                let count = withUnsafeMutablePointer(to: &peer) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        recvfrom(entry.fd, &buffer, buffer.count, Int32(MSG_DONTWAIT), $0, &length)
                    }
                }
                guard count >= 0 else { continue }
                let answer = podmanTag(port: UDPTestSocket.port(of: entry.fd), peer: socketAddressText(peer).0)
                    + buffer[..<count]
                _ = withUnsafeMutablePointer(to: &peer) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        sendto(entry.fd, answer, answer.count, 0, $0, length)
                    }
                }
            }
        }
        finished.signal()
    }

    /// Stops the thread and closes the sockets.
    func stop() {
        stopping.store(true, ordering: .relaxed)
        finished.wait()
        for fd in sockets { close(fd) }
    }
}

/// Clients for the podman tests.
enum PodmanClient {
    /// Connects from `namespace` to `address`:`port`, sends `payload`, half-closes and returns
    /// the whole answer; throws the connect error (no retry: listeners must be bound at exit 0).
    static func tcp(_ bed: TestBed, in namespace: String, to address: String, port: UInt16,
                    payload: [UInt8]) throws -> [UInt8] {
        let fd = try TCPTestSocket.connect(bed, in: namespace, to: address, port: port)
        defer { close(fd) }
        return TCPTestSocket.echo(fd, payload: payload)
    }

    /// Sends `payload` from a new socket in `namespace` to `address`:`port` up to `tries` times
    /// (1 s apart) until a datagram comes back; returns it, nil if none did.
    static func udp(_ bed: TestBed, in namespace: String, to address: String, port: UInt16,
                    payload: [UInt8], tries: Int = 3) throws -> [UInt8]? {
        let fd = try UDPTestSocket.open(bed, in: namespace, address: address.contains(":") ? "::" : "0.0.0.0", port: 0)
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 65536)
        for _ in 0..<tries {
            _ = UDPTestSocket.withAddress(address, port: port) { sendto(fd, payload, payload.count, 0, $0, $1) }
            let count = recv(fd, &buffer, buffer.count, 0)
            if count >= 0 { return Array(buffer[..<count]) }
        }
        return nil
    }

    /// A DNS query for example.test/A with `id`.
    static func dnsQuery(id: UInt16) -> [UInt8] {
        [UInt8(id >> 8), UInt8(id & 0xff), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 7] + Array("example".utf8)
            + [4] + Array("test".utf8) + [0, 0, 1, 0, 1]
    }

    /// What `DNSStub` answers to `query`: the query as a response with one A record 203.0.113.7.
    static func dnsAnswer(to query: [UInt8]) -> [UInt8] {
        var answer = query
        answer[2] = 0x81
        answer[3] = 0x80
        answer[7] = 1
        return answer + [0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 203, 0, 113, 7]
    }

    /// Sends a DNS query from `namespace` on a socket connected to 169.254.1.1:53 (so only an
    /// answer from that address counts); returns (query, answer), answer nil if none came.
    static func dnsThroughForwarder(_ bed: TestBed, in namespace: String, id: UInt16) throws -> ([UInt8], [UInt8]?) {
        let fd = try UDPTestSocket.open(bed, in: namespace, address: "0.0.0.0", port: 0)
        defer { close(fd) }
        let connected = UDPTestSocket.withAddress("169.254.1.1", port: 53) { connect(fd, $0, $1) }
        guard connected == 0 else { throw SyscallError(errno) }
        let query = dnsQuery(id: id)
        var buffer = [UInt8](repeating: 0, count: 1500)
        for _ in 0..<3 {
            _ = send(fd, query, query.count, 0)
            let count = recv(fd, &buffer, buffer.count, 0)
            if count >= 0 { return (query, Array(buffer[..<count])) }
        }
        return (query, nil)
    }
}

/// The "local/prefixlen" addresses of global scope in `namespace`, per interface name.
func globalAddresses(_ bed: TestBed, in namespace: String) throws -> [String: [String]] {
    var result: [String: [String]] = [:]
    for link in try bed.ipJSON(namespace, "addr", "show") {
        guard let name = link["ifname"] as? String else { continue }
        let infos = (link["addr_info"] as? [[String: Any]]) ?? []
        let global = infos.filter { $0["scope"] as? String == "global" }
        if global.isEmpty { continue }
        result[name] = addresses(of: ["addr_info": global])
    }
    return result
}

@Suite("podman's pasta invocation", .enabled(if: getuid() == 0), .integrationTimeLimit)
struct PodmanTests {
    /// The extra options every run gets (see the file comment for --runas 0).
    static func extraOptions(pidFile: String) -> [String] { ["--runas", "0", "--pid", pidFile] }

    @Test("podman's arguments with published ports: ready at exit 0, ports, DNS via 169.254.1.1, 169.254.1.2, exit 0 once the netns file goes",
          arguments: PodmanNamespaceKind.allCases)
    func container(kind: PodmanNamespaceKind) async throws {
        try await withTestBed { bed in
            try bed.allowPingSockets()
            let netns = try PodmanNamespace(kind, in: bed)
            defer { netns.cleanUp(bed) }
            let stub = DNSStub(socket: try UDPTestSocket.open(bed, in: bed.router, address: TestBed.routerIPv4, port: 53))
            defer { stub.stop() }
            let containerPorts: [UInt16] = [80, 81, 90, 91]
            let tcpServer = TaggingTCPServer(listeners: try containerPorts.map {
                try TCPTestSocket.listen(bed, in: netns.name, address: "::", port: $0, dualStack: true)
            })
            defer { tcpServer.stop() }
            let udpServer = TaggingUDPServer(sockets: try containerPorts.map {
                try UDPTestSocket.open(bed, in: netns.name, address: "::", port: $0, dualStack: true)
            })
            defer { udpServer.stop() }
            let hostTCP = TaggingTCPServer(listeners: [
                try TCPTestSocket.listen(bed, in: bed.host, address: TestBed.hostIPv4, port: 7300),
                try TCPTestSocket.listen(bed, in: bed.host, address: "127.0.0.1", port: 7301),
            ])
            defer { hostTCP.stop() }
            let hostUDP = TaggingUDPServer(sockets: [
                try UDPTestSocket.open(bed, in: bed.host, address: TestBed.hostIPv4, port: 7302),
            ])
            defer { hostUDP.stop() }

            let pidFile = bed.directory + "/pasta.pid"
            let arguments = podmanPastaArguments(
                extraOptions: PodmanTests.extraOptions(pidFile: pidFile),
                ports: [PodmanPortMapping(hostIP: nil, hostPort: 8080, containerPort: 80, range: 2, protocols: "tcp,udp"),
                        PodmanPortMapping(hostIP: TestBed.hostIPv4, hostPort: 8090, containerPort: 90, range: 2,
                                          protocols: "tcp,udp")],
                netns: netns.path)
            #expect(arguments == ["--config-net", "--runas", "0", "--pid", pidFile,
                                  "-t", "8080-8081:80-81", "-u", "8080-8081:80-81",
                                  "-t", "192.0.2.2/8090-8091:90-91", "-u", "192.0.2.2/8090-8091:90-91",
                                  "--dns-forward", "169.254.1.1", "-T", "none", "-U", "none", "--no-map-gw", "--quiet",
                                  "--netns", netns.path, "--map-guest-addr", "169.254.1.2"])
            let launcher = try PodmanLauncher(bed, arguments: arguments)
            var daemon: pid_t?
            defer { launcher.stop(daemon: daemon) }
            let exit = try #require(launcher.waitForExit(20), "pasta did not exit or kept its output open")
            try #require(exit.status == 0, "\(exit.output)")
            #expect(exit.output == "", "podman would log these as \"pasta logged warnings\"")

            // Ready at exit: the PID file names the live daemon, the tap is configured.
            let text = try String(contentsOfFile: pidFile, encoding: .utf8)
            daemon = pid_t(text.trimmingCharacters(in: .newlines))
            let pid = try #require(daemon, "PID file: \(text.debugDescription)")
            #expect(text == "\(pid)\n")
            #expect(parentPID(of: pid) == launcher.process.pid, "the PID file does not name pasta's daemon")
            #expect(try globalAddresses(bed, in: netns.name) == ["eth0": ["192.0.2.2/24", "fd00::2/64"]])
            let link = try #require(try bed.ipJSON(netns.name, "link", "show", "eth0").first)
            #expect((link["flags"] as? [String])?.contains("UP") == true)
            #expect(link["mtu"] as? Int == 65520)
            #expect(try bed.ipJSON(netns.name, "route", "show", "default").contains {
                $0["gateway"] as? String == TestBed.routerIPv4 && $0["dev"] as? String == "eth0"
            })

            // Published ports, at once: the host's own address arrives as --map-guest-addr.
            let published: [(address: String, hostPort: UInt16, containerPort: UInt16, peer: String?)] = [
                (TestBed.hostIPv4, 8080, 80, "169.254.1.2"), (TestBed.hostIPv4, 8081, 81, "169.254.1.2"),
                (TestBed.hostIPv4, 8090, 90, "169.254.1.2"), (TestBed.hostIPv4, 8091, 91, "169.254.1.2"),
                (TestBed.hostIPv6, 8080, 80, nil), (TestBed.hostIPv6, 8081, 81, nil), ("127.0.0.1", 8080, 80, nil),
            ]
            for (address, hostPort, containerPort, peer) in published {
                let payload = Array("tcp to \(address) \(hostPort)".utf8)
                let answer = try PodmanClient.tcp(bed, in: bed.host, to: address, port: hostPort, payload: payload)
                let tag = String(decoding: answer.prefix { $0 != 0x0a }, as: UTF8.self).split(separator: " ")
                #expect(tag.first.map(String.init) == "\(containerPort)" && answer.suffix(payload.count) == payload,
                        "TCP \(address):\(hostPort): \(String(decoding: answer, as: UTF8.self).debugDescription)")
                if let peer { #expect(tag.last.map(String.init) == peer, "TCP \(address):\(hostPort) peer") }

                let datagram = Array("udp to \(address) \(hostPort)".utf8)
                let reply = try PodmanClient.udp(bed, in: bed.host, to: address, port: hostPort, payload: datagram)
                if let peer {
                    #expect(reply == podmanTag(port: containerPort, peer: peer) + datagram,
                            "UDP \(address):\(hostPort): \(reply.map { String(decoding: $0, as: UTF8.self) }.debugDescription)")
                } else {
                    #expect(reply?.starts(with: Array("\(containerPort) ".utf8)) == true && reply?.suffix(datagram.count) == datagram[...],
                            "UDP \(address):\(hostPort): \(reply.map { String(decoding: $0, as: UTF8.self) }.debugDescription)")
                }
            }
            // The address-bound range listens on 192.0.2.2 only.
            for address in ["127.0.0.1", TestBed.hostIPv6] {
                #expect(throws: SyscallError(ECONNREFUSED)) {
                    _ = try PodmanClient.tcp(bed, in: bed.host, to: address, port: 8090, payload: [1])
                }
                #expect(try PodmanClient.udp(bed, in: bed.host, to: address, port: 8090, payload: [1], tries: 1) == nil)
            }

            // DNS: 169.254.1.1:53 goes to the host's first nameserver (192.0.2.1) and back.
            let (query, answer) = try PodmanClient.dnsThroughForwarder(bed, in: netns.name, id: 0x5a17)
            #expect(answer == PodmanClient.dnsAnswer(to: query), "DNS answer \(answer ?? [])")

            // host.containers.internal: 169.254.1.2 is the host's own address, not its loopback;
            // with --no-map-gw the gateway is the real router, not the host.
            let toHost = try PodmanClient.tcp(bed, in: netns.name, to: "169.254.1.2", port: 7300, payload: Array("hi".utf8))
            #expect(toHost == podmanTag(port: 7300, peer: TestBed.hostIPv4) + Array("hi".utf8),
                    "\(String(decoding: toHost, as: UTF8.self).debugDescription)")
            let udpToHost = try PodmanClient.udp(bed, in: netns.name, to: "169.254.1.2", port: 7302, payload: Array("hi".utf8))
            #expect(udpToHost?.starts(with: Array("7302 \(TestBed.hostIPv4)\n".utf8)) == true
                        && udpToHost?.suffix(2) == Array("hi".utf8)[...],
                    "\(udpToHost.map { String(decoding: $0, as: UTF8.self) }.debugDescription)")
            for address in ["169.254.1.2", TestBed.routerIPv4] {
                #expect(throws: SyscallError(ECONNREFUSED), "\(address):7301 reached the host's loopback") {
                    _ = try PodmanClient.tcp(bed, in: netns.name, to: address, port: 7301, payload: [1])
                }
            }

            // podman deletes the namespace file; the daemon notices and exits 0.
            try netns.remove()
            let removed = Date()
            let status = launcher.orphanStatus(pid, timeout: 3)
            #expect(status == 0, "daemon exit status \(status.map(String.init) ?? "none") \(Date().timeIntervalSince(removed)) s after removal")
        }
    }

    @Test("Without ports: -t/-u/-T/-U none; --quiet leaves only the warning podman logs for a loopback resolver",
          arguments: [true, false])
    func loopbackResolver(quiet: Bool) async throws {
        try await withTestBed { bed in
            try bed.allowPingSockets()
            try "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch example.test\n"
                .write(toFile: bed.hostEtcDirectory + "/resolv.conf", atomically: true, encoding: .utf8)
            let stub = DNSStub(socket: try UDPTestSocket.open(bed, in: bed.host, address: "127.0.0.53", port: 53))
            defer { stub.stop() }
            let netns = try PodmanNamespace(.ipNetnsAdd, in: bed)
            // A listener `-t auto` (pasta's default, which podman's `-t none` turns off) would forward.
            let unpublished = try TCPTestSocket.listen(bed, in: netns.name, address: "::", port: 8080, dualStack: true)
            defer { close(unpublished) }
            let pidFile = bed.directory + "/pasta.pid"
            let arguments = podmanPastaArguments(extraOptions: PodmanTests.extraOptions(pidFile: pidFile), ports: [],
                                                 netns: netns.path, quiet: quiet)
            #expect(Array(arguments[5..<15]) == ["--dns-forward", "169.254.1.1", "-t", "none", "-u", "none",
                                                 "-T", "none", "-U", "none"])
            let launcher = try PodmanLauncher(bed, arguments: arguments)
            var daemon: pid_t?
            defer { launcher.stop(daemon: daemon) }
            let exit = try #require(launcher.waitForExit(20), "pasta did not exit or kept its output open")
            try #require(exit.status == 0, "\(exit.output)")
            daemon = pid_t(try String(contentsOfFile: pidFile, encoding: .utf8).trimmingCharacters(in: .newlines))
            let warning = "Couldn't get any nameserver address\n"
            if quiet {
                #expect(exit.output == warning)
            } else {
                #expect(exit.output.contains(warning))
                #expect(exit.output.contains("Template interface: eth0 (IPv4), eth0 (IPv6)\n"), "\(exit.output)")
                #expect(exit.output.contains("Namespace interface: eth0\n"), "\(exit.output)")
            }

            let (query, answer) = try PodmanClient.dnsThroughForwarder(bed, in: netns.name, id: 0x0b0e)
            #expect(answer == PodmanClient.dnsAnswer(to: query), "DNS answer \(answer ?? [])")
            #expect(throws: SyscallError(ECONNREFUSED), "a port was forwarded despite -t none") {
                _ = try PodmanClient.tcp(bed, in: bed.host, to: TestBed.hostIPv4, port: 8080, payload: [1])
            }

            try netns.remove()
            let pid = try #require(daemon)
            #expect(launcher.orphanStatus(pid, timeout: 3) == 0)
        }
    }
}
