// One glibc getopt_long scan of the whole command line, turned into a list of events.
//
// Theory of operation: upstream walks argv with getopt_long three times; getopt itself only ever
// complains during the first walk, at the first bad option, and everything before that point has
// been acted on. We walk once, under a process-wide lock (getopt's state is global), copy out each
// option with its argument, stop at the first error with glibc's own diagnostic text (captured by
// the C shim instead of printed), and note where the operands begin. The three passes of the
// parser then run over this list in plain Swift, which gives the same outcome as upstream's
// repeated walks.
import CPasstShim
import Glibc
import Synchronization

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

/// Runs glibc's getopt_long over a command line, serialised by a lock.
enum GetoptScanner {
    /// Serialises scans: getopt_long keeps its state in process-wide globals.
    private static let lock = Mutex<Void>(())

    /// Scans `arguments` (argv[0] included, used by getopt in its messages) with `mode`'s options.
    static func scan(_ arguments: [String], mode: ProgramMode) -> GetoptScan {
        lock.withLock { _ in scanUnlocked(arguments, mode: mode) }
    }

    /// The scan itself; the caller holds the lock.
    private static func scanUnlocked(_ arguments: [String], mode: ProgramMode) -> GetoptScan {
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        let longOptions = CommandLineOption.longNames.map { entry in
            option(name: UnsafePointer(strdup(entry.name)), has_arg: entry.option.takesArgument ? 1 : 0,
                   flag: nil, val: entry.option.getoptValue)
        } + [option(name: nil, has_arg: 0, flag: nil, val: 0)]
        defer {
            argv.forEach { free($0) }
            longOptions.forEach { free(UnsafeMutableRawPointer(mutating: $0.name)) }
        }

        var events: [GetoptEvent] = []
        var nextIndex = arguments.count
        shim_getopt_restart()
        argv.withUnsafeMutableBufferPointer { argvBuffer in
            longOptions.withUnsafeBufferPointer { longBuffer in
                while true {
                    let step = shim_getopt_step(Int32(arguments.count), argvBuffer.baseAddress,
                                                CommandLineOption.shortOptions(for: mode), longBuffer.baseAddress)
                    nextIndex = Int(step.next_index)
                    let diagnostic = step.diagnostic.map { text in
                        defer { shim_getopt_free(text) }
                        return String(cString: text)
                    }
                    if step.value == -1 { return }
                    guard let option = CommandLineOption.from(getoptValue: step.value) else {
                        let text = diagnostic ?? ""
                        events.append(.error(text.hasSuffix("\n") ? String(text.dropLast()) : text))
                        return
                    }
                    events.append(.option(option, argument: step.argument.map { String(cString: $0) }))
                }
            }
        }
        let operandStart = min(max(nextIndex, 1), arguments.count)
        return GetoptScan(events: events, operands: Array(arguments[operandStart...]))
    }
}
