// GetoptScanner against glibc's own getopt_long: the same generated command lines go through both
// (glibc's in the getopt-oracle executable, Tests/GetoptOracle, built beside the test bundle) and
// every option, argument, diagnostic text and operand start must agree. The command lines are
// made from pieces that reach every rule: exact, abbreviated, ambiguous and unknown long names,
// "=value" on options with and without arguments, short clusters with attached and detached
// arguments, unknown letters, "--", "-", operands and missing arguments at the end.
@testable import PasstConfig
import Glibc
import Testing

let getoptOraclePath = productsDirectory + "/getopt-oracle"

/// Command lines and their expected scans in the oracle's line format.
enum GetoptOracle {
    /// The value glibc's table gives `option`: its letter, else 256 plus its position.
    static func value(_ option: CommandLineOption) -> Int {
        if let letter = option.shortName?.asciiValue { return Int(letter) }
        return 256 + CommandLineOption.allCases.firstIndex(of: option)!
    }

    /// The long option table as the oracle reads it.
    static var longOptions: String {
        CommandLineOption.longNames.map { "\($0.name):\($0.option.takesArgument ? 1 : 0):\(value($0.option))" }
            .joined(separator: ",")
    }

    /// Every piece a command line is made of: each long name (and some that are none) cut at
    /// every length, bare and with "=value"; every short letter (and some that are none) alone,
    /// with an attached value and paired with every other; "--", "-", operands and values.
    static let pieces: [String] = {
        let names = CommandLineOption.longNames.map(\.name) + ["map-gw", "no-dh", "netns-x", "x"]
        let letters = Array("dqfelhsFIpPmanMgiotuDS461TUxWz?:+-").map(String.init)
        let values = ["1", "-x", "--foo", "a=b", "", "eth0"]
        var pieces = ["--", "-", "word", "/path"] + values
        for name in names {
            for length in 0...name.count {
                pieces.append("--" + name.prefix(length))
                pieces.append("--" + name.prefix(length) + "=" + values[length % values.count])
            }
        }
        for first in letters {
            pieces += ["-" + first, "-" + first + "val"] + letters.map { "-" + first + $0 }
        }
        return pieces
    }()

    /// `count` command lines (argv[0] first) of 0 to 6 pieces, picked by a multiplicative hash
    /// of the line's and the piece's position (the same lines every run).
    static func commandLines(count: Int, salt: Int) -> [[String]] {
        (0..<count).map { line in
            let program = line % 2 == 0 ? "pasta" : "/usr/bin/passt"
            return [program] + (0..<((line + salt) % 7)).map { position in
                let hash = (line &* 2_654_435_761 &+ position &* 40_503 &+ salt) & 0x7fff_ffff
                return pieces[(hash >> 7) % pieces.count]
            }
        }
    }

    /// What the oracle prints for `arguments` if GetoptScanner is right.
    static func expected(_ arguments: [String], mode: ProgramMode) -> String {
        let scan = GetoptScanner.scan(arguments, mode: mode)
        var line = ""
        for event in scan.events {
            switch event {
            case .option(let option, let argument):
                line += "o\u{1d}\(value(option))\u{1d}\(argument == nil ? "0" : "1")\u{1d}\(argument ?? "")\u{1e}"
            case .error(let text):
                line += "e\u{1d}\(text)\u{1e}"
            }
        }
        return line + "n\u{1d}\(arguments.count - scan.operands.count)"
    }
}

@Suite("getopt_long rules against glibc's")
struct GetoptOracleTests {
    @Test("3,000 generated command lines per mode scan as glibc's getopt_long scans them",
          .enabled(if: access(getoptOraclePath, X_OK) == 0, "getopt-oracle not built"),
          arguments: [ProgramMode.passt, .pasta])
    func sameAsGlibc(mode: ProgramMode) throws {
        let lines = GetoptOracle.commandLines(count: 3000, salt: mode == .passt ? 1 : 2)
        let directory = makeTemporaryDirectory()
        let corpus = directory + "/corpus"
        defer {
            unlink(corpus)
            rmdir(directory)
        }
        let text = lines.map { $0.joined(separator: "\u{1f}") }.joined(separator: "\n") + "\n"
        let file = fopen(corpus, "w")
        try #require(file != nil)
        fputs(text, file)
        fclose(file)
        let outcome = try run(getoptOraclePath, ["getopt-oracle", CommandLineOption.shortOptions(for: mode),
                                                  GetoptOracle.longOptions, corpus])
        try #require(outcome.status == 0, "\(outcome.stderr)")
        let glibc = outcome.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        try #require(glibc.count == lines.count + 1, "\(glibc.count) lines for \(lines.count) command lines")
        var disagreements = 0
        for (arguments, glibcLine) in zip(lines, glibc) {
            let ours = GetoptOracle.expected(arguments, mode: mode)
            if ours != glibcLine {
                disagreements += 1
                if disagreements <= 5 {
                    Issue.record("\(arguments): ours \(ours.debugDescription), glibc \(glibcLine.debugDescription)")
                }
            }
        }
        #expect(disagreements == 0)
        // The pieces reach every rule: each kind of diagnostic turns up.
        for kind in ["is ambiguous", "unrecognized option", "doesn't allow an argument", "' requires an argument",
                     "invalid option", "option requires an argument --"] {
            #expect(glibc.contains { $0.contains(kind) }, "no \(kind) in the corpus")
        }
    }
}
