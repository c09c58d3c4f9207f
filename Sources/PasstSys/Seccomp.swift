// A seccomp allow-list: the last isolation stage (spec §10.1, stage 4).
//
// Theory of operation: a classic BPF program the kernel runs on every system call of the process
// once installed (threads created later inherit it). It first checks the architecture the call
// came from (a 32-bit or x32 entry into a 64-bit process has other numbers: killed), then compares
// the call's number with each allowed one in list order and returns ALLOW on a match, else
// KILL_PROCESS: the whole process dies with SIGSYS, logged by the kernel (audit type 1326, with
// the number). Lists put the packet path's calls first, since the comparisons run in order.
// Names are resolved to this architecture's numbers by the C shim, so a name the architecture
// lacks is an error at build time of the filter, not a silent hole. Installing needs
// no_new_privs (or CAP_SYS_ADMIN) and cannot be undone. Control path only: building allocates.
import CPasstShim
#if canImport(Glibc)
import Glibc
#endif

/// A system call named in an allow-list that this architecture does not have.
public struct UnknownSyscall: Error, Equatable, Sendable, CustomStringConvertible {
    /// The name as listed.
    public let name: String

    /// The message to die with.
    public var description: String { "no system call \(name) on this architecture" }
}

/// A seccomp filter allowing the listed system calls and killing the process on any other.
public struct SeccompFilter: Sendable {
    /// The BPF instructions, as the kernel takes them.
    public let instructions: [BPFInstruction]

    /// Builds the filter allowing exactly `names` (at most 255 of them, checked in order).
    public init(allowing names: [String]) throws(UnknownSyscall) {
        precondition(names.count <= Int(UInt8.max), "a jump offset holds at most 255")
        var numbers: [UInt32] = []
        for name in names {
            let number = shim_syscall_number(name)
            guard number >= 0 else { throw UnknownSyscall(name: name) }
            numbers.append(UInt32(number))
        }
        var program: [BPFInstruction] = [
            .load(offset: UInt32(SHIM_SECCOMP_DATA_ARCH)),
            .jumpIfEqual(shim_audit_arch(), skipIfTrue: 1),
            .return(SHIM_SECCOMP_RET_KILL_PROCESS),
            .load(offset: UInt32(SHIM_SECCOMP_DATA_NR)),
        ]
        for (index, number) in numbers.enumerated() {
            // From comparison `index`, ALLOW is past the remaining comparisons and the KILL.
            program.append(.jumpIfEqual(number, skipIfTrue: UInt8(numbers.count - index)))
        }
        program.append(.return(SHIM_SECCOMP_RET_KILL_PROCESS))
        program.append(.return(SHIM_SECCOMP_RET_ALLOW))
        instructions = program
    }

    /// Installs the filter on the calling thread (and so on every thread it creates later).
    public func install() -> SyscallResult<Void> {
        let result = instructions.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: shim_bpf_instruction.self) {
                shim_seccomp_install($0.baseAddress, UInt16($0.count))
            }
        }
        return result == 0 ? .success(()) : .failure(errno)
    }
}

/// One classic BPF instruction, laid out as struct sock_filter.
public struct BPFInstruction: Equatable, Sendable {
    public var code: UInt16
    public var jumpTrue: UInt8
    public var jumpFalse: UInt8
    public var k: UInt32

    /// Loads the 32-bit word at `offset` of struct seccomp_data into the accumulator.
    static func load(offset: UInt32) -> BPFInstruction {
        BPFInstruction(code: UInt16(SHIM_BPF_LOAD_WORD_ABSOLUTE), jumpTrue: 0, jumpFalse: 0, k: offset)
    }

    /// Skips `skipIfTrue` instructions when the accumulator equals `value`, else none.
    static func jumpIfEqual(_ value: UInt32, skipIfTrue: UInt8) -> BPFInstruction {
        BPFInstruction(code: UInt16(SHIM_BPF_JUMP_EQUAL), jumpTrue: skipIfTrue, jumpFalse: 0, k: value)
    }

    /// Ends the program with seccomp action `action`.
    static func `return`(_ action: UInt32) -> BPFInstruction {
        BPFInstruction(code: UInt16(SHIM_BPF_RETURN), jumpTrue: 0, jumpFalse: 0, k: action)
    }
}
