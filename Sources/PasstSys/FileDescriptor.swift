// Owned file descriptors and syscall results.
//
// Theory of operation: a `FileDescriptor` is a move-only owner of one kernel fd; it closes the fd
// when it goes away, so no path (error returns included) can leak one. Syscall wrappers return a
// `SyscallResult`: a value, `wouldBlock` (EAGAIN/EWOULDBLOCK, the normal case for non-blocking
// sockets, not an error) or an errno. EINTR is retried inside the wrappers.
//
// `SyscallResult` may carry a move-only value (`SyscallResult<FileDescriptor>` from `socket`,
// `accept`, `open`): match it with `switch consume result`. Control-path code that prefers
// `throws` calls `get()`, which turns `wouldBlock` and errnos into a `SyscallError`.
#if canImport(Glibc)
import Glibc
#endif

/// The outcome of a non-blocking syscall: a value, "try again later", or an errno.
public enum SyscallResult<Value: ~Copyable>: ~Copyable {
    case success(Value)
    case wouldBlock
    case failure(Int32)
}

extension SyscallResult: Copyable where Value: Copyable {}
extension SyscallResult: Sendable where Value: Sendable & ~Copyable {}

extension SyscallResult where Value: ~Copyable {
    /// Returns the value or throws the errno (EAGAIN for `wouldBlock`) as a `SyscallError`.
    @inlinable public consuming func get() throws(SyscallError) -> Value {
        switch consume self {
        case .success(let value): return value
        case .wouldBlock: throw SyscallError(EAGAIN)
        case .failure(let code): throw SyscallError(code)
        }
    }
}

extension SyscallResult {
    /// The errno of a failure, EAGAIN for `wouldBlock`, nil on success.
    @inlinable public var errorCode: Int32? {
        switch self {
        case .success: return nil
        case .wouldBlock: return EAGAIN
        case .failure(let code): return code
        }
    }
}

/// An errno from a failed syscall, for control-path code that throws.
public struct SyscallError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The errno value.
    public let code: Int32

    /// Wraps errno value `code`.
    @inlinable public init(_ code: Int32) { self.code = code }

    /// The C library's text for the errno (strerror).
    public var description: String { String(cString: strerror(code)) }
}

/// Owns one file descriptor and closes it on deinit.
public struct FileDescriptor: ~Copyable, Sendable {
    /// The raw descriptor number (valid while this owner lives).
    public let raw: Int32

    /// Takes ownership of `raw`.
    @inlinable public init(taking raw: Int32) { self.raw = raw }

    /// Gives up ownership without closing and returns the raw descriptor.
    public consuming func release() -> Int32 {
        let r = raw
        discard self
        return r
    }

    /// Closes now and returns the close(2) result (0, or the errno as a failure).
    public consuming func close() -> SyscallResult<Void> {
        let r = raw
        discard self
        // Linux frees the descriptor even when close fails with EINTR: never retry.
        return Glibc.close(r) == 0 ? .success(()) : .failure(errno)
    }

    deinit { _ = Glibc.close(raw) }
}

/// Runs `body` until it does not fail with EINTR; maps -1 to errno, EAGAIN to `.wouldBlock`.
@inlinable @inline(__always) public func retryingEINTR<T: BinaryInteger>(_ body: () -> T) -> SyscallResult<T> {
    while true {
        let r = body()
        if r >= 0 { return .success(r) }
        let e = errno
        if e == EINTR { continue }
        if e == EAGAIN || e == EWOULDBLOCK { return .wouldBlock }
        return .failure(e)
    }
}

/// Runs a syscall returning 0 or -1 (retrying EINTR) and drops the 0.
@inlinable @inline(__always) public func retryingEINTRVoid(_ body: () -> Int32) -> SyscallResult<Void> {
    switch retryingEINTR(body) {
    case .success: return .success(())
    case .wouldBlock: return .wouldBlock
    case .failure(let e): return .failure(e)
    }
}

/// Runs a syscall returning a new descriptor or -1 (retrying EINTR) and wraps it as an owner.
@inlinable @inline(__always) public func retryingEINTRDescriptor(_ body: () -> Int32) -> SyscallResult<FileDescriptor> {
    switch retryingEINTR(body) {
    case .success(let fd): return .success(FileDescriptor(taking: fd))
    case .wouldBlock: return .wouldBlock
    case .failure(let e): return .failure(e)
    }
}
