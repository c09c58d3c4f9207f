// FileDescriptor ownership, would-block results, data transfer, clocks and timerfd.
import Testing
import Glibc
import CPasstShim
@testable import PasstSys

/// Inode of `fd`, nil if the descriptor is not open.
private func inode(_ fd: Int32) -> UInt64? {
    var st = stat()
    return fstat(fd, &st) == 0 ? UInt64(st.st_ino) : nil
}

/// The value of a success, recording a test issue otherwise.
private func value<T>(_ r: SyscallResult<T>, sourceLocation: SourceLocation = #_sourceLocation) -> T? {
    if case .success(let v) = r { return v }
    Issue.record("expected success, got \(r)", sourceLocation: sourceLocation)
    return nil
}

@Suite struct FileDescriptorTests {
    @Test func closesWhenDropped() throws {
        var raw: Int32 = -1
        var node: UInt64?
        do {
            let pipe = try Sys.pipe().get()
            raw = pipe.readEnd.raw
            node = inode(raw)
            #expect(node != nil)
        }
        // Closed: the number is free, or (tests run in parallel) reused for another file.
        #expect(inode(raw) != node)
    }

    @Test func releaseKeepsDescriptorOpen() throws {
        let pipe = try Sys.pipe().get()
        let raw = pipe.writeEnd.release()
        let node = inode(raw)
        #expect(node != nil)
        #expect(Glibc.close(raw) == 0)
        _ = pipe.readEnd
    }

    @Test func explicitCloseReportsSuccess() throws {
        let pipe = try Sys.pipe().get()
        var closed = false
        if case .success = pipe.readEnd.close() { closed = true }
        #expect(closed)
        _ = pipe.writeEnd
    }

    @Test func errorsCarryErrnoAndText() {
        var code: Int32 = 0
        switch Sys.open("/nonexistent/passt-test", flags: O_RDONLY) {
        case .failure(let e): code = e
        default: Issue.record("open of a missing file succeeded")
        }
        #expect(code == ENOENT)
        #expect(SyscallError(ENOENT).description == "No such file or directory")
        #expect(SyscallResult<Int>.wouldBlock.errorCode == EAGAIN)
        #expect(SyscallResult<Int>.success(1).errorCode == nil)
    }
}

@Suite struct DataTransferTests {
    @Test func emptyNonBlockingPipeWouldBlock() throws {
        let pipe = try Sys.pipe(flags: O_NONBLOCK).get()
        var buf = [UInt8](repeating: 0, count: 16)
        let r = buf.withUnsafeMutableBytes { Sys.read(pipe.readEnd.raw, into: $0) }
        guard case .wouldBlock = r else { Issue.record("expected wouldBlock, got \(r)"); return }
    }

    @Test func emptyNonBlockingSocketWouldBlock() throws {
        let pair = try Sys.socketPair(type: SocketType.stream).get()
        #expect(value(Sys.setNonBlocking(pair.first.raw)) != nil)
        var buf = [UInt8](repeating: 0, count: 16)
        let r = buf.withUnsafeMutableBytes { Sys.recv(pair.first.raw, into: $0) }
        guard case .wouldBlock = r else { Issue.record("expected wouldBlock, got \(r)"); return }
        // MSG_DONTWAIT works on a blocking socket too.
        let r2 = buf.withUnsafeMutableBytes { Sys.recv(pair.second.raw, into: $0, flags: Int32(MSG_DONTWAIT)) }
        guard case .wouldBlock = r2 else { Issue.record("expected wouldBlock, got \(r2)"); return }
    }

    @Test func setNonBlockingTogglesFlag() throws {
        let pipe = try Sys.pipe().get()
        #expect(fcntl(pipe.readEnd.raw, F_GETFL) & O_NONBLOCK == 0)
        _ = Sys.setNonBlocking(pipe.readEnd.raw)
        #expect(fcntl(pipe.readEnd.raw, F_GETFL) & O_NONBLOCK != 0)
        _ = Sys.setNonBlocking(pipe.readEnd.raw, false)
        #expect(fcntl(pipe.readEnd.raw, F_GETFL) & O_NONBLOCK == 0)
        #expect(fcntl(pipe.writeEnd.raw, F_GETFD) & FD_CLOEXEC != 0)
    }

    @Test func sendRecvAndVectoredIO() throws {
        let pair = try Sys.socketPair(type: SocketType.stream | SocketType.nonBlocking).get()
        let hello: [UInt8] = Array("hello ".utf8), world: [UInt8] = Array("world".utf8)
        let sent = hello.withUnsafeBytes { h in
            world.withUnsafeBytes { w in
                var iov = [iovec(iov_base: UnsafeMutableRawPointer(mutating: h.baseAddress), iov_len: h.count),
                           iovec(iov_base: UnsafeMutableRawPointer(mutating: w.baseAddress), iov_len: w.count)]
                return Sys.writev(pair.first.raw, &iov, count: 2)
            }
        }
        #expect(value(sent) == 11)
        var a = [UInt8](repeating: 0, count: 6), b = [UInt8](repeating: 0, count: 5)
        let got = a.withUnsafeMutableBytes { pa in
            b.withUnsafeMutableBytes { pb in
                var iov = [iovec(iov_base: pa.baseAddress, iov_len: 6), iovec(iov_base: pb.baseAddress, iov_len: 5)]
                return Sys.readv(pair.second.raw, &iov, count: 2)
            }
        }
        #expect(value(got) == 11)
        #expect(a == hello && b == world)

        let n = world.withUnsafeBytes { Sys.send(pair.second.raw, $0, flags: Int32(MSG_NOSIGNAL)) }
        #expect(value(n) == 5)
        var c = [UInt8](repeating: 0, count: 8)
        #expect(value(c.withUnsafeMutableBytes { Sys.recv(pair.first.raw, into: $0) }) == 5)
        #expect(Array(c[..<5]) == world)
    }

    @Test func brokenPipeIsAnErrorWithSIGPIPEIgnored() throws {
        #expect(value(Signals.ignore(SIGPIPE)) != nil)
        let pair = try Sys.socketPair(type: SocketType.stream).get()
        let writer = pair.first
        _ = pair.second.close()
        let r = [UInt8](repeating: 1, count: 4).withUnsafeBytes { Sys.write(writer.raw, $0) }
        #expect(r.errorCode == EPIPE)
    }

    @Test func socketOptionsRoundTrip() throws {
        let s = try Sys.socket(domain: AF_INET, type: SocketType.stream).get()
        #expect(value(Sys.setOption(s.raw, level: SOL_SOCKET, name: SO_REUSEADDR, Int32(1))) != nil)
        #expect(value(Sys.getOption(s.raw, level: SOL_SOCKET, name: SO_REUSEADDR, as: Int32.self)) == 1)
        #expect(value(Sys.getOption(s.raw, level: SOL_SOCKET, name: SO_TYPE, as: Int32.self)) == SocketType.stream)
    }

    @Test func loopbackTCPConnectAcceptAndTCPInfo() throws {
        let listener = try Sys.socket(domain: AF_INET, type: SocketType.stream).get()
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let len = socklen_t(MemoryLayout<sockaddr_in>.size)
        #expect(value(withUnsafeBytes(of: &addr) { Sys.bind(listener.raw, $0.baseAddress!, length: len) }) != nil)
        #expect(value(Sys.listen(listener.raw, backlog: 8)) != nil)
        var bound = sockaddr_in(), boundLen = len
        _ = withUnsafeMutablePointer(to: &bound) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener.raw, $0, &boundLen) }
        }
        let client = try Sys.socket(domain: AF_INET, type: SocketType.stream).get()
        #expect(value(withUnsafeBytes(of: &bound) { Sys.connect(client.raw, $0.baseAddress!, length: len) }) != nil)
        let server = try Sys.accept(listener.raw).get()
        #expect(fcntl(server.raw, F_GETFL) & O_NONBLOCK != 0)
        let info = try Sys.tcpInfo(client.raw).get()
        #expect(info.isEstablished)
        #expect(try Sys.tcpInfo(listener.raw).get().state == 10)   // TCP_LISTEN
        #expect(info.sendMSS > 0)
        #expect(info.hasBytesAcked && info.hasMinRTT && info.hasSendWindow)
        #expect(info.sendWindow > 0)
        // Nothing queued on the accepted (non-blocking) socket yet.
        var b: UInt64 = 0
        let r = withUnsafeMutableBytes(of: &b) { Sys.read(server.raw, into: $0) }
        guard case .wouldBlock = r else { Issue.record("expected wouldBlock, got \(r)"); return }
    }

    @Test func unixDatagramBindConnectAndLongPath() throws {
        let path = "/tmp/passt-sys-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        defer { unlink(path) }
        let server = try Sys.socket(domain: AF_UNIX, type: SocketType.datagram).get()
        #expect(value(Sys.bind(server.raw, unixPath: path)) != nil)
        let client = try Sys.socket(domain: AF_UNIX, type: SocketType.datagram).get()
        #expect(value(Sys.connect(client.raw, unixPath: path)) != nil)
        #expect(value(Array("ping".utf8).withUnsafeBytes { Sys.send(client.raw, $0) }) == 4)
        var buf = [UInt8](repeating: 0, count: 8)
        #expect(value(buf.withUnsafeMutableBytes { Sys.recv(server.raw, into: $0) }) == 4)
        let long = "/tmp/" + String(repeating: "x", count: 200)
        #expect(Sys.connect(client.raw, unixPath: long).errorCode == ENAMETOOLONG)
    }

    @Test func fileOpsReadLinkAndFallocate() throws {
        let path = "/tmp/passt-sys-file-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { unlink(path) }
        let f = try Sys.open(path, flags: O_CREAT | O_TRUNC | O_RDWR, mode: 0o600).get()
        var st = stat()
        fstat(f.raw, &st)
        #expect(st.st_mode & 0o777 == 0o600)
        #expect(value(Array("abcdef".utf8).withUnsafeBytes { Sys.pwrite(f.raw, $0, offset: 2) }) == 6)
        var buf = [UInt8](repeating: 0, count: 4)
        #expect(value(buf.withUnsafeMutableBytes { Sys.pread(f.raw, into: $0, offset: 4) }) == 4)
        #expect(buf == Array("cdef".utf8))
        #expect(value(Sys.truncate(f.raw, length: 3)) != nil)
        fstat(f.raw, &st)
        #expect(st.st_size == 3)
        // A range collapse must be block-aligned: unaligned requests fail with EINVAL.
        #expect(Sys.fallocate(f.raw, mode: FALLOC_FL_COLLAPSE_RANGE, offset: 0, length: 1).errorCode == EINVAL)
        let exe = try Sys.readLink("/proc/self/exe").get()
        #expect(exe.hasPrefix("/"))
    }

    @Test func spliceMovesBytesThroughPipe() throws {
        let pipe = try Sys.pipe(flags: O_NONBLOCK).get()
        let pair = try Sys.socketPair(type: SocketType.stream).get()
        #expect(value(Array("splice".utf8).withUnsafeBytes { Sys.write(pair.first.raw, $0) }) == 6)
        #expect(value(Sys.splice(from: pair.second.raw, to: pipe.writeEnd.raw, length: 64)) == 6)
        var buf = [UInt8](repeating: 0, count: 8)
        #expect(value(buf.withUnsafeMutableBytes { Sys.read(pipe.readEnd.raw, into: $0) }) == 6)
    }

    @Test func prctlReadsDumpable() {
        #expect(value(Sys.prctl(PR_GET_DUMPABLE)) != nil)
    }
}

@Suite struct ClockAndTimerTests {
    @Test func monotonicAdvancesAndRealtimeIsRecent() {
        let a = SystemClock.monotonicNanoseconds()
        let b = SystemClock.monotonicNanoseconds()
        #expect(b >= a)
        let wall = SystemClock.realtime()
        #expect(wall.seconds > 1_700_000_000)
        #expect((0..<1_000_000_000).contains(wall.nanoseconds))
    }

    @Test func timerExpiresAndReportsCount() throws {
        let timer = try TimerFD.create().get()
        guard case .wouldBlock = timer.readExpirations() else { Issue.record("unarmed timer readable"); return }
        #expect(value(timer.arm(after: 1_000_000)) != nil)
        let epoll = try Epoll.create().get()
        #expect(value(epoll.add(timer.raw, events: .input, data: 7)) != nil)
        var events = EpollEventBuffer(capacity: 4)
        #expect(value(epoll.wait(into: &events, timeoutMilliseconds: 2000)) == 1)
        #expect(events.data(at: 0) == 7)
        #expect(value(timer.readExpirations()) == 1)
        guard case .wouldBlock = timer.readExpirations() else { Issue.record("expired twice"); return }
    }

    @Test func periodicTimerAccumulatesAndDisarms() throws {
        let timer = try TimerFD.create().get()
        #expect(value(timer.arm(deadline: SystemClock.monotonicNanoseconds() + 1_000_000, interval: 1_000_000)) != nil)
        #expect(value(timer.remaining()).map { $0 > 0 } == true)
        usleep(5_000)
        #expect(value(timer.readExpirations()).map { $0 >= 2 } == true)
        #expect(value(timer.disarm()) != nil)
        #expect(value(timer.remaining()) == 0)
    }
}
