// The built passt and pasta executables: exit status and output of the command line paths.
//
// The executables are found next to the test bundle (the directory of /proc/self/exe), where
// SwiftPM puts every product of the build. Each run gets stdout and stderr in files of a private
// temporary directory, removed afterwards. The helpers here also serve InstallTests.swift and
// OptionDocumentationTests.swift.
import Glibc
import PasstConfig
import Testing

/// What a finished process printed and how it exited.
struct ProcessOutcome {
    let status: Int32
    let stdout: String
    let stderr: String
}

/// The build products directory: where the test bundle itself lives.
let productsDirectory: String = {
    var buffer = [CChar](repeating: 0, count: 4096)
    let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard length > 0 else { return "" }
    let path = String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)])
}()

let passtPath = productsDirectory + "/passt"
let pastaPath = productsDirectory + "/pasta"

/// Whether both executables have been built.
let executablesBuilt = access(passtPath, X_OK) == 0 && access(pastaPath, X_OK) == 0

/// A fresh private temporary directory.
func makeTemporaryDirectory() -> String {
    var template = Array("/tmp/passt-config-test-XXXXXX".utf8CString)
    return template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
}

/// Reads a whole file as text ("" if unreadable).
func readText(_ path: String) -> String {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return "" }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count <= 0 { break }
        bytes += chunk[..<count]
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// Runs `path` with argv `arguments` (argv[0] first) and `environment` ("NAME=value", default
/// empty), and waits for it.
func run(_ path: String, _ arguments: [String], environment: [String] = []) throws -> ProcessOutcome {
    let directory = makeTemporaryDirectory()
    defer {
        unlink(directory + "/stdout")
        unlink(directory + "/stderr")
        rmdir(directory)
    }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, directory + "/stdout", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_addopen(&actions, 2, directory + "/stderr", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
    defer { envp.forEach { free($0) } }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, path, &actions, nil, argv, envp)
    try #require(spawned == 0, "posix_spawn \(path): \(spawned)")
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    try #require(status & 0x7f == 0, "\(path) killed by signal \(status & 0x7f)")
    return ProcessOutcome(status: (status >> 8) & 0xff, stdout: readText(directory + "/stdout"),
                          stderr: readText(directory + "/stderr"))
}

@Suite("passt and pasta executables", .serialized, .enabled(if: executablesBuilt, "executables not built"))
struct ExecutableTests {
    @Test("unknown option: getopt's message, then usage, on stderr; exit 1")
    func unknownOption() throws {
        let outcome = try run(passtPath, [passtPath, "--foo"])
        #expect(outcome.status == 1)
        #expect(outcome.stdout.isEmpty)
        #expect(outcome.stderr == "\(passtPath): unrecognized option '--foo'\n"
            + Usage.text(mode: .passt, programName: passtPath))
    }

    @Test("pasta: podman's retry probe text for an unknown option")
    func podmanProbeText() throws {
        let outcome = try run(pastaPath, ["pasta", "--config-net", "--map-gw", "--netns", "x"])
        #expect(outcome.status == 1)
        #expect(outcome.stderr.hasPrefix("pasta: unrecognized option '--map-gw'\nUsage: pasta "))
    }

    @Test("bad option value: upstream's message alone, exit 1")
    func badValue() throws {
        let outcome = try run(passtPath, ["passt", "-m", "1"])
        #expect(outcome.status == 1)
        #expect(outcome.stderr == "Invalid MTU: 1\n")
        let pasta = try run(pastaPath, ["pasta", "-t", "all"])
        #expect(pasta.status == 1)
        #expect(pasta.stderr == "'all' port forwarding is only allowed for passt\n")
    }

    @Test("-h: usage on stdout, exit 0")
    func help() throws {
        let passt = try run(passtPath, ["passt", "-h"])
        #expect(passt.status == 0 && passt.stderr.isEmpty)
        #expect(passt.stdout == Usage.text(mode: .passt, programName: "passt"))
        let pasta = try run(pastaPath, ["/usr/bin/pasta", "--help"])
        #expect(pasta.status == 0)
        #expect(pasta.stdout == Usage.text(mode: .pasta, programName: "/usr/bin/pasta"))
        #expect(pasta.stdout.hasPrefix("Usage: /usr/bin/pasta [OPTION]... [COMMAND [ARG]...]\n"))
        #expect(pasta.stdout.contains("--netns PATH|NAME"))
    }

    @Test("--version: name, version, our copyright and licence on stdout; exit 0")
    func version() throws {
        let outcome = try run(passtPath, ["passt", "--version"])
        #expect(outcome.status == 0)
        #expect(outcome.stdout == Usage.versionText(mode: .passt))
        #expect(outcome.stdout.hasPrefix("passt \(Usage.version)\nCopyright the swift-passt authors\n"))
        #expect(outcome.stdout.contains("GNU General Public License, version 2 or later"))
    }

    @Test("a symlink named pasta to the passt binary runs pasta; other names exit 1")
    func symlinkSelectsMode() throws {
        let directory = makeTemporaryDirectory()
        let link = directory + "/pasta"
        let other = directory + "/nethelper"
        defer {
            unlink(link)
            unlink(other)
            rmdir(directory)
        }
        #expect(symlink(passtPath, link) == 0 && symlink(passtPath, other) == 0)
        let pasta = try run(link, [link, "--version"])
        #expect(pasta.status == 0)
        #expect(pasta.stdout.hasPrefix("pasta \(Usage.version)\n"))
        let usage = try run(link, [link, "-h"])
        #expect(usage.stdout.contains("-T, --tcp-ns SPEC"))
        let passtOption = try run(link, [link, "--one-off"])
        #expect(passtOption.status == 1 && passtOption.stderr == "--one-off is for passt mode only\n")
        let neither = try run(other, [other, "--version"])
        #expect(neither.status == 1 && neither.stdout.isEmpty && !neither.stderr.isEmpty)
    }

    @Test("--print-capabilities: three lines on stderr, exit 0")
    func capabilities() throws {
        let outcome = try run(passtPath, ["passt", "--vhost-user", "--print-capabilities"])
        #expect(outcome.status == 0)
        #expect(outcome.stderr == "{\n  \"type\": \"net\"\n}\n")
    }

    /// Runs pasta with `arguments` in a fresh, empty network namespace (so discovery finds no
    /// template and pasta uses local mode), spawning `true` as its command. Started as root, pasta
    /// opens the tap as nobody: its private mount namespace gets a /dev/net/tun open to all, as
    /// distributions ship it (some machines have a 0600 one).
    private func pastaInEmptyNamespace(_ arguments: [String]) throws -> ProcessOutcome {
        try run("/usr/bin/unshare", ["unshare", "--net", "--mount", "--propagation", "private", "sh", "-c",
                                     "mount -t tmpfs -o mode=755 pasta-tun /dev/net && mknod -m 666 /dev/net/tun c 10 200 && exec \"$@\"",
                                     "sh", pastaPath] + arguments + ["--", "true"])
    }

    @Test("a good command line exits 0; --debug prints the summary with timestamps",
          .enabled(if: getuid() == 0, "creates a network namespace"))
    func debugSummary() throws {
        let outcome = try pastaInEmptyNamespace(["-d", "--config-net", "-t", "none"])
        #expect(outcome.status == 0)
        let lines = outcome.stderr.split(separator: "\n").map(String.init)
        #expect(lines.contains { $0.hasSuffix(": Namespace interface: tap0") })
        #expect(lines.contains { $0.hasSuffix(": No external interface as template, switch to local mode") })
        #expect(lines.contains { $0.hasSuffix(":     host: 9a:55:9a:55:9a:55") })
        let stamp = try #require(lines.first { $0.hasSuffix(": MAC:") })
        let seconds = stamp.prefix { $0.isNumber }
        let fraction = stamp.dropFirst(seconds.count + 1).prefix { $0.isNumber }
        #expect(!seconds.isEmpty && stamp.dropFirst(seconds.count).first == "." && fraction.count == 4)
        #expect(stamp.dropFirst(seconds.count + 5) == ": MAC:")
        let quiet = try pastaInEmptyNamespace(["-q", "--config-net", "-t", "none"])
        #expect(quiet.status == 0)
        #expect(!quiet.stderr.contains("MAC:"))
    }
}
