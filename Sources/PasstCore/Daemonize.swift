// Going to the background, the PID file (spec §1.4) and the open-file limit.
//
// Theory of operation: podman and libvirt take "the process returned with status 0" to mean
// "ready": every socket bound, the tap up. So without -f the daemon does all of its set-up in the
// foreground, then forks; the parent writes the child's PID to the -P file and exits 0, and the
// child starts a new session, points stdin, stdout and stderr at /dev/null and stops logging to
// stderr. With -f (and in pasta's spawn mode, which forces foreground) the PID file gets our own
// PID right before the main loop; test harnesses wait for it to appear. The PID file is opened
// (created or truncated, mode 0600) at start-up, while the file system is still reachable, and
// written once: "<pid>\n". Nothing here runs on the packet path.
import PasstConfig
import PasstSys
#if canImport(Glibc)
import Glibc
#endif

/// The -P file: opened at start-up, written once the daemon is ready.
struct PIDFile: ~Copyable {
    /// The open file, -1 when -P was not given (owned: closed on deinit).
    private let fd: Int32

    /// Opens (creates or truncates, 0600) `path`; nothing when `path` is nil.
    init(path: String?) throws(PastaSetupError) {
        guard let path else {
            fd = -1
            return
        }
        switch Sys.open(path, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600) {
        case .success(let file): fd = file.release()
        case .wouldBlock: throw PastaSetupError("Couldn't open PID file \(path): \(SyscallError(EAGAIN))")
        case .failure(let code): throw PastaSetupError("Couldn't open PID file \(path): \(SyscallError(code))")
        }
    }

    deinit {
        if fd >= 0 { _ = FileDescriptor(taking: fd).close() }
    }

    /// Writes "<pid>\n" to the file (no-op without -P) and closes it; a failure is logged.
    consuming func write(pid: pid_t) {
        guard fd >= 0 else { return }
        let text = Array("\(pid)\n".utf8)
        let raw = fd
        let written = text.withUnsafeBytes { Sys.write(raw, $0) }
        guard case .success(text.count) = written else {
            Log.error("Couldn't write PID file")
            return
        }
    }
}

/// Forking into the background.
enum Daemon {
    /// Opens /dev/null for `fork`, which runs when the file system is already out of reach.
    static func openNullDevice() throws(PastaSetupError) -> Int32 {
        switch Sys.open("/dev/null", flags: O_RDWR) {
        case .success(let null): return null.release()
        case .wouldBlock: throw PastaSetupError("Couldn't open /dev/null: \(SyscallError(EAGAIN))")
        case .failure(let code): throw PastaSetupError("Couldn't open /dev/null: \(SyscallError(code))")
        }
    }

    /// Forks; in the parent returns the child's PID, in the child detaches it from the terminal
    /// and session, points the standard streams at `null` (/dev/null, then closed) and returns nil.
    static func fork(null: Int32) throws(PastaSetupError) -> pid_t? {
        let pid = Glibc.fork()
        if pid < 0 { throw PastaSetupError("Couldn't fork: \(SyscallError(errno))") }
        if pid > 0 {
            close(null)
            return pid
        }
        _ = setsid()
        for standard in [STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO] { _ = dup2(null, standard) }
        if null > STDERR_FILENO { close(null) }
        Logger.shared.setStderr(enabled: false)
        return nil
    }
}

/// What both daemons do first and last: the signalfd, the open-file limit and the spare
/// descriptor before anything else, and a set-up failure turned into its message and exit
/// status 1.
enum DaemonStart {
    /// Runs `start`, the daemon's set-up and loop; a set-up failure is logged and gives 1.
    static func run(_ start: () throws(PastaSetupError) -> Int32) -> Int32 {
        do {
            return try start()
        } catch {
            Log.error(error.description)
            return 1
        }
    }

    /// Blocks SIGTERM and SIGQUIT into the signalfd of `mode`, raises the open-file limit and
    /// takes the spare descriptor that refuses connections once no other is left.
    static func prepare(mode: ProgramMode) throws(PastaSetupError) -> DaemonSignals {
        let signals: DaemonSignals
        do {
            signals = try DaemonSignals(mode: mode)
        } catch {
            throw PastaSetupError("Couldn't set up signal handling: \(error)")
        }
        raiseOpenFiles()
        DescriptorReserve.take()
        return signals
    }

    /// Raises the soft limit of open files to the hard limit, as upstream does in both modes:
    /// every connection holds a socket and a timer, `-t all` a listener per port (failure only
    /// logged).
    static func raiseOpenFiles() {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        limit.rlim_cur = limit.rlim_max
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) != 0 {
            Log.warning("Couldn't raise the open file limit: \(SyscallError(errno))")
        }
    }
}
