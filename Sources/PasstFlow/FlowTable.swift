// The flow table: which flow a packet or datagram belongs to (spec §5.2).
//
// Theory of operation: every flow has two sides, the one facing its initiator and the one facing
// its target, and each side is described by a `FlowKey`: the protocol, the interface it lives on
// (pif: tap, host sockets, splice) and the two addresses and ports as seen on that interface
// (IPv4 as v4-mapped IPv6). Each side's key maps to a 32-bit reference chosen by the protocol
// module (typically its flow slot and the side). TCP, UDP and ICMP share one table, the protocol
// being part of the key.
//
// The table is an open-addressing hash with linear probing, sized once at start: room for
// `capacity` keys in at least capacity / 0.7 buckets, so probe sequences stay short at full
// load. The bucket of a key is SipHash-2-4 of the key under a random 128-bit secret
// (getrandom(2) at start), so a guest or a remote peer cannot aim collisions at us. Each
// bucket stores the key, its reference (+1; 0 marks an empty bucket) and its home bucket. Removal
// uses backward-shift deletion: the following entries of the probe run that may move are moved
// back into the hole, so lookups never need tombstones and the table never degrades. The buckets
// come from calloc(3), so untouched parts of a large table cost no memory; nothing on the packet
// path allocates. A full table makes `insert` fail: the caller drops the new flow, existing
// flows are untouched.
#if canImport(Glibc)
import Glibc
#endif
import PasstWire

/// The interface a flow side lives on (upstream's pif).
public enum FlowInterface: UInt8, Sendable {
    /// Nowhere (unused).
    case none = 0
    /// The guest's tap link.
    case tap = 1
    /// Sockets in the host's (init) namespace.
    case host = 2
    /// Sockets in the namespace (pasta loopback splice).
    case splice = 3
}

/// One side of a flow as the table looks it up.
public struct FlowKey: Equatable, Sendable {
    /// IP protocol number (IPProtocol.tcp, .udp, .icmp, .icmpv6).
    public var proto: UInt8
    /// The interface this side lives on.
    public var interface: FlowInterface
    /// Our port on this side (or the echo id).
    public var ourPort: UInt16
    /// The endpoint's port on this side.
    public var endpointPort: UInt16
    /// Our address on this side (IPv4 as v4-mapped).
    public var ourAddress: IPv6Address
    /// The endpoint's address on this side (IPv4 as v4-mapped).
    public var endpointAddress: IPv6Address

    /// A key from its fields.
    @inlinable public init(proto: UInt8, interface: FlowInterface, ourAddress: IPv6Address, ourPort: UInt16,
                           endpointAddress: IPv6Address, endpointPort: UInt16) {
        self.proto = proto
        self.interface = interface
        self.ourAddress = ourAddress
        self.ourPort = ourPort
        self.endpointAddress = endpointAddress
        self.endpointPort = endpointPort
    }

    /// SipHash-2-4 of the key under `secret`.
    @inlinable @inline(__always) public func hash(secret: SipHashKey) -> UInt64 {
        let ports = UInt64(proto) | UInt64(interface.rawValue) << 8 | UInt64(ourPort) << 16
            | UInt64(endpointPort) << 32
        return SipHash24.hash(key: secret, ourAddress.high, ourAddress.low, endpointAddress.high,
                              endpointAddress.low, ports)
    }
}

/// The hash index from flow sides to protocol references, fixed in size.
public struct FlowTable: ~Copyable {
    /// Upstream's FLOW_MAX: 2^17 - 1 flows.
    public static let upstreamCapacity = 131_071

    /// One bucket: a key, its reference + 1 (0: empty) and the bucket its hash points at.
    @usableFromInline struct Bucket {
        @usableFromInline var key: FlowKey
        @usableFromInline var storedReference: UInt32
        @usableFromInline var home: UInt32
    }

    @usableFromInline let buckets: UnsafeMutablePointer<Bucket>
    /// Number of buckets (at least capacity / 0.7, and more than capacity).
    public let bucketCount: Int
    /// Most keys the table takes.
    public let capacity: Int
    /// Keys in the table.
    public private(set) var count = 0
    /// The hash secret.
    public let secret: SipHashKey

    /// A table for `capacity` keys, hashed with `secret` (random by default).
    public init(capacity: Int, secret: SipHashKey = .random()) {
        precondition(capacity > 0 && capacity < Int(UInt32.max / 2))
        self.capacity = capacity
        bucketCount = capacity * 10 / 7 + 1
        self.secret = secret
        let raw = calloc(bucketCount, MemoryLayout<Bucket>.stride)
        precondition(raw != nil, "Can't allocate the flow table")
        buckets = raw!.bindMemory(to: Bucket.self, capacity: bucketCount)
    }

    deinit {
        free(buckets)
    }

    /// The bucket `key` hashes to.
    @inlinable @inline(__always) func homeBucket(_ key: FlowKey) -> Int {
        Int(truncatingIfNeeded: key.hash(secret: secret) % UInt64(bucketCount))
    }

    /// The bucket holding `key`, nil if absent.
    @inlinable @inline(__always) func find(_ key: FlowKey) -> Int? {
        var index = homeBucket(key)
        while buckets[index].storedReference != 0 {
            if buckets[index].key == key { return index }
            index = index &+ 1 == bucketCount ? 0 : index &+ 1
        }
        return nil
    }

    /// The reference stored for `key`, nil if absent.
    @inlinable public func lookup(_ key: FlowKey) -> UInt32? {
        guard let index = find(key) else { return nil }
        return buckets[index].storedReference &- 1
    }

    /// Adds `key` with `reference`; false if the table is full or the key is already present.
    @discardableResult
    public mutating func insert(_ key: FlowKey, reference: UInt32) -> Bool {
        guard count < capacity, reference != UInt32.max else { return false }
        let home = homeBucket(key)
        var index = home
        while buckets[index].storedReference != 0 {
            if buckets[index].key == key { return false }
            index = index &+ 1 == bucketCount ? 0 : index &+ 1
        }
        buckets[index] = Bucket(key: key, storedReference: reference &+ 1, home: UInt32(home))
        count += 1
        return true
    }

    /// Removes `key`; returns whether it was present.
    @discardableResult
    public mutating func remove(_ key: FlowKey) -> Bool {
        guard var hole = find(key) else { return false }
        var next = hole
        while true {
            next = next &+ 1 == bucketCount ? 0 : next &+ 1
            if buckets[next].storedReference == 0 { break }
            let home = Int(buckets[next].home)
            // The entry at `next` may move back into `hole` only if its home is not in (hole, next].
            let stays = hole <= next ? (home > hole && home <= next) : (home > hole || home <= next)
            if !stays {
                buckets[hole] = buckets[next]
                hole = next
            }
        }
        buckets[hole].storedReference = 0
        count -= 1
        return true
    }
}
