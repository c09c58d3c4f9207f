// Owned file descriptors and syscall results.
//
// Theory of operation: a `FileDescriptor` is a move-only owner of one kernel fd; it closes the fd
// when it goes away, so no path (error returns included) can leak one. Syscall wrappers return a
// `SyscallResult`: a value, `wouldBlock` (EAGAIN/EWOULDBLOCK, the normal case for non-blocking
// sockets, not an error) or an errno. EINTR is retried inside the wrappers.
#if canImport(Glibc)
import Glibc
#endif

/// The outcome of a non-blocking syscall: a value, "try again later", or an errno.
public enum SyscallResult<Value> {
    case success(Value)
    case wouldBlock
    case failure(Int32)
}

/// Owns one file descriptor and closes it on deinit.
public struct FileDescriptor: ~Copyable {
    /// The raw descriptor number (valid while this owner lives).
    public let raw: Int32

    /// Takes ownership of `raw`.
    public init(taking raw: Int32) { self.raw = raw }

    /// Gives up ownership without closing and returns the raw descriptor.
    public consuming func release() -> Int32 {
        let r = raw
        discard self
        return r
    }

    deinit { _ = Glibc.close(raw) }
}

/// Runs `body` until it does not fail with EINTR; maps -1 to errno, EAGAIN to `.wouldBlock`.
@inline(__always) public func retryingEINTR<T: BinaryInteger>(_ body: () -> T) -> SyscallResult<T> {
    while true {
        let r = body()
        if r >= 0 { return .success(r) }
        let e = errno
        if e == EINTR { continue }
        if e == EAGAIN || e == EWOULDBLOCK { return .wouldBlock }
        return .failure(e)
    }
}
