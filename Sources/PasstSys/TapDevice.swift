// The tap device: pasta's side of the target namespace's Ethernet link.
//
// Theory of operation (spec §1.3, "Tap device"): opening /dev/net/tun gives a file that becomes a
// network interface by TUNSETIFF. With IFF_TAP it carries Ethernet frames; with IFF_NO_PI there is
// no packet-information prefix. One read() returns exactly one frame as the kernel transmitted it
// on the interface (whatever the guest namespace sends); one write() injects exactly one frame as
// if the interface had received it. No length prefix, no batching inside one call. The fd is
// non-blocking: an empty queue reads as `wouldBlock`. The interface exists while the fd is open
// (it is not persistent) and disappears when `TapDevice` goes away.
//
// The interface is created in the network namespace of the thread that opens /dev/net/tun, so
// open it inside the target (`TapDevice.open(name:in:)`, or in `TargetNetworkNamespace.run`).
// Reads and writes then work from any namespace. The MAC address ioctls are answered by the tun
// driver on the fd itself, so they too work from anywhere. Addresses, routes and link state are
// netlink's business (Netlink.swift).
//
// With offloads (pasta's tap, `open(name:offloads: true)`), the interface is made with
// IFF_VNET_HDR, a 10-byte virtio-net header (PasstWire's VirtioNet.swift) goes in front of every
// frame both ways, and TUNSETOFFLOAD promises the kernel that we take TCP segments of up to
// 64 KiB (TSO4, TSO6) with partial checksums (CSUM): the namespace's stack then neither cuts its
// TCP data to the MTU nor checksums it, and takes ours the same way. A read then returns the
// header and the frame; `write(header:frame:)` gathers both into one writev(2). If the kernel
// refuses the header or the offloads, the device is opened again without them
// (`virtioHeaderLength` 0) and frames are plain, as above.
//
// Error policy belongs to the caller (spec): read EOF, or HUP/ERR on the fd, means the device is
// gone (die); write failures EAGAIN, EINTR, ENOBUFS, ENOSPC, EIO drop the frame.
#if canImport(Glibc)
import Glibc
#endif
import CPasstShim

/// An open tap interface (IFF_TAP|IFF_NO_PI, non-blocking, IFF_VNET_HDR with offloads): one
/// Ethernet frame, after its virtio-net header if any, per read or write.
public struct TapDevice: ~Copyable, Sendable {
    /// The longest interface name the kernel accepts (IFNAMSIZ - 1).
    public static let maximumNameLength = Int(SHIM_IFNAMSIZ) - 1

    /// The /dev/net/tun descriptor bound to the interface.
    public let descriptor: FileDescriptor
    /// The interface name the kernel used.
    public let name: String
    /// Bytes of the virtio-net header in front of every frame: 10 with offloads, else 0.
    public let virtioHeaderLength: Int

    /// The virtio-net header length used with offloads (struct virtio_net_hdr).
    public static let offloadHeaderLength = 10

    /// Wraps a bound tun descriptor, its interface name and its virtio-net header length.
    public init(descriptor: consuming FileDescriptor, name: String, virtioHeaderLength: Int = 0) {
        self.descriptor = descriptor
        self.name = name
        self.virtioHeaderLength = virtioHeaderLength
    }

    /// Creates (or attaches to) tap interface `name` in the calling thread's network namespace;
    /// an empty name lets the kernel choose ("tap0", "tap1", ...). With `offloads`, asks for the
    /// virtio-net header, checksum and TCP segmentation offloads, and falls back to a plain tap
    /// if the kernel refuses them. EINVAL if the name is too long.
    public static func open(name: String, offloads: Bool = false) -> SyscallResult<TapDevice> {
        guard name.utf8.count <= maximumNameLength else { return .failure(EINVAL) }
        if offloads, case .success(let device) = open(name: name, virtioHeaderLength: offloadHeaderLength) {
            return .success(device)
        }
        return open(name: name, virtioHeaderLength: 0)
    }

    /// Opens /dev/net/tun and binds it to tap `name`, with a virtio-net header of
    /// `virtioHeaderLength` bytes and the offloads unless it is 0.
    static func open(name: String, virtioHeaderLength: Int) -> SyscallResult<TapDevice> {
        let fd: FileDescriptor
        switch retryingEINTRDescriptor({ Glibc.open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC) }) {
        case .success(let opened): fd = opened
        case .wouldBlock: return .wouldBlock
        case .failure(let e): return .failure(e)
        }
        var kernelName = [CChar](repeating: 0, count: Int(SHIM_IFNAMSIZ))
        let raw = fd.raw
        let withHeader: Int32 = virtioHeaderLength > 0 ? 1 : 0
        var result = kernelName.withUnsafeMutableBufferPointer { out in
            retryingEINTRVoid { shim_tap_set_interface(raw, name, withHeader, out.baseAddress!) }
        }
        if case .success = result, virtioHeaderLength > 0 {
            result = retryingEINTRVoid { shim_tap_set_offloads(raw, Int32(virtioHeaderLength)) }
        }
        switch result {
        case .success:
            let used = String(decoding: kernelName.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            return .success(TapDevice(descriptor: fd, name: used, virtioHeaderLength: virtioHeaderLength))
        case .wouldBlock: return .wouldBlock
        case .failure(let e): return .failure(e)
        }
    }

    /// Creates tap interface `name` inside `namespace` (the calling thread returns home after),
    /// with offloads if `offloads` and the kernel agrees.
    public static func open(name: String, offloads: Bool = false,
                            in namespace: borrowing TargetNetworkNamespace) -> SyscallResult<TapDevice> {
        do {
            return try namespace.run { () throws(SyscallError) -> SyscallResult<TapDevice> in
                open(name: name, offloads: offloads)
            }
        } catch {
            return .failure(error.code)
        }
    }

    /// Reads one frame, after its virtio-net header if any, into `buffer`: the length of both,
    /// `wouldBlock` if none is queued, 0 at EOF (device gone). A longer frame is truncated.
    @inlinable public func read(into buffer: UnsafeMutableRawBufferPointer) -> SyscallResult<Int> {
        let raw = descriptor.raw
        return retryingEINTR { Glibc.read(raw, buffer.baseAddress, buffer.count) }
    }

    /// Writes one frame: the bytes written (the whole frame), `wouldBlock`, or the errno.
    @inlinable public func write(_ frame: UnsafeRawBufferPointer) -> SyscallResult<Int> {
        let raw = descriptor.raw
        return retryingEINTR { Glibc.write(raw, frame.baseAddress, frame.count) }
    }

    /// Writes one frame after its virtio-net `header` (`virtioHeaderLength` bytes) with one
    /// writev(2): the bytes written (both), `wouldBlock`, or the errno.
    @inlinable public func write(header: UnsafeRawBufferPointer, frame: UnsafeRawBufferPointer) -> SyscallResult<Int> {
        let raw = descriptor.raw
        var vectors = (iovec(iov_base: UnsafeMutableRawPointer(mutating: header.baseAddress), iov_len: header.count),
                       iovec(iov_base: UnsafeMutableRawPointer(mutating: frame.baseAddress), iov_len: frame.count))
        return withUnsafePointer(to: &vectors) { pair in
            pair.withMemoryRebound(to: iovec.self, capacity: 2) { iov in
                retryingEINTR { Glibc.writev(raw, iov, 2) }
            }
        }
    }

    /// Writes one frame gathered from `count` `vectors` (the virtio-net header first, with
    /// offloads) with one writev(2): the bytes written, `wouldBlock`, or the errno.
    @inlinable public func write(vectors: UnsafePointer<iovec>, count: Int) -> SyscallResult<Int> {
        let raw = descriptor.raw
        return retryingEINTR { Glibc.writev(raw, vectors, Int32(count)) }
    }

    /// The interface's MAC address (6 bytes; random unless set).
    public func hardwareAddress() -> SyscallResult<[UInt8]> {
        var mac = [UInt8](repeating: 0, count: 6)
        let raw = descriptor.raw
        let result = mac.withUnsafeMutableBufferPointer { out in
            retryingEINTRVoid { shim_tap_get_mac(raw, out.baseAddress!) }
        }
        switch result {
        case .success: return .success(mac)
        case .wouldBlock: return .wouldBlock
        case .failure(let e): return .failure(e)
        }
    }

    /// Sets the interface's MAC address (`mac` must have 6 bytes; EINVAL otherwise).
    public func setHardwareAddress(_ mac: [UInt8]) -> SyscallResult<Void> {
        guard mac.count == 6 else { return .failure(EINVAL) }
        let raw = descriptor.raw
        return mac.withUnsafeBufferPointer { bytes in
            retryingEINTRVoid { shim_tap_set_mac(raw, bytes.baseAddress!) }
        }
    }
}
