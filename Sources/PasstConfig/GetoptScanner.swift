// One GNU getopt_long scan of the whole command line, turned into a list of events.
//
// Theory of operation: upstream walks argv with glibc's getopt_long three times; getopt itself
// only ever complains during the first walk, at the first bad option, and everything before that
// point has been acted on. We walk once, here, with getopt_long's rules for a '+' option string
// (stop at the first non-option), copy out each option with its argument, stop at the first error
// with the text glibc would print, and note where the operands begin. The three passes of the
// parser then run over this list, which gives the same outcome as upstream's repeated walks.
//
// The rules, as glibc 2.36 applies them (a test holds this scanner to glibc's own getopt_long
// over thousands of generated command lines):
//   - "--" ends the options; an argument that does not start with '-', or is "-", ends them too
//     and is the first operand.
//   - "--name[=value]": an exact name wins; else every option whose name starts with `name`
//     matches, and if a later match differs from the first (another option, or another argument
//     rule) it is ambiguous: "PROG: option '--TYPED' is ambiguous; possibilities: '--a' '--b'",
//     the candidates in table order. No match: "PROG: unrecognized option '--TYPED'". TYPED is
//     what was typed after "--", "=value" included. A found option with "=value" that takes no
//     argument: "PROG: option '--NAME' doesn't allow an argument"; one that needs an argument and
//     has neither "=value" nor a next element: "PROG: option '--NAME' requires an argument";
//     NAME is the option's full name. Otherwise its argument is the value, or the next element
//     whatever it looks like.
//   - "-abc": letters one by one; one that takes an argument takes the rest of the element, or
//     the next element ("PROG: option requires an argument -- 'c'" if none); an unknown letter
//     is "PROG: invalid option -- 'c'".
// glibc's getopt_long itself cannot serve: its state is global and it prints to the global
// stderr, which a process with other threads (the test runner) cannot redirect safely.

/// Something getopt_long returned while scanning.
enum GetoptEvent: Equatable {
    /// A recognised option, with its argument if it takes one.
    case option(CommandLineOption, argument: String?)
    /// getopt's diagnostic for a bad option, e.g. "pasta: unrecognized option '--x'" (no newline).
    case error(String)
}

/// The result of scanning a command line: options in order (ending at an error, if any), then operands.
struct GetoptScan {
    var events: [GetoptEvent]
    /// Non-option arguments after the options (after "--" if given).
    var operands: [String]
}

/// GNU getopt_long over a command line, without global state.
enum GetoptScanner {
    private static let dash = UInt8(ascii: "-"), equals = UInt8(ascii: "=")

    /// Scans `arguments` (argv[0] included, used in the messages) with `mode`'s options.
    static func scan(_ arguments: [String], mode: ProgramMode) -> GetoptScan {
        let shortOptions = ShortOptions(CommandLineOption.shortOptions(for: mode))
        let program = arguments.first ?? ""
        var events: [GetoptEvent] = []
        var index = 1
        scanning: while index < arguments.count {
            let element = Array(arguments[index].utf8)
            if element == [dash, dash] {
                index += 1
                break
            }
            guard element.count > 1, element[0] == dash else { break }
            if element[1] == dash {
                index += 1
                let event = longOption(element[2...], program: program, arguments: arguments, index: &index)
                events.append(event)
                if case .error = event { break scanning }
                continue
            }
            // A cluster of short options; the element is passed once its last letter is taken.
            var position = 1
            while position < element.count {
                let letter = element[position]
                position += 1
                if position == element.count { index += 1 }
                guard let (option, takesArgument) = shortOptions[letter] else {
                    events.append(.error("\(program): invalid option -- '\(text([letter]))'"))
                    break scanning
                }
                var argument: String?
                if takesArgument {
                    if position < element.count {
                        argument = text(element[position...])
                        position = element.count
                        index += 1
                    } else if index < arguments.count {
                        argument = arguments[index]
                        index += 1
                    } else {
                        events.append(.error("\(program): option requires an argument -- '\(text([letter]))'"))
                        break scanning
                    }
                }
                events.append(.option(option, argument: argument))
            }
        }
        let operandStart = min(index, arguments.count)
        return GetoptScan(events: events, operands: Array(arguments[operandStart...]))
    }

    /// The event for the long option `typed` (what followed "--"), taking its argument from the
    /// element at `index` (then advanced) when it needs one and has no "=value".
    private static func longOption(_ typed: ArraySlice<UInt8>, program: String, arguments: [String],
                                   index: inout Int) -> GetoptEvent {
        let nameEnd = typed.firstIndex(of: equals) ?? typed.endIndex
        let name = typed[..<nameEnd]
        let table = CommandLineOption.longNames
        var found = table.firstIndex { $0.name.utf8.elementsEqual(name) }
        if found == nil {
            var candidates: [Int] = []
            for (position, entry) in table.enumerated() where entry.name.utf8.starts(with: name) {
                guard let first = found else {
                    found = position
                    continue
                }
                if entry.option != table[first].option {
                    if candidates.isEmpty { candidates.append(first) }
                    candidates.append(position)
                }
            }
            if !candidates.isEmpty {
                let names = candidates.map { " '--\(table[$0].name)'" }.joined()
                return .error("\(program): option '--\(text(typed))' is ambiguous; possibilities:\(names)")
            }
        }
        guard let found else { return .error("\(program): unrecognized option '--\(text(typed))'") }
        let (fullName, option) = table[found]
        if nameEnd < typed.endIndex {
            guard option.takesArgument else {
                return .error("\(program): option '--\(fullName)' doesn't allow an argument")
            }
            return .option(option, argument: text(typed[(nameEnd + 1)...]))
        }
        guard option.takesArgument else { return .option(option, argument: nil) }
        guard index < arguments.count else { return .error("\(program): option '--\(fullName)' requires an argument") }
        index += 1
        return .option(option, argument: arguments[index - 1])
    }

    /// `bytes` as text (they come from a String's UTF-8, cut at ASCII characters).
    private static func text<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> String {
        String(decoding: bytes, as: UTF8.self)
    }
}

/// A getopt option string ("+dqfel:h..."): each letter, and whether a ':' (argument) follows it.
private struct ShortOptions {
    private var table: [UInt8: (CommandLineOption, Bool)] = [:]

    /// Reads `specification`; a leading '+' (the scan's ordering) is not an option.
    init(_ specification: String) {
        let bytes = Array(specification.utf8.drop { $0 == UInt8(ascii: "+") })
        for (position, letter) in bytes.enumerated() where letter != UInt8(ascii: ":") {
            guard let option = CommandLineOption.allCases.first(where: { $0.shortName?.asciiValue == letter }) else {
                continue
            }
            table[letter] = (option, position + 1 < bytes.count && bytes[position + 1] == UInt8(ascii: ":"))
        }
    }

    /// The option of `letter` and whether it takes an argument; nil if the string lacks it.
    subscript(letter: UInt8) -> (CommandLineOption, Bool)? { table[letter] }
}
