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
// load. A key's hash is SipHash-2-4 under a random 128-bit secret (getrandom(2) at start), so a
// guest or a remote peer cannot aim collisions at us. A bucket is 8 bytes: the upper 32 bits of
// its key's hash (the tag; the home bucket is the tag modulo the bucket count) and the index of
// the entry holding the key and its reference. Probing compares tags and reads an entry only on
// a tag match; entries are handed out from a stack of free ones, so the live ones stay packed at
// the front of their array. The table of upstream's size is 1.5 MB of buckets: each new flow
// lands in a random bucket, and a table of 48-byte buckets (9 MB) had cost a page fault for
// most of the first 2,000 connections (8 % of the connection rate of a fresh pasta). Removal
// uses backward-shift deletion: the following buckets of the probe run that may move are moved
// back into the hole (a bucket's home follows from its tag), so lookups never need tombstones
// and the table never degrades. Buckets and entries come from calloc(3), so untouched parts
// cost no memory; nothing on the packet path allocates. A full table makes `insert` fail: the
// caller drops the new flow, existing flows are untouched.
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

    /// A key and the reference stored for it.
    @usableFromInline struct Entry {
        @usableFromInline var key: FlowKey
        @usableFromInline var reference: UInt32
    }

    /// Tag << 32 | (entry index + 1); 0 is an empty bucket.
    @usableFromInline let buckets: UnsafeMutablePointer<UInt64>
    /// Room for `capacity` entries, indexed by the buckets.
    @usableFromInline let entries: UnsafeMutablePointer<Entry>
    /// Indices of the entries given back, the last one to be reused first.
    let freeEntries: UnsafeMutablePointer<UInt32>
    var freeEntryCount = 0
    /// Entries below this index have been handed out at least once.
    var entriesUsed = 0
    /// Number of buckets (at least capacity / 0.7, and more than capacity).
    public let bucketCount: Int
    /// Most keys the table takes.
    public let capacity: Int
    /// Keys in the table: the entries handed out and not given back.
    public var count: Int { entriesUsed - freeEntryCount }
    /// The hash secret.
    public let secret: SipHashKey

    /// A table for `capacity` keys, hashed with `secret` (random by default).
    public init(capacity: Int, secret: SipHashKey = .random()) {
        precondition(capacity > 0 && capacity < Int(UInt32.max / 2))
        self.capacity = capacity
        bucketCount = capacity * 10 / 7 + 1
        self.secret = secret
        let rawBuckets = calloc(bucketCount, MemoryLayout<UInt64>.stride)
        let rawEntries = calloc(capacity, MemoryLayout<Entry>.stride)
        let rawFree = malloc(capacity * MemoryLayout<UInt32>.stride)
        precondition(rawBuckets != nil && rawEntries != nil && rawFree != nil, "Can't allocate the flow table")
        buckets = rawBuckets!.bindMemory(to: UInt64.self, capacity: bucketCount)
        entries = rawEntries!.bindMemory(to: Entry.self, capacity: capacity)
        freeEntries = rawFree!.bindMemory(to: UInt32.self, capacity: capacity)
    }

    deinit {
        free(buckets)
        free(entries)
        free(freeEntries)
    }

    /// The tag of `key`: the upper half of its hash.
    @inlinable @inline(__always) func tag(_ key: FlowKey) -> UInt32 {
        UInt32(truncatingIfNeeded: key.hash(secret: secret) >> 32)
    }

    /// The bucket a key with `tag` hashes to.
    @inlinable @inline(__always) func homeBucket(tag: UInt32) -> Int {
        Int(tag) % bucketCount
    }

    /// The bucket after `index`, wrapping around.
    @inlinable @inline(__always) func nextBucket(_ index: Int) -> Int {
        index &+ 1 == bucketCount ? 0 : index &+ 1
    }

    /// The bucket holding `key` (with tag `tag`), or the empty bucket ending its probe run.
    @inlinable @inline(__always) func probe(_ key: FlowKey, tag: UInt32) -> (index: Int, found: Bool) {
        var index = homeBucket(tag: tag)
        while true {
            let bucket = buckets[index]
            if bucket == 0 { return (index, false) }
            if UInt32(truncatingIfNeeded: bucket >> 32) == tag
                && entries[Int(truncatingIfNeeded: bucket & 0xffff_ffff) &- 1].key == key {
                return (index, true)
            }
            index = nextBucket(index)
        }
    }

    /// The reference stored for `key`, nil if absent.
    @inlinable public func lookup(_ key: FlowKey) -> UInt32? {
        let (index, found) = probe(key, tag: tag(key))
        guard found else { return nil }
        return entries[Int(truncatingIfNeeded: buckets[index] & 0xffff_ffff) &- 1].reference
    }

    /// Adds `key` with `reference`; false if the table is full or the key is already present.
    @discardableResult
    public mutating func insert(_ key: FlowKey, reference: UInt32) -> Bool {
        guard count < capacity else { return false }
        let keyTag = tag(key)
        let (index, found) = probe(key, tag: keyTag)
        guard !found else { return false }
        let entry: Int
        if freeEntryCount > 0 {
            freeEntryCount -= 1
            entry = Int(freeEntries[freeEntryCount])
        } else {
            entry = entriesUsed
            entriesUsed += 1
        }
        entries[entry] = Entry(key: key, reference: reference)
        buckets[index] = UInt64(keyTag) << 32 | UInt64(entry + 1)
        return true
    }

    /// Removes `key`; returns whether it was present.
    @discardableResult
    public mutating func remove(_ key: FlowKey) -> Bool {
        var (hole, found) = probe(key, tag: tag(key))
        guard found else { return false }
        freeEntries[freeEntryCount] = UInt32(truncatingIfNeeded: buckets[hole] & 0xffff_ffff) - 1
        freeEntryCount += 1
        var next = hole
        while true {
            next = nextBucket(next)
            let bucket = buckets[next]
            if bucket == 0 { break }
            let home = homeBucket(tag: UInt32(truncatingIfNeeded: bucket >> 32))
            // The bucket at `next` may move back into `hole` only if its home is not in (hole, next].
            let stays = hole <= next ? (home > hole && home <= next) : (home > hole || home <= next)
            if !stays {
                buckets[hole] = bucket
                hole = next
            }
        }
        buckets[hole] = 0
        return true
    }
}
