// Packet capture of the tap link (-p/--pcap FILE, spec §11).
//
// Theory of operation: the capture file is opened at start-up, before the process isolates
// itself (after pivot_root there is no file system to open it in): created or truncated, mode
// 0600, and the 24-byte libpcap file header written at once. An open failure is only logged and
// capture stays off, as upstream. Every frame read from the tap (before any processing, dropped
// ones included) and every frame written to it is then appended as a 16-byte record header and
// the frame bytes, in one writev(2) so a record is never split between two writes. Timestamps
// are CLOCK_REALTIME seconds and microseconds (rounded to the nearest). A failed record write is
// dropped silently: capture must never stop the data path. The record header lives in a buffer
// allocated once, so recording a frame allocates nothing.
import PasstConfig
import PasstSys
import PasstWire
#if canImport(Glibc)
import Glibc
#endif

/// The open capture file, or nothing when -p was not given or the file could not be opened.
public struct PcapWriter: ~Copyable {
    /// The capture file's descriptor (owned, closed on deinit); -1 when capture is off.
    private let fd: Int32
    /// Scratch space for one record header (allocated once).
    private let recordHeader: UnsafeMutableRawPointer

    /// Opens (creates or truncates, 0600) `path` and writes the file header; logs and captures
    /// nothing on failure or when `path` is nil.
    public init(path: String?) {
        recordHeader = UnsafeMutableRawPointer.allocate(byteCount: Pcap.recordHeaderLength, alignment: 8)
        guard let path else {
            fd = -1
            return
        }
        let opened: FileDescriptor
        switch Sys.open(path, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600) {
        case .success(let file): opened = file
        case .wouldBlock:
            Log.warning("Cannot open PCAP file \(path): \(SyscallError(EAGAIN))")
            fd = -1
            return
        case .failure(let code):
            Log.warning("Cannot open PCAP file \(path): \(SyscallError(code))")
            fd = -1
            return
        }
        var header = [UInt8](repeating: 0, count: Pcap.fileHeaderLength)
        header.withUnsafeMutableBytes { _ = Pcap.writeFileHeader(to: $0.baseAddress!) }
        let raw = opened.raw
        let written = header.withUnsafeBytes { Sys.write(raw, $0) }
        guard case .success(Pcap.fileHeaderLength) = written else {
            Log.warning("Cannot write PCAP header to \(path)")
            fd = -1
            return
        }
        Log.info("Saving packet capture to \(path)")
        fd = opened.release()
    }

    deinit {
        recordHeader.deallocate()
        if fd >= 0 { _ = FileDescriptor(taking: fd).close() }
    }

    /// Whether frames are being captured.
    public var isEnabled: Bool { fd >= 0 }

    /// Appends one record for `frame`, timestamped now; failures are ignored.
    public func record(_ frame: UnsafeRawBufferPointer) {
        let raw = fd
        guard raw >= 0 else { return }
        let now = SystemClock.realtime()
        var microseconds = (Int64(now.nanoseconds) + 500) / 1000
        var seconds = now.seconds
        if microseconds >= 1_000_000 {
            microseconds -= 1_000_000
            seconds += 1
        }
        Pcap.writeRecordHeader(to: recordHeader, seconds: UInt32(truncatingIfNeeded: seconds),
                               microseconds: UInt32(truncatingIfNeeded: microseconds), length: frame.count)
        var vectors = (iovec(iov_base: recordHeader, iov_len: Pcap.recordHeaderLength),
                       iovec(iov_base: UnsafeMutableRawPointer(mutating: frame.baseAddress), iov_len: frame.count))
        _ = withUnsafePointer(to: &vectors) { pair in
            pair.withMemoryRebound(to: iovec.self, capacity: 2) { Sys.writev(raw, $0, count: 2) }
        }
    }
}
