// Test-side stand-ins for qemu: a frame relay that lets a network namespace's own kernel stack
// be passt's guest, and a bare stream client for the framing edge cases.
//
//   guest namespace (ptgst-...)                test process                     passt (bed's host ns)
//   kernel stack <-> tap "eth0" <-fd-> FrameRelay thread <-UNIX stream-> listening socket
//
// `FrameRelay` creates the tap inside the guest namespace (the creating thread steps in and
// back out; the descriptor keeps the device where it was made), connects to passt's socket and
// copies frames both ways on a thread of its own: each frame read from the tap goes to passt
// preceded by its length (4 bytes, big endian); the stream from passt is reassembled across
// receives and each complete frame is written to the tap. So ARP, DHCP, NDP, ping, UDP and TCP
// of that namespace all pass through passt the way a VM's would through qemu. `StreamClient`
// speaks the same framing by hand: one frame at a time, or deliberately broken input.
import Foundation
import Synchronization
import Testing
import PasstSys

/// The passt binary under test: $PASST_BINARY if set, else the one SwiftPM built next to the tests.
func passtBinary() throws -> String {
    if let path = ProcessInfo.processInfo.environment["PASST_BINARY"] { return path }
    guard let path = TestBed.binary("passt") else { throw TestBedError(description: "passt binary not built") }
    return path
}

/// A connected UNIX stream socket to passt with the length-prefixed framing, driven by the test.
final class StreamClient {
    let fd: Int32

    /// Connects to passt's socket at `path` (retrying for up to 5 s while it is not there yet).
    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestBedError(description: "socket: \(String(cString: strerror(errno)))") }
        var timeout = timeval(tv_sec: 3, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var connected = false
        for _ in 0..<250 {
            if StreamClient.connect(fd, path: path) == 0 {
                connected = true
                break
            }
            usleep(20_000)
        }
        guard connected else {
            close(fd)
            throw TestBedError(description: "connect \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Drives the already connected socket `fd` (taken over: closed with the client).
    init(connected fd: Int32) {
        self.fd = fd
        var timeout = timeval(tv_sec: 3, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    /// connect(2) of `fd` to the UNIX socket at `path`.
    static func connect(_ fd: Int32, path: String) -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
    }

    /// Writes `bytes` whole; returns whether it could.
    @discardableResult
    func write(_ bytes: [UInt8]) -> Bool {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            sent += n
        }
        return true
    }

    /// Sends `frame` with its length in front.
    @discardableResult
    func send(frame: [UInt8]) -> Bool { write(lengthPrefix(frame.count) + frame) }

    /// Reads exactly `count` bytes; nil on end of file, error or the 3 s timeout.
    func read(_ count: Int) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: count)
        var have = 0
        while have < count {
            let n = bytes.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress! + have, count - have, 0) }
            if n <= 0 { return nil }
            have += n
        }
        return bytes
    }

    /// Reads one frame (its length, then the frame); nil on end of file, error or timeout.
    func readFrame() -> [UInt8]? {
        guard let prefix = read(4) else { return nil }
        let length = prefix.reduce(0) { $0 << 8 | Int($1) }
        return read(length)
    }

    /// Whether passt closed the connection within `timeout` seconds (end of file or reset).
    func closedByPeer(within timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        var scratch = [UInt8](repeating: 0, count: 65536)
        while Date() < deadline {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 50) > 0 else { continue }
            let n = Glibc.recv(fd, &scratch, scratch.count, Int32(MSG_DONTWAIT))
            if n == 0 || (n < 0 && errno != EAGAIN) { return true }
        }
        return false
    }

    /// Asks for the gateway's MAC (ARP, from `mac`) and returns whether passt answered correctly.
    func arpExchange(mac: [UInt8] = StreamClient.guestMAC) -> Bool {
        guard send(frame: StreamClient.arpRequest(from: mac)), let reply = readFrame() else { return false }
        return StreamClient.isARPReply(reply, to: mac)
    }

    /// The MAC the hand-driven client poses as.
    static let guestMAC: [UInt8] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01]

    /// An ARP request from `mac` / 192.0.2.2 for 192.0.2.1 (the gateway), broadcast.
    static func arpRequest(from mac: [UInt8]) -> [UInt8] {
        [UInt8](repeating: 0xff, count: 6) + mac + [0x08, 0x06]
            + [0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01] + mac + [192, 0, 2, 2]
            + [UInt8](repeating: 0, count: 6) + [192, 0, 2, 1]
    }

    /// Whether `frame` is passt's ARP reply to `mac`: 192.0.2.1 is at 9a:55:9a:55:9a:55.
    static func isARPReply(_ frame: [UInt8], to mac: [UInt8]) -> Bool {
        let ours: [UInt8] = [0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55]
        return frame.count >= 42 && Array(frame[0..<6]) == mac && Array(frame[6..<12]) == ours
            && frame[12] == 0x08 && frame[13] == 0x06 && frame[20] == 0 && frame[21] == 2
            && Array(frame[22..<28]) == ours && Array(frame[28..<32]) == [192, 0, 2, 1]
    }
}

/// Starts `arguments` (output to files under `base`) with `socket` inherited as descriptor
/// `number`, in a process group of its own; returns its PID (wait for it with `Command.wait`).
func spawnInheriting(_ arguments: [String], socket: Int32, as number: Int32, base: String) throws -> pid_t {
    guard let path = Command.resolve(arguments[0]) else { throw TestBedError(description: "no \(arguments[0])") }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, base + ".out", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_addopen(&actions, 2, base + ".err", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_adddup2(&actions, socket, number)
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var noSignals = sigset_t()
    sigemptyset(&noSignals)
    posix_spawnattr_setsigmask(&attributes, &noSignals)
    posix_spawnattr_setpgroup(&attributes, 0)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK))
    var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, path, &actions, &attributes, &argv, environ)
    guard rc == 0 else { throw TestBedError(description: "posix_spawn \(path): \(String(cString: strerror(rc)))") }
    return pid
}

/// The 4-byte big-endian length passt expects in front of each frame.
func lengthPrefix(_ length: Int) -> [UInt8] {
    [UInt8(truncatingIfNeeded: length >> 24), UInt8(truncatingIfNeeded: length >> 16),
     UInt8(truncatingIfNeeded: length >> 8), UInt8(truncatingIfNeeded: length)]
}

/// Copies frames between a tap device in a namespace and passt's UNIX socket, on its own thread.
final class FrameRelay: @unchecked Sendable {
    /// The tap's descriptor (non-blocking), inside the guest namespace.
    let tap: Int32
    /// The connection to passt.
    let stream: Int32
    let stopping = Atomic<Bool>(false)
    let finished = DispatchSemaphore(value: 0)
    /// Frames copied each way (for failure messages).
    let toPasst = Atomic<Int>(0)
    let toGuest = Atomic<Int>(0)

    /// Creates tap `interface` inside namespace `namespace`, connects to passt at `socketPath`
    /// and starts relaying.
    init(namespace: String, interface: String = "eth0", socketPath: String) throws {
        let target = try TargetNetworkNamespace(path: "/run/netns/" + namespace)
        let device: TapDevice
        switch TapDevice.open(name: interface, in: target) {
        case .success(let opened): device = opened
        case .wouldBlock: throw TestBedError(description: "tap: EAGAIN")
        case .failure(let code): throw TestBedError(description: "tap: \(SyscallError(code))")
        }
        let client = try StreamClient(path: socketPath)
        stream = dup(client.fd)
        tap = dup(device.descriptor.raw)
        var size: Int32 = 16 << 20
        setsockopt(stream, SOL_SOCKET, SO_SNDBUF, &size, 4)
        setsockopt(stream, SOL_SOCKET, SO_RCVBUF, &size, 4)
        var sendTimeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(stream, SOL_SOCKET, SO_SNDTIMEO, &sendTimeout, socklen_t(MemoryLayout<timeval>.size))
        Thread { [self] in run() }.start()
    }

    /// The relay loop: frames from the tap to passt, the stream from passt split into frames for the tap.
    private func run() {
        var frame = [UInt8](repeating: 0, count: 65536 + 4)
        var inbound = [UInt8](repeating: 0, count: 1 << 20)
        var have = 0
        var fds = [pollfd(fd: tap, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: stream, events: Int16(POLLIN), revents: 0)]
        var streamOpen = true
        while !stopping.load(ordering: .relaxed) {
            fds[1].fd = streamOpen ? stream : -1
            guard poll(&fds, 2, 50) > 0 else { continue }
            if fds[0].revents & Int16(POLLIN) != 0 {
                while true {
                    let n = frame.withUnsafeMutableBytes { read(tap, $0.baseAddress! + 4, 65536) }
                    if n <= 0 { break }
                    frame.replaceSubrange(0..<4, with: lengthPrefix(n))
                    if streamOpen && !writeAll(stream, frame, count: n + 4) { streamOpen = false }
                    toPasst.add(1, ordering: .relaxed)
                }
            }
            if streamOpen && fds[1].revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
                let n = inbound.withUnsafeMutableBytes { recv(stream, $0.baseAddress! + have, $0.count - have, Int32(MSG_DONTWAIT)) }
                if n == 0 || (n < 0 && errno != EAGAIN) {
                    streamOpen = false
                    continue
                }
                if n < 0 { continue }
                have += n
                var offset = 0
                while have - offset >= 4 {
                    let length = inbound[offset..<(offset + 4)].reduce(0) { $0 << 8 | Int($1) }
                    guard have - offset - 4 >= length else { break }
                    _ = inbound.withUnsafeBytes { write(tap, $0.baseAddress! + offset + 4, length) }
                    toGuest.add(1, ordering: .relaxed)
                    offset += 4 + length
                }
                if offset > 0 {
                    inbound.withUnsafeMutableBytes { $0.baseAddress!.copyMemory(from: $0.baseAddress! + offset, byteCount: have - offset) }
                    have -= offset
                }
            }
        }
        finished.signal()
    }

    /// Writes the first `count` bytes of `bytes` to `fd` whole; false if the connection broke.
    private func writeAll(_ fd: Int32, _ bytes: [UInt8], count: Int) -> Bool {
        var sent = 0
        while sent < count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + sent, count - sent, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            sent += n
        }
        return true
    }

    /// Frames relayed so far, for failure messages.
    var counts: String { "\(toPasst.load(ordering: .relaxed)) to passt, \(toGuest.load(ordering: .relaxed)) to guest" }

    /// Stops the thread and closes both ends (the tap, and with it the interface, goes away).
    func stop() {
        stopping.store(true, ordering: .relaxed)
        finished.wait()
        close(stream)
        close(tap)
    }
}

extension TestBed {
    /// Starts `passt -f` in the host namespace with its socket in the bed's directory, `arguments`
    /// added; returns the socket path and the process once the PID file is written.
    func startPasst(_ arguments: [String]) throws -> (socketPath: String, process: BackgroundProcess) {
        try allowPingSockets()
        let id = Command.nextID()
        let socketPath = directory + "/passt-\(id).socket"
        let pidFile = directory + "/passt-\(id).pid"
        let passt = try startBackground(in: host, [try passtBinary(), "-f", "-s", socketPath, "-P", pidFile] + arguments)
        guard waitUntil(10, { pidFileWritten(pidFile) }) else {
            throw TestBedError(description: "passt did not start: \(passt.stderr())")
        }
        return (socketPath, passt)
    }

    /// A new guest namespace behind a relay to passt at `socketPath`, its tap "eth0" up with MTU
    /// 65520 and, if `configure`, passt's addresses and routes set statically (192.0.2.2/24,
    /// fd00::2/64, default via 192.0.2.1 and fd00::1, replacing a route from passt's RA).
    func startGuest(socketPath: String, configure: Bool = true) throws -> (String, FrameRelay) {
        let guest = try makeNamespace("gst")
        let relay = try FrameRelay(namespace: guest, socketPath: socketPath)
        do {
            try ip(guest, "link", "set", "eth0", "mtu", "65520", "up")
            if configure {
                try ip(guest, "addr", "add", "192.0.2.2/24", "dev", "eth0")
                try ip(guest, "addr", "add", "fd00::2/64", "dev", "eth0", "nodad")
                try ip(guest, "route", "replace", "default", "via", "192.0.2.1")
                try ip(guest, "-6", "route", "replace", "default", "via", "fd00::1")
            }
        } catch {
            relay.stop()
            throw error
        }
        return (guest, relay)
    }
}
