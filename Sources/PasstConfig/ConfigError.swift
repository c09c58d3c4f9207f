// The error every command line and configuration failure is reported with.
//
// Theory of operation: upstream "dies" on a bad option: it logs one message and exits with status 1,
// and for getopt's own complaints (unknown option, missing argument) it also prints the usage text
// on stderr. Scripts and podman match some of these texts, so the message is upstream's wording
// exactly. Warnings logged before the failure (e.g. "--no-copy-routes will be dropped soon" before
// "--no-copy-routes needs --config-net") travel with the error so the caller prints them first, in
// upstream's order. Nothing here prints or exits: the entry point decides.

/// A fatal configuration problem: upstream's exact message, whether usage follows, earlier warnings.
public struct ConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The message upstream logs before exiting with status 1 (no trailing newline).
    public var message: String
    /// True for getopt diagnostics, after which upstream prints the usage text on stderr.
    public var showsUsage: Bool
    /// Warnings issued before the failure, to be printed before `message`.
    public var warnings: [String]

    /// Creates an error with upstream's message text.
    public init(_ message: String, showsUsage: Bool = false, warnings: [String] = []) {
        self.message = message
        self.showsUsage = showsUsage
        self.warnings = warnings
    }

    public var description: String { message }
}
