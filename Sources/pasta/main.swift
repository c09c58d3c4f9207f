// The mode (passt or pasta) comes from the program name, as upstream: this binary may be called
// through a symlink with the other name.
import PasstCore
#if canImport(Glibc)
import Glibc
#endif

exit(PasstMain.run(CommandLine.arguments))
