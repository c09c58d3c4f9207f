// /proc/net socket table parsing for pasta's `auto` forwarding: bound UDP (state 07) and
// listening TCP (state 0A) ports are picked, other states, the header and garbage are not.
import Testing
import PasstConfig
@testable import PasstFlow

@Suite("UDP auto forwarding: /proc/net tables")
struct ProcNetPortsTests {
    static let udpTable = """
           sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
          123: 00000000:1B58 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 100 2 0000000000000000 0
          124: 0100007F:1F90 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 101 2 0000000000000000 0
          125: 0200000A:C350 0100000A:0035 01 00000000:00000000 00:00000000 00000000     0        0 102 2 0000000000000000 0
        garbage line
        """
    static let tcp6Table = """
          sl  local_address                         remote_address                        st
           0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000
           1: 00000000000000000000000001000000:0050 00000000000000000000000001000000:A000 01 00000000:00000000
        """

    /// Scans `text` for `state` into a fresh bitmap.
    static func scan(_ text: String, state: UInt8) -> [UInt16] {
        var ports = PortBitmap()
        Array(text.utf8).withUnsafeBytes { ProcNetPorts.scan($0, state: state, into: &ports) }
        return ports.ports
    }

    @Test("Unconnected UDP sockets count, connected ones don't")
    func udp() {
        #expect(ProcNetPortsTests.scan(ProcNetPortsTests.udpTable, state: ProcNetPorts.udpListen) == [7000, 8080])
    }

    @Test("Listening TCP sockets count, established ones don't; the header never does")
    func tcp() {
        #expect(ProcNetPortsTests.scan(ProcNetPortsTests.tcp6Table, state: ProcNetPorts.tcpListen) == [22])
        #expect(ProcNetPortsTests.scan(ProcNetPortsTests.udpTable, state: ProcNetPorts.tcpListen).isEmpty)
        #expect(ProcNetPortsTests.scan("", state: ProcNetPorts.udpListen).isEmpty)
    }
}
