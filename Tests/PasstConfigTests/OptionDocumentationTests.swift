// The option lists of --help and of the man pages against what the parser accepts, per mode.
//
// The parser is the truth: a long option of the shared table is accepted by a mode unless parsing
// it alone fails with getopt's diagnostic or "is for ... mode only"; a short letter likewise.
// Each accepted name must appear exactly once in the mode's usage text (what -h prints) and in
// doc/MODE.1, with an argument exactly when the option takes one, and nothing else may appear.
// Usage lines are "  -x, --name ARG   text" or "      --name ARG   text"; man page headings
// are the "\fB\-x\fR, \fB\-\-name\fR \fIARG\fR" lines that follow .TP.
@testable import PasstConfig
import Testing

/// The repository's top directory, three levels above this file.
let repositoryDirectory: String = {
    var parts = String(#filePath).split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3)
    return parts.joined(separator: "/")
}()

/// Option names ("-x", "--name") the parser accepts in `mode`, each with whether it takes an argument.
private func acceptedOptions(_ mode: ProgramMode) -> [String: Bool] {
    var accepted: [String: Bool] = [:]
    /// Whether parsing `name` (plus a dummy argument if needed) gets past the option checks.
    func accepts(_ name: String, _ option: CommandLineOption) -> Bool {
        guard let error = parseError(mode, [name] + (option.takesArgument ? ["x"] : [])) else { return true }
        return !error.showsUsage && !error.message.hasSuffix(" mode only")
    }
    for (name, option) in CommandLineOption.longNames where accepts("--" + name, option) {
        accepted["--" + name] = option.takesArgument
    }
    for option in CommandLineOption.allCases {
        if let letter = option.shortName, accepts("-\(letter)", option) {
            accepted["-\(letter)"] = option.takesArgument
        }
    }
    return accepted
}

/// The names and argument flag of one option heading ("-x, --name ARG"); duplicates are recorded.
private func addHeading(_ heading: String, to options: inout [String: Bool], duplicates: inout [String]) {
    let tokens = heading.split(whereSeparator: { $0 == " " || $0 == "," }).map(String.init)
    let names = tokens.filter { $0.hasPrefix("-") }
    let hasArgument = tokens.contains { !$0.hasPrefix("-") }
    for name in names {
        if options[name] != nil { duplicates.append(name) }
        options[name] = hasArgument
    }
}

/// The options listed by a usage text, and the names listed more than once.
private func usageOptions(_ text: String) -> (options: [String: Bool], duplicates: [String]) {
    var options: [String: Bool] = [:]
    var duplicates: [String] = []
    for line in text.split(separator: "\n").map(String.init) {
        let isShort = line.hasPrefix("  -") && !line.hasPrefix("  --")
        guard isShort || line.hasPrefix("      --") else { continue }
        let trimmed = line.drop { $0 == " " }
        let column = trimmed.firstRange(of: "  ").map { String(trimmed[..<$0.lowerBound]) } ?? String(trimmed)
        addHeading(column, to: &options, duplicates: &duplicates)
    }
    return (options, duplicates)
}

/// The options listed by a man page's .TP headings, and the names listed more than once.
private func manPageOptions(_ roff: String) -> (options: [String: Bool], duplicates: [String]) {
    var options: [String: Bool] = [:]
    var duplicates: [String] = []
    let lines = roff.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    for (index, line) in lines.enumerated().dropLast() where line == ".TP" && lines[index + 1].hasPrefix("\\fB\\-") {
        var heading = lines[index + 1].replacingOccurrences(of: "\\-", with: "-")
        for font in ["\\fB", "\\fI", "\\fR", "\\fP"] { heading = heading.replacingOccurrences(of: font, with: "") }
        addHeading(heading, to: &options, duplicates: &duplicates)
    }
    return (options, duplicates)
}

extension String {
    /// This string with every occurrence of `target` replaced (no Foundation in this target).
    fileprivate func replacingOccurrences(of target: String, with replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}

@Suite("help text and man pages list exactly the options the parser accepts")
struct OptionDocumentationTests {
    @Test("usage text (-h)", arguments: [ProgramMode.passt, .pasta])
    func usageText(mode: ProgramMode) {
        let accepted = acceptedOptions(mode)
        let listed = usageOptions(Usage.text(mode: mode, programName: mode.rawValue))
        #expect(listed.duplicates.isEmpty)
        #expect(Set(listed.options.keys).subtracting(accepted.keys).sorted() == [], "listed, not accepted")
        #expect(Set(accepted.keys).subtracting(listed.options.keys).sorted() == [], "accepted, not listed")
        for (name, takesArgument) in accepted where listed.options[name] != nil {
            #expect(listed.options[name] == takesArgument, "argument of \(name)")
        }
    }

    @Test("man page doc/MODE.1", arguments: [ProgramMode.passt, .pasta])
    func manPage(mode: ProgramMode) throws {
        let roff = readText(repositoryDirectory + "/doc/\(mode.rawValue).1")
        try #require(roff.hasPrefix(".\\\""), "doc/\(mode.rawValue).1 missing")
        let accepted = acceptedOptions(mode)
        let listed = manPageOptions(roff)
        #expect(listed.duplicates.isEmpty)
        #expect(Set(listed.options.keys).subtracting(accepted.keys).sorted() == [], "listed, not accepted")
        #expect(Set(accepted.keys).subtracting(listed.options.keys).sorted() == [], "accepted, not listed")
        for (name, takesArgument) in accepted where listed.options[name] != nil {
            #expect(listed.options[name] == takesArgument, "argument of \(name)")
        }
    }

    @Test("the parser's sets differ per mode as upstream's do")
    func modesDiffer() {
        let passt = acceptedOptions(.passt)
        let pasta = acceptedOptions(.pasta)
        #expect(passt.count > 50 && pasta.count > 50)
        #expect(passt["-s"] == true && pasta["-s"] == nil && pasta["--socket"] == true)
        #expect(pasta["-T"] == true && passt["-T"] == nil && passt["--tcp-ns"] == true)
        #expect(passt["--one-off"] == false && pasta["--one-off"] == nil)
        #expect(pasta["--config-net"] == false && passt["--config-net"] == nil)
    }
}
