// Classic libpcap capture file format (as written by passt's -p/--pcap), builders and views.
//
// Theory of operation: a capture file is one 24-byte file header followed, per frame, by a 16-byte
// record header and the frame bytes. Every field is in the writer's host byte order; readers detect
// the order by the magic number (0xa1b2c3d4 read as-is means same order, microsecond timestamps).
// passt writes version 2.4, thiszone 0, sigfigs 0, snaplen 65535, link type 1 (Ethernet) and
// records with caplen = len = frame length and CLOCK_REALTIME seconds/microseconds. These builders
// only fill caller buffers; opening and writing the file (and dropping records on error) belongs to
// the daemon, so nothing here performs a system call.
//
//    File header (24 bytes)                         Record header (16 bytes)
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+     +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |        magic 0xa1b2c3d4 (32)          |     |      timestamp seconds (32)           |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+     +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    | version major 2   | version minor 4   |     |    timestamp microseconds (32)        |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+     +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |           thiszone 0 (32)             |     |    captured length (32)               |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+     +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |           sigfigs 0 (32)              |     |    original length (32)               |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+     +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |          snaplen 65535 (32)           |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+     (all fields in host byte order)
//    |          link type 1 (32)             |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

/// Builders for the classic pcap file format (host byte order).
public enum Pcap {
    /// Length of the file header.
    public static let fileHeaderLength = 24
    /// Length of a record header.
    public static let recordHeaderLength = 16
    /// The magic number for microsecond timestamps, in host order.
    public static let magic: UInt32 = 0xa1b2_c3d4
    /// Snapshot length passt declares.
    public static let defaultSnapLength: UInt32 = 65535
    /// Link type Ethernet (LINKTYPE_ETHERNET).
    public static let linkTypeEthernet: UInt32 = 1

    /// Writes the 24-byte file header at `p`; returns 24.
    @inlinable @inline(__always) @discardableResult
    public static func writeFileHeader(to p: UnsafeMutableRawPointer, snapLength: UInt32 = defaultSnapLength,
                                       linkType: UInt32 = linkTypeEthernet) -> Int {
        p.storeBytes(of: magic, toByteOffset: 0, as: UInt32.self)
        p.storeBytes(of: UInt16(2), toByteOffset: 4, as: UInt16.self)
        p.storeBytes(of: UInt16(4), toByteOffset: 6, as: UInt16.self)
        p.storeBytes(of: Int32(0), toByteOffset: 8, as: Int32.self)
        p.storeBytes(of: UInt32(0), toByteOffset: 12, as: UInt32.self)
        p.storeBytes(of: snapLength, toByteOffset: 16, as: UInt32.self)
        p.storeBytes(of: linkType, toByteOffset: 20, as: UInt32.self)
        return fileHeaderLength
    }

    /// Writes a 16-byte record header at `p` for a frame of `length` bytes, all captured; returns 16.
    @inlinable @inline(__always) @discardableResult
    public static func writeRecordHeader(to p: UnsafeMutableRawPointer, seconds: UInt32, microseconds: UInt32,
                                         length: Int) -> Int {
        writeRecordHeader(to: p, seconds: seconds, microseconds: microseconds,
                          capturedLength: UInt32(truncatingIfNeeded: length), originalLength: UInt32(truncatingIfNeeded: length))
    }

    /// Writes a 16-byte record header at `p` with explicit captured and original lengths; returns 16.
    @inlinable @inline(__always) @discardableResult
    public static func writeRecordHeader(to p: UnsafeMutableRawPointer, seconds: UInt32, microseconds: UInt32,
                                         capturedLength: UInt32, originalLength: UInt32) -> Int {
        p.storeBytes(of: seconds, toByteOffset: 0, as: UInt32.self)
        p.storeBytes(of: microseconds, toByteOffset: 4, as: UInt32.self)
        p.storeBytes(of: capturedLength, toByteOffset: 8, as: UInt32.self)
        p.storeBytes(of: originalLength, toByteOffset: 12, as: UInt32.self)
        return recordHeaderLength
    }
}

/// View of a pcap file header written in host byte order (tests and tools).
public struct PcapFileHeader: WireView {
    /// Start of the header.
    public let base: UnsafeRawPointer
    /// Length of the buffer (at least 24).
    public let count: Int

    /// Validates length and the host-order magic 0xa1b2c3d4; nil otherwise.
    @inlinable @inline(__always) public init?(_ base: UnsafeRawPointer, count: Int) {
        guard count >= Pcap.fileHeaderLength,
              base.loadUnaligned(fromByteOffset: 0, as: UInt32.self) == Pcap.magic else { return nil }
        self.base = base
        self.count = count
    }

    /// Major version (2).
    @inlinable @inline(__always) public var versionMajor: UInt16 { base.loadUnaligned(fromByteOffset: 4, as: UInt16.self) }
    /// Minor version (4).
    @inlinable @inline(__always) public var versionMinor: UInt16 { base.loadUnaligned(fromByteOffset: 6, as: UInt16.self) }
    /// GMT to local time correction (0).
    @inlinable @inline(__always) public var thisZone: Int32 { base.loadUnaligned(fromByteOffset: 8, as: Int32.self) }
    /// Timestamp accuracy (0).
    @inlinable @inline(__always) public var sigFigs: UInt32 { base.loadUnaligned(fromByteOffset: 12, as: UInt32.self) }
    /// Snapshot length.
    @inlinable @inline(__always) public var snapLength: UInt32 { base.loadUnaligned(fromByteOffset: 16, as: UInt32.self) }
    /// Link-layer type (1 Ethernet).
    @inlinable @inline(__always) public var linkType: UInt32 { base.loadUnaligned(fromByteOffset: 20, as: UInt32.self) }
}

/// View of a pcap record header written in host byte order, followed by the captured bytes.
public struct PcapRecordHeader: WireView {
    /// Start of the record header.
    public let base: UnsafeRawPointer
    /// Length of the buffer (at least 16 + captured length).
    public let count: Int

    /// Validates that the 16-byte header and the captured bytes fit in `count`; nil otherwise.
    @inlinable @inline(__always) public init?(_ base: UnsafeRawPointer, count: Int) {
        guard count >= Pcap.recordHeaderLength else { return nil }
        let captured = base.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
        guard UInt64(captured) <= UInt64(count &- Pcap.recordHeaderLength) else { return nil }
        self.base = base
        self.count = count
    }

    /// Timestamp, seconds.
    @inlinable @inline(__always) public var seconds: UInt32 { base.loadUnaligned(fromByteOffset: 0, as: UInt32.self) }
    /// Timestamp, microseconds.
    @inlinable @inline(__always) public var microseconds: UInt32 { base.loadUnaligned(fromByteOffset: 4, as: UInt32.self) }
    /// Number of bytes captured (following the header).
    @inlinable @inline(__always) public var capturedLength: UInt32 { base.loadUnaligned(fromByteOffset: 8, as: UInt32.self) }
    /// Original length of the frame on the wire.
    @inlinable @inline(__always) public var originalLength: UInt32 { base.loadUnaligned(fromByteOffset: 12, as: UInt32.self) }
    /// Start of the captured bytes.
    @inlinable @inline(__always) public var data: UnsafeRawPointer { base + Pcap.recordHeaderLength }
}
