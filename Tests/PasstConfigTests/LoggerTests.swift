// The logger: log file header and records, level filtering, stderr and syslog routing, and
// --log-size cuts on a collapsing file system, on tmpfs and with the copy fallback forced.
// Each test uses its own Logger (never Logger.shared), so tests may run in parallel.
import Testing
import Glibc
import PasstSys
import CPasstShim
@testable import PasstConfig

/// A unique temporary path under `directory`.
private func temporaryPath(_ tag: String, in directory: String = "/tmp") -> String {
    "\(directory)/passt-logger-\(tag)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
}

/// The whole content of file `path` ("" if unreadable).
private func contents(_ path: String) -> String {
    guard case .success(let fd) = Sys.open(path, flags: O_RDONLY) else { return "" }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while case .success(let n) = chunk.withUnsafeMutableBytes({ Sys.read(fd.raw, into: $0) }), n > 0 {
        bytes += chunk[..<n]
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// The lines of `text` without the final empty piece.
private func lines(_ text: String) -> [Substring] {
    var parts = text.split(separator: "\n", omittingEmptySubsequences: false)
    if parts.last == "" { parts.removeLast() }
    return parts
}

/// Parses a record's "SECONDS.DDDD" timestamp into units of 100 µs; nil if malformed.
private func timestamp(_ record: Substring) -> UInt64? {
    guard let colon = record.firstIndex(of: ":") else { return nil }
    let parts = record[..<colon].split(separator: ".", omittingEmptySubsequences: false)
    guard parts.count == 2, parts[1].count == 4, let s = UInt64(parts[0]), let f = UInt64(parts[1]) else { return nil }
    return s * 10_000 + f
}

/// Everything readable now from non-blocking descriptor `fd`.
private func drain(_ fd: Int32) -> String {
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while case .success(let n) = chunk.withUnsafeMutableBytes({ Sys.read(fd, into: $0) }), n > 0 { out += chunk[..<n] }
    return String(decoding: out, as: UTF8.self)
}

@Suite struct LoggerTests {
    @Test func fileHeaderAndMode() throws {
        let path = temporaryPath("header")
        defer { unlink(path) }
        let pipe = try Sys.pipe(flags: O_NONBLOCK).get()
        let logger = Logger(stderr: pipe.writeEnd.raw)
        try logger.openFile(name: "pasta", version: "1.2.3", path: path, maxSize: nil)
        let exe = try Sys.readLink("/proc/self/exe").get()
        #expect(contents(path) == "pasta 1.2.3: \(exe) (\(getpid()))\n")
        var st = stat()
        #expect(stat(path, &st) == 0)
        #expect(st.st_mode & 0o777 == 0o600)

        // Reopening truncates.
        logger.configure(level: .info)
        logger.info("first run")
        try logger.openFile(name: "pasta", version: "1.2.3", path: path, maxSize: nil)
        #expect(lines(contents(path)).count == 1)

        #expect(throws: SyscallError(ENOENT)) {
            try logger.openFile(name: "passt", version: "x", path: "/nonexistent/dir/log", maxSize: nil)
        }
    }

    @Test func recordPrefixesAndLevels() throws {
        let path = temporaryPath("records")
        defer { unlink(path) }
        let pipe = try Sys.pipe(flags: O_NONBLOCK).get()
        let logger = Logger(stderr: pipe.writeEnd.raw)
        try logger.openFile(name: "passt", version: "v", path: path, maxSize: nil)
        logger.configure(level: .debug)
        logger.error("an error")
        logger.warning("a warning")
        logger.info("some info")
        logger.debug("debugging")
        logger.trace("not shown")
        logger.info("already terminated\n")

        let records = lines(contents(path)).dropFirst()
        #expect(records.count == 5)
        let bodies = records.map { r -> String in
            let start = r.index(r.firstIndex(of: ":")!, offsetBy: 2)
            return String(r[start...])
        }
        #expect(bodies == ["ERROR:   an error", "WARNING: a warning", "info:    some info",
                           "         debugging", "info:    already terminated"])
        #expect(records.allSatisfy { timestamp($0) != nil })
        // With a log file, debug mode does not timestamp stderr; attached stderr gets plain lines.
        #expect(drain(pipe.readEnd.raw) == "an error\na warning\nsome info\ndebugging\nalready terminated\n")
    }

    @Test func levelFilteringSkipsMessageEvaluation() throws {
        let pipe = try Sys.pipe(flags: O_NONBLOCK).get()
        let logger = Logger(stderr: pipe.writeEnd.raw)
        var evaluated = 0
        func message(_ text: String) -> String { evaluated += 1; return text }

        // Before configuration everything up to debug is shown, trace is not.
        #expect(logger.isEnabled(.debug) && !logger.isEnabled(.trace))
        logger.debug(message("early debug"))
        #expect(evaluated == 1)

        logger.configure(level: .warning)
        #expect(logger.isEnabled(.error) && logger.isEnabled(.warning))
        #expect(!logger.isEnabled(.info) && !logger.isEnabled(.debug))
        logger.info(message("hidden info"))
        logger.debug(message("hidden debug"))
        logger.trace(message("hidden trace"))
        #expect(evaluated == 1)
        logger.warning(message("shown warning"))
        #expect(evaluated == 2)
        #expect(drain(pipe.readEnd.raw) == "early debug\nshown warning\n")

        logger.configure(level: .trace)
        logger.trace(message("packet"))
        #expect(evaluated == 3)
        #expect(LogLevel.error < LogLevel.warning && LogLevel.debug < LogLevel.trace)
    }

    @Test func debugModeTimestampsStderr() throws {
        let pipe = try Sys.pipe(flags: O_NONBLOCK).get()
        let start = SystemClock.monotonicNanoseconds() - 12_345_678_900
        let logger = Logger(stderr: pipe.writeEnd.raw, startTime: start)
        logger.info("before parsing")
        logger.configure(level: .debug)
        logger.debug("with time")
        let out = lines(drain(pipe.readEnd.raw))
        #expect(out.count == 2)
        #expect(out[0] == "before parsing")
        #expect(out[1].hasSuffix(": with time"))
        let t = try #require(timestamp(out[1]))
        #expect(t >= 123_456 && t < 123_456 + 600_000)
    }

    @Test func detachedStderrStaysQuiet() throws {
        let pipe = try Sys.pipe(flags: O_NONBLOCK).get()
        let logger = Logger(stderr: pipe.writeEnd.raw)
        logger.configure(level: .info)
        logger.info("attached")
        logger.setStderr(enabled: false)
        logger.info("detached")
        logger.error("detached error")
        #expect(drain(pipe.readEnd.raw) == "attached\n")
    }

    @Test func syslogDatagrams() throws {
        let socketPath = temporaryPath("syslog")
        defer { unlink(socketPath) }
        let server = try Sys.socket(domain: AF_UNIX, type: SocketType.datagram | SocketType.nonBlocking).get()
        try Sys.bind(server.raw, unixPath: socketPath).get()
        let pipe = try Sys.pipe(flags: O_NONBLOCK).get()
        let logger = Logger(stderr: pipe.writeEnd.raw)
        logger.openSyslog(ident: "pasta", path: socketPath)
        logger.configure(level: .info)
        logger.info("hello")
        logger.error("broken\n")
        logger.debug("not enabled")

        var received: [String] = []
        var buffer = [UInt8](repeating: 0, count: 9000)
        while case .success(let n) = buffer.withUnsafeMutableBytes({ Sys.recv(server.raw, into: $0) }) {
            received.append(String(decoding: buffer[..<n], as: UTF8.self))
        }
        let pid = getpid()
        #expect(received == ["<30>pasta[\(pid)]: hello", "<27>pasta[\(pid)]: broken\n"])
        #expect(drain(pipe.readEnd.raw) == "hello\nbroken\n")

        // Debug mode without a file: stderr only, no syslog.
        logger.configure(level: .debug)
        logger.info("stderr only")
        if case .success = buffer.withUnsafeMutableBytes({ Sys.recv(server.raw, into: $0) }) {
            Issue.record("debug mode sent to syslog")
        }
        #expect(drain(pipe.readEnd.raw).hasSuffix(": stderr only\n"))

        // A missing system logger is silently ignored.
        let quiet = Logger(stderr: pipe.writeEnd.raw)
        quiet.openSyslog(ident: "passt", path: socketPath + ".missing")
        quiet.configure(level: .info)
        quiet.setStderr(enabled: false)
        quiet.info("nowhere")
        #expect(drain(pipe.readEnd.raw) == "")
    }

    @Test func longMessagesAreCapped() throws {
        let path = temporaryPath("long")
        defer { unlink(path) }
        let pipe = try Sys.pipe(flags: O_NONBLOCK).get()
        let logger = Logger(stderr: pipe.writeEnd.raw)
        logger.setStderr(enabled: false)
        try logger.openFile(name: "passt", version: "v", path: path, maxSize: nil)
        logger.configure(level: .info)
        logger.info(String(repeating: "x", count: 20_000))
        let record = lines(contents(path))[1]
        #expect(record.utf8.count == LogState.maxRecord - 1)
    }

    /// Floods a log file limited to `limit` bytes and checks upstream's log_to_file criteria.
    private func floodKeepsFileWithinLimit(directory: String, forceCopy: Bool) throws -> Bool {
        let path = temporaryPath("flood", in: directory)
        defer { unlink(path) }
        let limit = 102_400
        let pipe = try Sys.pipe(flags: O_NONBLOCK).get()
        let logger = Logger(stderr: pipe.writeEnd.raw)
        logger.setStderr(enabled: false)
        try logger.openFile(name: "pasta", version: "test", path: path, maxSize: UInt(limit))
        logger.configure(level: .debug)
        if forceCopy { logger.state.withLock { $0.file.collapseSupported = false } }
        let header = lines(contents(path))[0]

        var sequence = 0
        for round in 0..<6 {
            for _ in 0..<900 {
                sequence += 1
                let filler = String(repeating: "abcdefghij", count: sequence % 13)
                logger.debug("Flow \(sequence): TCP connection state change \(filler)")
            }
            let text = contents(path)
            let size = text.utf8.count
            #expect(size >= limit / 2 && size <= limit, "round \(round): size \(size)")
            let all = lines(text)
            if round > 0 {
                #expect(all[0].hasPrefix(header + " - log truncated at "), "round \(round): \(all[0].prefix(120))")
                let marker = all[0].dropFirst(header.count + " - log truncated at ".count)
                #expect(timestamp(Substring(marker.trimmingSuffix() + ":")) != nil, "marker \(marker.prefix(40))")
            }
            let stamps = all.dropFirst().map(timestamp)
            #expect(stamps.allSatisfy { $0 != nil }, "round \(round): malformed record")
            let values = stamps.compactMap { $0 }
            #expect(values == values.sorted(), "round \(round): timestamps out of order")
            // The newest record survives every cut.
            #expect(all.last?.contains("Flow \(sequence): ") == true)
        }
        return logger.state.withLock { $0.file.collapseSupported }
    }

    @Test func logSizeCutOnRegularFileSystem() throws {
        let collapsed = try floodKeepsFileWithinLimit(directory: "/tmp", forceCopy: false)
        // ext4 and XFS collapse ranges; other file systems fall back to copying.
        var fs = statfs()
        if statfs("/tmp", &fs) == 0 && fs.f_type == 0xEF53 { #expect(collapsed) }
    }

    @Test func logSizeCutOnTmpfs() throws {
        var fs = statfs()
        guard statfs("/dev/shm", &fs) == 0, fs.f_type == 0x0102_1994 else { return }
        let collapsed = try floodKeepsFileWithinLimit(directory: "/dev/shm", forceCopy: false)
        #expect(!collapsed)
    }

    @Test func logSizeCutByCopying() throws {
        _ = try floodKeepsFileWithinLimit(directory: "/tmp", forceCopy: true)
    }
}

extension Substring {
    /// The substring without trailing spaces (the header's padding).
    fileprivate func trimmingSuffix() -> Substring {
        var s = self
        while s.last == " " { s.removeLast() }
        return s
    }
}
