// The logger: stderr, syslog datagrams, or a size-limited log file (spec §10.2, upstream log.c).
//
// Theory of operation. Levels are syslog priorities (error 3, warning 4, info 6, debug 7) plus
// trace (8), which is debug output enabled separately by --trace and written like debug. The
// check in front of every call is one relaxed atomic load and a compare, inlined at the call
// site; the message is an autoclosure evaluated only when the level is enabled, so a disabled
// `Log.debug("...\(x)")` on the packet path costs a load and a branch.
//
// Where an enabled message goes follows upstream's vlogmsg():
//
//   not configured yet (options being parsed) -> stderr, plus syslog if open: everything
//   log file (-l)                               -> file; stderr too while attached
//   debug (-d), no file                         -> stderr only, prefixed "S.ssss: "
//   otherwise                                   -> syslog; stderr too while attached
//
// "Attached" (`stderrEnabled`) is cleared by the daemon once it has daemonised or pasta has
// started its child. Timestamps are CLOCK_MONOTONIC seconds since the logger was created (first
// use of `Logger.shared`: touch it at the start of main), with 4 decimals (100 µs).
//
// Syslog: one datagram per message on a connected AF_UNIX socket to /dev/log, RFC 3164 style
// without timestamp or host (the local daemon adds them): `<PRI>ident[pid]: message`, PRI =
// facility daemon (3 << 3) + level. If /dev/log is missing, messages are silently dropped.
// Upstream sends `<level> ident: message` (no facility, no pid); we send the facility the spec
// names and a pid, which journald and rsyslog both parse.
//
// Log file: created or truncated with mode 0600; first line `NAME VERSION: /path/to/exe (PID)`;
// records `SECONDS.DDDD: PREFIX message`. Before a record would take the file to --log-size or
// beyond, about 30 % is cut from the start (LOGFILE_CUT_RATIO, rounded up to a page because a
// range collapse must be block-aligned):
//   - fallocate(FALLOC_FL_COLLAPSE_RANGE) removes the first `cut` bytes in place (ext4, XFS);
//     the first remaining line is now a partial record, so the header text followed by
//     " - log truncated at S.SSSS" is written over it and padded with spaces to its newline;
//   - where collapsing is unsupported (tmpfs, most other file systems) the records after the cut
//     (from the next line start) are copied down behind the new header line and the file is
//     truncated. After the first EOPNOTSUPP we stop trying to collapse.
// The file is written with pwrite at our own size counter (no O_APPEND), so no fcntl flips
// are needed around a cut. Records are capped at 8192 bytes (BUFSIZ), as upstream.
//
// Concurrency: the daemon is single-threaded, but tests and helper threads may log, so the
// mutable state sits behind a Mutex and the level in an Atomic; `Logger` is therefore Sendable
// and `Logger.shared` a plain `static let`.
#if canImport(Glibc)
import Glibc
#endif
import CPasstShim
import PasstSys
import Synchronization

/// Message priority; raw values are syslog priorities (trace: debug enabled by --trace).
public enum LogLevel: UInt8, Comparable, Sendable {
    case error = 3
    case warning = 4
    case info = 6
    case debug = 7
    case trace = 8

    /// Orders by verbosity: error < warning < info < debug < trace.
    @inlinable public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }

    /// The record prefix in a log file.
    var filePrefix: String {
        switch self {
        case .error: return "ERROR:   "
        case .warning: return "WARNING: "
        case .info: return "info:    "
        case .debug, .trace: return "         "
        }
    }

    /// The syslog severity (trace is sent as debug).
    var syslogSeverity: Int32 { Int32(min(rawValue, LogLevel.debug.rawValue)) }
}

/// A process logger; the daemon uses `Logger.shared` through `Log`.
public final class Logger: Sendable {
    /// The process-wide logger (created on first use, which fixes the timestamp origin).
    public static let shared = Logger()

    /// Default --log-size: 1 MiB (LOGFILE_SIZE_DEFAULT).
    public static let defaultFileSize: UInt = 1024 * 1024

    /// Most verbose enabled level (raw value); read by the inlined check.
    @usableFromInline let threshold: Atomic<UInt8>
    /// Sinks, routing flags and buffers, behind a lock.
    let state: Mutex<LogState>

    /// Makes a logger writing to `stderr`; timestamps count from `startTime` (monotonic ns).
    public init(stderr: Int32 = STDERR_FILENO, startTime: UInt64 = SystemClock.monotonicNanoseconds()) {
        threshold = Atomic(LogLevel.debug.rawValue)
        state = Mutex(LogState(stderrFD: stderr, start: startTime))
    }

    /// Closes the syslog socket and the log file.
    deinit {
        state.withLock { $0.closeSinks() }
    }

    // MARK: Configuration

    /// Ends the start-up phase: from now on only messages up to `level` are emitted, and
    /// debug or trace without a log file switches stderr to timestamped lines, without syslog.
    public func configure(level: LogLevel) {
        state.withLock { s in
            s.configured = true
            s.debugMode = level >= .debug
        }
        threshold.store(level.rawValue, ordering: .relaxed)
        if self === Logger.shared { sharedLogThreshold.store(level.rawValue, ordering: .relaxed) }
    }

    /// Connects to the system logger at `path` as `ident`; does nothing if that fails.
    public func openSyslog(ident: String, path: String = "/dev/log") {
        guard case .success(let socket) = Sys.socket(domain: AF_UNIX, type: SocketType.datagram) else { return }
        guard case .success = Sys.connect(socket.raw, unixPath: path) else { return }
        let fd = socket.release()
        state.withLock { s in
            if s.syslogFD >= 0 { _ = Glibc.close(s.syslogFD) }
            s.syslogFD = fd
            s.ident = ident
        }
    }

    /// Creates or truncates log file `path` (0600) and writes the header `NAME VERSION: EXE (PID)`;
    /// `maxSize` nil or 0 means 1 MiB. Later messages go to the file instead of syslog.
    public func openFile(name: String, version: String, path: String, maxSize: UInt?) throws(SyscallError) {
        let exe = try Sys.readLink("/proc/self/exe").get()
        let file = try Sys.open(path, flags: O_CREAT | O_TRUNC | O_RDWR, mode: 0o600).get()
        let limit = Int(maxSize.flatMap { $0 == 0 ? nil : $0 } ?? Logger.defaultFileSize)
        let header = Array("\(name) \(version): \(exe) (\(getpid()))".utf8)
        let line = header + [0x0a]
        let written = line.withUnsafeBytes { Sys.write(file.raw, $0) }
        guard case .success(line.count) = written else { throw SyscallError(written.errorCode ?? EIO) }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let cut = (limit * LogState.cutPercent / 100 + page - 1) / page * page
        let fd = file.release()
        state.withLock { s in
            if s.file.fd >= 0 { _ = Glibc.close(s.file.fd) }
            s.file = LogFile(fd: fd, limit: limit, size: line.count, cut: cut, header: header)
        }
    }

    /// Sets whether messages still go to stderr (false once daemonised or pasta's child runs).
    public func setStderr(enabled: Bool) {
        state.withLock { $0.stderrEnabled = enabled }
    }

    // MARK: Logging

    /// True if messages of `level` are emitted.
    @inlinable @inline(__always) public func isEnabled(_ level: LogLevel) -> Bool {
        level.rawValue <= threshold.load(ordering: .relaxed)
    }

    /// Logs an error.
    @inlinable @inline(__always) public func error(_ message: @autoclosure () -> String) {
        if isEnabled(.error) { emit(.error, message()) }
    }

    /// Logs a warning.
    @inlinable @inline(__always) public func warning(_ message: @autoclosure () -> String) {
        if isEnabled(.warning) { emit(.warning, message()) }
    }

    /// Logs an informational message.
    @inlinable @inline(__always) public func info(_ message: @autoclosure () -> String) {
        if isEnabled(.info) { emit(.info, message()) }
    }

    /// Logs a debug message.
    @inlinable @inline(__always) public func debug(_ message: @autoclosure () -> String) {
        if isEnabled(.debug) { emit(.debug, message()) }
    }

    /// Logs a trace message (--trace only).
    @inlinable @inline(__always) public func trace(_ message: @autoclosure () -> String) {
        if isEnabled(.trace) { emit(.trace, message()) }
    }

    /// Writes `message` at `level` to the configured sinks (the slow path, after the check).
    public func emit(_ level: LogLevel, _ message: String) {
        guard isEnabled(level) else { return }
        let now = SystemClock.monotonicNanoseconds()
        state.withLock { $0.emit(level, message, now: now) }
    }
}

/// `Logger.shared`'s level, kept in a constant-initialised global so that the inlined check of
/// `Log` calls needs no lazy-initialisation test of `Logger.shared`.
@usableFromInline let sharedLogThreshold = Atomic<UInt8>(LogLevel.debug.rawValue)

/// The daemon's logging calls, forwarding to `Logger.shared` when the level is enabled.
public enum Log {
    /// True if `Logger.shared` emits messages of `level`.
    @inlinable @inline(__always) public static func isEnabled(_ level: LogLevel) -> Bool {
        level.rawValue <= sharedLogThreshold.load(ordering: .relaxed)
    }

    /// Logs an error.
    @inlinable @inline(__always) public static func error(_ message: @autoclosure () -> String) {
        if isEnabled(.error) { Logger.shared.emit(.error, message()) }
    }

    /// Logs a warning.
    @inlinable @inline(__always) public static func warning(_ message: @autoclosure () -> String) {
        if isEnabled(.warning) { Logger.shared.emit(.warning, message()) }
    }

    /// Logs an informational message.
    @inlinable @inline(__always) public static func info(_ message: @autoclosure () -> String) {
        if isEnabled(.info) { Logger.shared.emit(.info, message()) }
    }

    /// Logs a debug message.
    @inlinable @inline(__always) public static func debug(_ message: @autoclosure () -> String) {
        if isEnabled(.debug) { Logger.shared.emit(.debug, message()) }
    }

    /// Logs a trace message (--trace only).
    @inlinable @inline(__always) public static func trace(_ message: @autoclosure () -> String) {
        if isEnabled(.trace) { Logger.shared.emit(.trace, message()) }
    }

    /// Logs `message` as an error and exits with status 1 (upstream's die()).
    public static func die(_ message: String) -> Never {
        Logger.shared.emit(.error, message)
        exit(1)
    }
}

/// An open log file and its size accounting (`fd` -1: none).
struct LogFile {
    var fd: Int32 = -1
    /// --log-size: the file stays below this many bytes.
    var limit = 0
    /// Bytes in the file, i.e. the offset of the next record.
    var size = 0
    /// Bytes to cut from the start when full (page-aligned).
    var cut = 0
    /// The first line without its newline, repeated on every cut.
    var header: [UInt8] = []
    /// False after the file system refused FALLOC_FL_COLLAPSE_RANGE.
    var collapseSupported = true
}

/// Everything the logger mutates, kept behind its mutex.
struct LogState {
    /// Share of the file cut when it is full (LOGFILE_CUT_RATIO).
    static let cutPercent = 30
    /// Longest record, as upstream's BUFSIZ buffer.
    static let maxRecord = 8192

    let stderrFD: Int32
    /// Monotonic origin of timestamps.
    let start: UInt64
    /// Options parsed and levels set (upstream's log_conf_parsed).
    var configured = false
    /// Debug or trace level: timestamped stderr instead of syslog (without a file).
    var debugMode = false
    /// Still attached to a terminal: enabled messages also go to stderr.
    var stderrEnabled = true
    var syslogFD: Int32 = -1
    var ident = ""
    var file = LogFile()
    /// Reused line buffer: a message is formatted once per sink without reallocating.
    var line: [UInt8] = []
    /// Reused buffer for moving file data during a cut.
    var scratch: [UInt8] = []

    /// Makes the state for a logger writing to `stderrFD` with time origin `start`.
    init(stderrFD: Int32, start: UInt64) {
        self.stderrFD = stderrFD
        self.start = start
        line.reserveCapacity(LogState.maxRecord + 64)
    }

    /// Closes the syslog socket and the log file.
    mutating func closeSinks() {
        if syslogFD >= 0 { _ = Glibc.close(syslogFD); syslogFD = -1 }
        if file.fd >= 0 { _ = Glibc.close(file.fd); file.fd = -1 }
    }

    /// Routes one enabled message to the sinks, as upstream's vlogmsg().
    mutating func emit(_ level: LogLevel, _ message: String, now: UInt64) {
        let debugPrint = debugMode && file.fd < 0
        if file.fd >= 0 {
            writeFileRecord(level, message, now: now)
        } else if !debugMode {
            sendSyslog(level, message)
        }
        if debugPrint || !configured || stderrEnabled {
            line.removeAll(keepingCapacity: true)
            if debugPrint {
                appendTimestamp(now)
                line.append(contentsOf: ": ".utf8)
            }
            appendMessage(message)
            writeAll(stderrFD, line)
        }
    }

    /// Sends `<PRI>ident[pid]: message` to the system logger, if connected.
    mutating func sendSyslog(_ level: LogLevel, _ message: String) {
        guard syslogFD >= 0 else { return }
        line.removeAll(keepingCapacity: true)
        line.append(UInt8(ascii: "<"))
        appendDecimal(UInt64(LOG_DAEMON | level.syslogSeverity))
        line.append(UInt8(ascii: ">"))
        line.append(contentsOf: ident.utf8)
        line.append(UInt8(ascii: "["))
        appendDecimal(UInt64(getpid()))
        line.append(contentsOf: "]: ".utf8)
        appendMessage(message, newline: false)
        let length = line.count
        let sent = line.withUnsafeBytes { Sys.send(syslogFD, $0, flags: Int32(MSG_NOSIGNAL)) }
        if case .success(length) = sent { return }
        if stderrEnabled {
            line.removeAll(keepingCapacity: true)
            line.append(contentsOf: "Failed to send ".utf8)
            appendDecimal(UInt64(length))
            line.append(contentsOf: " bytes to syslog\n".utf8)
            writeAll(stderrFD, line)
        }
    }

    /// Appends `SECONDS.DDDD: PREFIX message` to the log file, cutting the file first if full.
    mutating func writeFileRecord(_ level: LogLevel, _ message: String, now: UInt64) {
        line.removeAll(keepingCapacity: true)
        appendTimestamp(now)
        line.append(contentsOf: ": ".utf8)
        line.append(contentsOf: level.filePrefix.utf8)
        appendMessage(message)
        if file.size + line.count >= file.limit {
            cutFile(now: now)
        }
        let written = line.withUnsafeBytes { Sys.pwrite(file.fd, $0, offset: file.size) }
        if case .success(let n) = written { file.size += n }
    }

    /// Removes about `file.cut` bytes from the start of the log file and marks the header.
    mutating func cutFile(now: UInt64) {
        let record = line
        defer { line = record }
        if scratch.isEmpty { scratch = [UInt8](repeating: 0, count: LogState.maxRecord * 2) }
        if file.collapseSupported && file.cut < file.size {
            switch Sys.fallocate(file.fd, mode: FALLOC_FL_COLLAPSE_RANGE, offset: 0, length: file.cut) {
            case .success:
                file.size -= file.cut
                markCollapsedHeader(now: now)
                return
            case .failure(EOPNOTSUPP):
                file.collapseSupported = false
            default:
                break
            }
        }
        moveRecordsDown(now: now)
    }

    /// After a collapse: writes "<header> - log truncated at T" over the partial first line,
    /// padded with spaces up to that line's newline.
    mutating func markCollapsedHeader(now: UInt64) {
        truncatedHeaderLine(now: now)
        let text = line.count
        let got = scratch.withUnsafeMutableBytes { Sys.pread(file.fd, into: $0, offset: 0) }
        guard case .success(let n) = got else { return }
        if text <= n, let newline = scratch[text..<n].firstIndex(of: 0x0a) {
            line.append(contentsOf: repeatElement(UInt8(ascii: " "), count: newline - text))
            _ = line.withUnsafeBytes { Sys.pwrite(file.fd, $0, offset: 0) }
        } else {
            // No line end within reach: keep only the header line.
            line.append(0x0a)
            _ = line.withUnsafeBytes { Sys.pwrite(file.fd, $0, offset: 0) }
            _ = Sys.truncate(file.fd, length: line.count)
            file.size = line.count
        }
    }

    /// Without collapse: copies the records after the cut point (from the next line start)
    /// down behind a new header line, then truncates the file.
    mutating func moveRecordsDown(now: UInt64) {
        truncatedHeaderLine(now: now)
        line.append(0x0a)
        var source = min(max(file.cut, line.count), file.size)
        let probe = scratch.withUnsafeMutableBytes { Sys.pread(file.fd, into: $0, offset: source) }
        if case .success(let n) = probe, n > 0 {
            source += (scratch[..<n].firstIndex(of: 0x0a).map { $0 + 1 }) ?? n
        }
        var target = line.count
        while source < file.size {
            let got = scratch.withUnsafeMutableBytes { Sys.pread(file.fd, into: $0, offset: source) }
            guard case .success(let n) = got, n > 0 else { break }
            let put = scratch.withUnsafeBytes { Sys.pwrite(file.fd, UnsafeRawBufferPointer(rebasing: $0[..<n]), offset: target) }
            guard case .success(n) = put else { break }
            source += n
            target += n
        }
        _ = line.withUnsafeBytes { Sys.pwrite(file.fd, $0, offset: 0) }
        if case .success = Sys.truncate(file.fd, length: target) { file.size = target }
    }

    /// Sets `line` to "<header> - log truncated at S.SSSS" (no newline).
    mutating func truncatedHeaderLine(now: UInt64) {
        line.removeAll(keepingCapacity: true)
        line.append(contentsOf: file.header)
        line.append(contentsOf: " - log truncated at ".utf8)
        appendTimestamp(now)
    }

    /// Appends `message` capped to a record's length, plus a newline unless it has one.
    mutating func appendMessage(_ message: String, newline: Bool = true) {
        let room = LogState.maxRecord - 1 - line.count
        var utf8 = message.utf8[...]
        if utf8.count > room { utf8 = utf8.prefix(max(room, 0)) }
        line.append(contentsOf: utf8)
        if newline && line.last != 0x0a { line.append(0x0a) }
    }

    /// Appends seconds since start with four decimals: "12.0345".
    mutating func appendTimestamp(_ now: UInt64) {
        let micros = (now &- start) / 1000
        appendDecimal(micros / 1_000_000)
        line.append(UInt8(ascii: "."))
        let fraction = (micros / 100) % 10_000
        var divisor: UInt64 = 1000
        while divisor > 0 {
            line.append(UInt8(ascii: "0") + UInt8(fraction / divisor % 10))
            divisor /= 10
        }
    }

    /// Appends `value` in decimal.
    mutating func appendDecimal(_ value: UInt64) {
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var count = 0
        var v = value
        withUnsafeMutableBytes(of: &digits) { d in
            repeat {
                d[count] = UInt8(ascii: "0") + UInt8(v % 10)
                v /= 10
                count += 1
            } while v > 0
            for i in stride(from: count - 1, through: 0, by: -1) { line.append(d[i]) }
        }
    }

    /// Writes all of `bytes` to `fd`, giving up on errors (there is nowhere to report them).
    func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
        bytes.withUnsafeBytes { all in
            var done = 0
            while done < all.count {
                guard case .success(let n) = Sys.write(fd, UnsafeRawBufferPointer(rebasing: all[done...])), n > 0
                else { return }
                done += n
            }
        }
    }
}
