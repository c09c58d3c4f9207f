// A spare descriptor for refusing connections while the process has no descriptor left.
//
// Theory of operation: a listening socket stays readable while connections wait in its backlog.
// With level-triggered epoll, an accept(2) failing with EMFILE or ENFILE (no descriptor left for
// the new socket) would wake the loop again at once, over and over at full CPU, until something
// frees a descriptor, while the waiting peers hang. So the daemon holds one descriptor in reserve
// from start-up (`take`): on EMFILE or ENFILE, `refuseOne` closes it, accepts the first waiting
// connection into the freed slot, closes that at once with a reset (SO_LINGER 0: the peer sees
// ECONNRESET instead of hanging, and no TIME_WAIT is left), and takes the reserve again. One
// connection is refused per wake-up, so a backlog drains at the loop's pace and the loop sleeps
// again once it is empty. Single-threaded use only (the daemon's loop).
import CPasstShim
#if canImport(Glibc)
import Glibc
#endif

/// The one spare descriptor of the process.
public enum DescriptorReserve {
    /// The spare (an unbound UNIX datagram socket), -1 while not held.
    nonisolated(unsafe) private static var spare: Int32 = -1

    /// Takes the spare descriptor if it is not held (start-up, and after each refusal).
    public static func take() {
        guard spare < 0 else { return }
        if case .success(let socket) = Sys.socket(domain: AF_UNIX, type: SocketType.datagram) {
            spare = socket.release()
        }
    }

    /// Whether `error` (an errno) means the process or the system is out of descriptors.
    public static func isExhaustion(_ error: Int32) -> Bool {
        error == EMFILE || error == ENFILE
    }

    /// Frees the spare, accepts one waiting connection on `listener` and resets it, then takes
    /// the spare again; returns whether a connection was refused.
    @discardableResult
    public static func refuseOne(from listener: Int32) -> Bool {
        guard spare >= 0 else { return false }
        close(spare)
        spare = -1
        defer { take() }
        guard case .success(let socket) = Sys.accept(listener) else { return false }
        let fd = socket.release()
        _ = Sys.setOption(fd, level: SOL_SOCKET, name: SO_LINGER, linger(l_onoff: 1, l_linger: 0))
        close(fd)
        return true
    }
}
