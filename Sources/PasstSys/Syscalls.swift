// Thin syscall wrappers.
//
// Theory of operation: every function here is one syscall (two for `setNonBlocking`), retried on
// EINTR, returning a `SyscallResult` so that EAGAIN is a value rather than an error. Functions take
// raw descriptor numbers because most descriptors on the packet path live in tables (flows, epoll
// data) rather than in `FileDescriptor` owners; pass `owner.raw`. Functions that create a
// descriptor return an owning `FileDescriptor` and always add close-on-exec: pasta spawns a shell
// into the namespace, and no socket of ours may leak into it.
//
// Buffers are raw pointers supplied by the caller (frame pools, stack buffers); nothing here
// allocates except the control-path helpers taking a `String` path.
#if canImport(Glibc)
import Glibc
#endif
import CPasstShim

/// The two ends of a pipe: bytes written to `writeEnd` are read from `readEnd`.
@frozen public struct Pipe: ~Copyable {
    public var readEnd: FileDescriptor
    public var writeEnd: FileDescriptor
}

/// Two connected sockets from socketpair(2).
@frozen public struct SocketPair: ~Copyable {
    public var first: FileDescriptor
    public var second: FileDescriptor
}

/// TCP_INFO fields used by the TCP translation (spec §6.5); has* false when the kernel lacks one.
public struct TCPInfo: Equatable, Sendable {
    public var bytesAcked: UInt64
    public var sendWindow: UInt32
    public var minRTTMicroseconds: UInt32
    public var sendMSS: UInt32
    public var sendWindowScale: UInt8
    /// tcpi_state: the socket's TCP state (TCP_ESTABLISHED is 1).
    public var state: UInt8
    public var hasBytesAcked: Bool
    public var hasMinRTT: Bool
    public var hasSendWindow: Bool

    /// Makes a TCPInfo from its fields.
    @inlinable public init(bytesAcked: UInt64, sendWindow: UInt32, minRTTMicroseconds: UInt32, sendMSS: UInt32,
                           sendWindowScale: UInt8, state: UInt8, hasBytesAcked: Bool, hasMinRTT: Bool,
                           hasSendWindow: Bool) {
        self.bytesAcked = bytesAcked; self.sendWindow = sendWindow; self.minRTTMicroseconds = minRTTMicroseconds
        self.sendMSS = sendMSS; self.sendWindowScale = sendWindowScale; self.state = state
        self.hasBytesAcked = hasBytesAcked; self.hasMinRTT = hasMinRTT; self.hasSendWindow = hasSendWindow
    }

    /// Whether the socket is in state ESTABLISHED.
    @inlinable public var isEstablished: Bool { state == 1 }
}

/// socket(2) type values as Int32 (Glibc imports them as an enum).
public enum SocketType {
    public static let stream = Int32(SOCK_STREAM.rawValue)
    public static let datagram = Int32(SOCK_DGRAM.rawValue)
    /// Flag to OR into a type: the socket starts non-blocking.
    public static let nonBlocking = Int32(SOCK_NONBLOCK.rawValue)
}

/// Namespace for the syscall wrappers.
public enum Sys {
    // MARK: Data transfer

    /// read(2) into `buffer`; returns the byte count (0 at end of file).
    @inlinable public static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) -> SyscallResult<Int> {
        retryingEINTR { Glibc.read(fd, buffer.baseAddress, buffer.count) }
    }

    /// write(2) of `buffer`; returns the byte count written (may be short).
    @inlinable public static func write(_ fd: Int32, _ buffer: UnsafeRawBufferPointer) -> SyscallResult<Int> {
        retryingEINTR { Glibc.write(fd, buffer.baseAddress, buffer.count) }
    }

    /// pread(2) at `offset`; returns the byte count (0 at end of file).
    @inlinable public static func pread(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer,
                                        offset: Int) -> SyscallResult<Int> {
        retryingEINTR { Glibc.pread(fd, buffer.baseAddress, buffer.count, off_t(offset)) }
    }

    /// pwrite(2) at `offset`; returns the byte count written.
    @inlinable public static func pwrite(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, offset: Int) -> SyscallResult<Int> {
        retryingEINTR { Glibc.pwrite(fd, buffer.baseAddress, buffer.count, off_t(offset)) }
    }

    /// readv(2) into `count` iovecs; returns the byte count.
    @inlinable public static func readv(_ fd: Int32, _ iov: UnsafePointer<iovec>, count: Int) -> SyscallResult<Int> {
        retryingEINTR { Glibc.readv(fd, iov, Int32(count)) }
    }

    /// writev(2) of `count` iovecs; returns the byte count written.
    @inlinable public static func writev(_ fd: Int32, _ iov: UnsafePointer<iovec>, count: Int) -> SyscallResult<Int> {
        retryingEINTR { Glibc.writev(fd, iov, Int32(count)) }
    }

    /// recv(2) with MSG_* `flags`; returns the byte count (0 on orderly shutdown).
    @inlinable public static func recv(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer,
                                       flags: Int32 = 0) -> SyscallResult<Int> {
        retryingEINTR { Glibc.recv(fd, buffer.baseAddress, buffer.count, flags) }
    }

    /// send(2) with MSG_* `flags`; returns the byte count sent.
    @inlinable public static func send(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, flags: Int32 = 0) -> SyscallResult<Int> {
        retryingEINTR { Glibc.send(fd, buffer.baseAddress, buffer.count, flags) }
    }

    /// recvmsg(2); returns the byte count.
    @inlinable public static func recvmsg(_ fd: Int32, _ message: UnsafeMutablePointer<msghdr>,
                                          flags: Int32 = 0) -> SyscallResult<Int> {
        retryingEINTR { Glibc.recvmsg(fd, message, flags) }
    }

    /// sendmsg(2); returns the byte count sent.
    @inlinable public static func sendmsg(_ fd: Int32, _ message: UnsafePointer<msghdr>, flags: Int32 = 0) -> SyscallResult<Int> {
        retryingEINTR { Glibc.sendmsg(fd, message, flags) }
    }

    /// recvmmsg(2) of up to `count` datagrams, no timeout; returns the number received.
    @inlinable public static func recvmmsg(_ fd: Int32, _ messages: UnsafeMutablePointer<shim_mmsghdr>, count: Int,
                                           flags: Int32 = 0) -> SyscallResult<Int32> {
        retryingEINTR { shim_recvmmsg(fd, messages, UInt32(count), flags) }
    }

    /// sendmmsg(2) of up to `count` datagrams; returns the number sent.
    @inlinable public static func sendmmsg(_ fd: Int32, _ messages: UnsafeMutablePointer<shim_mmsghdr>, count: Int,
                                           flags: Int32 = 0) -> SyscallResult<Int32> {
        retryingEINTR { shim_sendmmsg(fd, messages, UInt32(count), flags) }
    }

    /// splice(2) of up to `length` bytes between two descriptors (one must be a pipe).
    @inlinable public static func splice(from input: Int32, to output: Int32, length: Int,
                                         flags: UInt32 = SHIM_SPLICE_F_MOVE | SHIM_SPLICE_F_NONBLOCK) -> SyscallResult<Int> {
        retryingEINTR { shim_splice(input, output, length, flags) }
    }

    /// shutdown(2) with SHUT_RD, SHUT_WR or SHUT_RDWR.
    @inlinable public static func shutdown(_ fd: Int32, _ how: Int32) -> SyscallResult<Void> {
        retryingEINTRVoid { Glibc.shutdown(fd, how) }
    }

    // MARK: Descriptor creation

    /// socket(2) with close-on-exec added to `type` (add SOCK_NONBLOCK yourself).
    public static func socket(domain: Int32, type: Int32, protocol proto: Int32 = 0) -> SyscallResult<FileDescriptor> {
        retryingEINTRDescriptor { Glibc.socket(domain, type | Int32(SOCK_CLOEXEC.rawValue), proto) }
    }

    /// socketpair(2) with close-on-exec added to `type`.
    public static func socketPair(domain: Int32 = AF_UNIX, type: Int32,
                                  protocol proto: Int32 = 0) -> SyscallResult<SocketPair> {
        var fds: (Int32, Int32) = (-1, -1)
        let r = withUnsafeMutableBytes(of: &fds) { p in
            retryingEINTRVoid {
                Glibc.socketpair(domain, type | Int32(SOCK_CLOEXEC.rawValue), proto,
                                 p.baseAddress!.assumingMemoryBound(to: Int32.self))
            }
        }
        if case .failure(let e) = r { return .failure(e) }
        return .success(SocketPair(first: FileDescriptor(taking: fds.0), second: FileDescriptor(taking: fds.1)))
    }

    /// pipe2(2) with close-on-exec added to `flags` (e.g. O_NONBLOCK).
    public static func pipe(flags: Int32 = 0) -> SyscallResult<Pipe> {
        var fds: (Int32, Int32) = (-1, -1)
        let r = withUnsafeMutableBytes(of: &fds) { p in
            retryingEINTRVoid { shim_pipe2(p.baseAddress!.assumingMemoryBound(to: Int32.self), flags | O_CLOEXEC) }
        }
        if case .failure(let e) = r { return .failure(e) }
        return .success(Pipe(readEnd: FileDescriptor(taking: fds.0), writeEnd: FileDescriptor(taking: fds.1)))
    }

    /// open(2) of `path` with close-on-exec added to `flags`; `mode` applies when creating.
    public static func open(_ path: String, flags: Int32, mode: mode_t = 0o600) -> SyscallResult<FileDescriptor> {
        retryingEINTRDescriptor { Glibc.open(path, flags | O_CLOEXEC, mode) }
    }

    /// accept4(2) with close-on-exec added to `flags`; fills `address`/`length` when given.
    @inlinable public static func accept(_ fd: Int32, flags: Int32 = Int32(SOCK_NONBLOCK.rawValue),
                                         address: UnsafeMutablePointer<sockaddr>? = nil,
                                         length: UnsafeMutablePointer<socklen_t>? = nil) -> SyscallResult<FileDescriptor> {
        retryingEINTRDescriptor { shim_accept4(fd, address, length, flags | Int32(SOCK_CLOEXEC.rawValue)) }
    }

    // MARK: Socket set-up

    /// bind(2) to the socket address at `address` of `length` bytes.
    @inlinable public static func bind(_ fd: Int32, _ address: UnsafeRawPointer, length: socklen_t) -> SyscallResult<Void> {
        retryingEINTRVoid { Glibc.bind(fd, address.assumingMemoryBound(to: sockaddr.self), length) }
    }

    /// connect(2) to the socket address at `address`; EINPROGRESS comes back as a failure.
    @inlinable public static func connect(_ fd: Int32, _ address: UnsafeRawPointer, length: socklen_t) -> SyscallResult<Void> {
        retryingEINTRVoid { Glibc.connect(fd, address.assumingMemoryBound(to: sockaddr.self), length) }
    }

    /// bind(2) a UNIX domain socket to filesystem `path` (ENAMETOOLONG if it does not fit).
    public static func bind(_ fd: Int32, unixPath path: String) -> SyscallResult<Void> {
        withUnixAddress(path) { a, l in bind(fd, a, length: l) }
    }

    /// connect(2) a UNIX domain socket to filesystem `path` (ENAMETOOLONG if it does not fit).
    public static func connect(_ fd: Int32, unixPath path: String) -> SyscallResult<Void> {
        withUnixAddress(path) { a, l in connect(fd, a, length: l) }
    }

    /// listen(2) with `backlog`.
    @inlinable public static func listen(_ fd: Int32, backlog: Int32) -> SyscallResult<Void> {
        retryingEINTRVoid { Glibc.listen(fd, backlog) }
    }

    /// setsockopt(2) of a plain value (Int32 flag, linger, timeval, ...).
    @inlinable public static func setOption<T: BitwiseCopyable>(_ fd: Int32, level: Int32, name: Int32,
                                                                 _ value: T) -> SyscallResult<Void> {
        withUnsafeBytes(of: value) { v in
            retryingEINTRVoid { Glibc.setsockopt(fd, level, name, v.baseAddress, socklen_t(v.count)) }
        }
    }

    /// SO_BINDTODEVICE: restricts socket `fd` to interface `name` (--outbound-if, "%IFNAME").
    public static func bindToDevice(_ fd: Int32, _ name: String) -> SyscallResult<Void> {
        name.withCString { cName in
            retryingEINTRVoid { Glibc.setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, cName, socklen_t(strlen(cName) + 1)) }
        }
    }

    /// getsockopt(2) of a plain value of type `T`.
    @inlinable public static func getOption<T: BitwiseCopyable>(_ fd: Int32, level: Int32, name: Int32,
                                                                 as type: T.Type) -> SyscallResult<T> {
        withUnsafeTemporaryAllocation(byteCount: MemoryLayout<T>.size, alignment: MemoryLayout<T>.alignment) { storage in
            storage.initializeMemory(as: UInt8.self, repeating: 0)
            var length = socklen_t(MemoryLayout<T>.size)
            switch retryingEINTRVoid({ Glibc.getsockopt(fd, level, name, storage.baseAddress, &length) }) {
            case .success: return .success(storage.loadUnaligned(as: T.self))
            case .wouldBlock: return .wouldBlock
            case .failure(let e): return .failure(e)
            }
        }
    }

    /// getsockopt(TCP_INFO) reduced to the fields of `TCPInfo`.
    @inlinable public static func tcpInfo(_ fd: Int32) -> SyscallResult<TCPInfo> {
        var info = shim_tcp_info()
        if shim_tcp_info(fd, &info) != 0 { return .failure(errno) }
        return .success(TCPInfo(bytesAcked: info.bytes_acked, sendWindow: info.snd_wnd,
                                minRTTMicroseconds: info.min_rtt, sendMSS: info.snd_mss,
                                sendWindowScale: info.snd_wscale, state: info.state,
                                hasBytesAcked: info.has_bytes_acked != 0, hasMinRTT: info.has_min_rtt != 0,
                                hasSendWindow: info.has_snd_wnd != 0))
    }

    // MARK: Descriptor state

    /// Sets or clears O_NONBLOCK with fcntl(F_GETFL/F_SETFL).
    public static func setNonBlocking(_ fd: Int32, _ on: Bool = true) -> SyscallResult<Void> {
        switch retryingEINTR({ Glibc.fcntl(fd, F_GETFL) }) {
        case .success(let flags):
            let wanted = on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK
            if wanted == flags { return .success(()) }
            return retryingEINTRVoid { Glibc.fcntl(fd, F_SETFL, wanted) }
        case .wouldBlock: return .wouldBlock
        case .failure(let e): return .failure(e)
        }
    }

    /// close_range(2): closes every descriptor in `first...last` (flags e.g. CLOSE_RANGE_CLOEXEC).
    public static func closeRange(first: UInt32, last: UInt32 = UInt32.max, flags: Int32 = 0) -> SyscallResult<Void> {
        retryingEINTRVoid { shim_close_range(first, last, flags) }
    }

    // MARK: Files

    /// ftruncate(2) to `length` bytes.
    public static func truncate(_ fd: Int32, length: Int) -> SyscallResult<Void> {
        retryingEINTRVoid { Glibc.ftruncate(fd, off_t(length)) }
    }

    /// fallocate(2) with FALLOC_FL_* `mode` over `length` bytes at `offset`.
    public static func fallocate(_ fd: Int32, mode: Int32, offset: Int, length: Int) -> SyscallResult<Void> {
        retryingEINTRVoid { shim_fallocate(fd, mode, off_t(offset), off_t(length)) }
    }

    /// readlink(2) of `path`, e.g. "/proc/self/exe"; returns the target.
    public static func readLink(_ path: String) -> SyscallResult<String> {
        let capacity = Int(PATH_MAX)
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: capacity) { buf in
            switch retryingEINTR({ Glibc.readlink(path, buf.baseAddress!, capacity) }) {
            case .success(let n): return .success(String(decoding: buf[..<n], as: UTF8.self))
            case .wouldBlock: return .wouldBlock
            case .failure(let e): return .failure(e)
            }
        }
    }

    // MARK: Randomness

    /// getrandom(2) filling all of `buffer` (retried on short reads and EINTR).
    public static func getRandom(into buffer: UnsafeMutableRawBufferPointer) -> SyscallResult<Void> {
        var done = 0
        while done < buffer.count {
            switch retryingEINTR({ shim_getrandom(buffer.baseAddress! + done, buffer.count - done, 0) }) {
            case .success(let count): done += count
            case .wouldBlock: return .wouldBlock
            case .failure(let code): return .failure(code)
            }
        }
        return .success(())
    }

    // MARK: Process

    /// prctl(2) with PR_* `option` and up to four arguments; returns the prctl result.
    public static func prctl(_ option: Int32, _ arg2: UInt = 0, _ arg3: UInt = 0, _ arg4: UInt = 0,
                             _ arg5: UInt = 0) -> SyscallResult<Int32> {
        retryingEINTR { shim_prctl(option, arg2, arg3, arg4, arg5) }
    }

    // MARK: Helpers

    /// Builds a sockaddr_un for `path` and passes it with its length to `body`.
    static func withUnixAddress(_ path: String,
                                _ body: (UnsafeRawPointer, socklen_t) -> SyscallResult<Void>) -> SyscallResult<Void> {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else { return .failure(ENAMETOOLONG) }
        withUnsafeMutableBytes(of: &address.sun_path) { p in
            p.copyBytes(from: bytes)
        }
        let length = socklen_t(MemoryLayout.offset(of: \sockaddr_un.sun_path)! + bytes.count + 1)
        return withUnsafeBytes(of: &address) { body($0.baseAddress!, length) }
    }
}
