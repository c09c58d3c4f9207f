// Entry point shared by the passt and pasta executables (filled in by the runtime work).
public enum PasstMain {
    /// Runs the program named by argv[0] and returns its exit status.
    public static func run(_ arguments: [String]) -> Int32 { 0 }
}
