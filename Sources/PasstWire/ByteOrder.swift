// Unaligned network-byte-order loads and stores on raw pointers.
//
// Theory of operation: every packet view in PasstWire is a small struct holding a base pointer and a
// length. Its failable initialiser checks, once, that every fixed field it exposes lies inside the
// buffer; after that the accessors below read without further bounds checks. They are unaligned
// because Ethernet payloads start at offset 14, so IPv4/TCP fields are rarely naturally aligned.

extension UnsafeRawPointer {
    /// Reads the byte at `offset`.
    @inline(__always) public func u8(_ offset: Int) -> UInt8 {
        load(fromByteOffset: offset, as: UInt8.self)
    }

    /// Reads a big-endian 16-bit value at `offset` (no alignment needed).
    @inline(__always) public func be16(_ offset: Int) -> UInt16 {
        UInt16(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    /// Reads a big-endian 32-bit value at `offset` (no alignment needed).
    @inline(__always) public func be32(_ offset: Int) -> UInt32 {
        UInt32(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }
}

extension UnsafeMutableRawPointer {
    /// Writes one byte at `offset`.
    @inline(__always) public func setU8(_ offset: Int, _ value: UInt8) {
        storeBytes(of: value, toByteOffset: offset, as: UInt8.self)
    }

    /// Writes `value` big-endian at `offset` (no alignment needed).
    @inline(__always) public func setBE16(_ offset: Int, _ value: UInt16) {
        storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt16.self)
    }

    /// Writes `value` big-endian at `offset` (no alignment needed).
    @inline(__always) public func setBE32(_ offset: Int, _ value: UInt32) {
        storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt32.self)
    }
}
