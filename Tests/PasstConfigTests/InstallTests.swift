// `make install` and `make uninstall` into a private prefix, with the binaries of this build.
//
// The Makefile's install target copies from PRODUCTS and builds nothing, so the test points it
// at the directory the test bundle runs from (where SwiftPM put passt) and never starts a second
// SwiftPM. It checks what was installed (passt, the pasta symlink, both man pages), that man
// renders the installed pages without warnings, that both installed names run, and that
// uninstall leaves nothing behind (the emptied directories can then be removed one by one).
import Glibc
import PasstConfig
import Testing

/// The full path of `name` in $PATH, if it is an executable there.
private func executableInPath(_ name: String) -> String? {
    let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin"
    return path.split(separator: ":").map { "\($0)/\(name)" }.first { access($0, X_OK) == 0 }
}

private let make = executableInPath("make")
private let man = executableInPath("man")

/// A minimal environment for make and man.
private let toolEnvironment = ["PATH=/usr/local/bin:/usr/bin:/bin", "LC_ALL=C.UTF-8", "MANWIDTH=80"]

/// Whether `path` names anything, a dangling symlink included.
private func exists(_ path: String) -> Bool {
    var status = stat()
    return lstat(path, &status) == 0
}

@Suite("make install / uninstall", .serialized,
       .enabled(if: make != nil, "make not installed"), .enabled(if: man != nil, "man not installed"),
       .enabled(if: executablesBuilt, "executables not built"))
struct InstallTests {
    @Test("install into PREFIX: binary, pasta symlink, man pages that render; uninstall removes them")
    func installAndUninstall() throws {
        let prefix = makeTemporaryDirectory()
        let installed = ["bin/passt", "bin/pasta", "share/man/man1/passt.1", "share/man/man1/pasta.1"]
        defer {
            for file in installed { unlink(prefix + "/" + file) }
            for directory in ["bin", "share/man/man1", "share/man", "share", ""] { rmdir(prefix + "/" + directory) }
        }
        let makeArguments = ["make", "-s", "-C", repositoryDirectory, "PREFIX=" + prefix, "PRODUCTS=" + productsDirectory]
        let install = try run(make!, makeArguments + ["install"], environment: toolEnvironment)
        try #require(install.status == 0, "make install: \(install.stderr)")
        for file in installed { #expect(exists(prefix + "/" + file), "\(file) installed") }

        var target = [CChar](repeating: 0, count: 256)
        let length = max(0, readlink(prefix + "/bin/pasta", &target, target.count - 1))
        let linkTarget = String(decoding: target[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        #expect(linkTarget == "passt", "bin/pasta is a symlink to passt")

        for mode in ["passt", "pasta"] {
            let page = prefix + "/share/man/man1/\(mode).1"
            let rendered = try run(man!, ["man", "--warnings", "-l", page], environment: toolEnvironment)
            #expect(rendered.status == 0 && rendered.stderr.isEmpty, "man -l \(mode).1: \(rendered.stderr)")
            #expect(rendered.stdout.contains("NAME") && rendered.stdout.contains("connect a"))
            let version = try run(prefix + "/bin/\(mode)", [prefix + "/bin/\(mode)", "--version"])
            #expect(version.status == 0 && version.stdout.hasPrefix("\(mode) \(Usage.version)\n"))
        }

        let uninstall = try run(make!, makeArguments + ["uninstall"], environment: toolEnvironment)
        #expect(uninstall.status == 0, "make uninstall: \(uninstall.stderr)")
        for file in installed { #expect(!exists(prefix + "/" + file), "\(file) removed") }
        for directory in ["bin", "share/man/man1", "share/man", "share"] {
            #expect(rmdir(prefix + "/" + directory) == 0, "\(directory) left empty")
        }
    }
}
