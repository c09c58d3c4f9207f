// The exact argument lists podman (spec §14) and libvirt (spec §15) pass must parse.
import PasstConfig
import PasstWire
import Testing

@Suite("podman and libvirt command lines", .serialized)
struct CallerCompatibilityTests {
    @Test("podman 5: container without published ports")
    func podmanPlain() throws {
        let options = try parseOptions(.pasta, [
            "--config-net", "--dns-forward", "169.254.1.1", "-t", "none", "-u", "none", "-T", "none", "-U", "none",
            "--no-map-gw", "--quiet", "--netns", "/run/user/1000/netns/netns-4e1c4a0b-9b0f-2f44-1f2e-5d0a5b2f7c11",
            "--map-guest-addr", "169.254.1.2",
        ])
        #expect(options.configNet && options.noRA && options.quiet && options.noMapGateway)
        #expect(options.dnsForward4 == IPv4Address(169, 254, 1, 1))
        #expect(options.mapGuestAddress4 == IPv4Address(169, 254, 1, 2))
        #expect(options.pastaTarget == .netns(path: "/run/user/1000/netns/netns-4e1c4a0b-9b0f-2f44-1f2e-5d0a5b2f7c11"))
        #expect(options.netnsOnly)
        #expect(options.tcpPorts.mode == .none && options.udpNamespacePorts.mode == .none)
    }

    @Test("podman 5: published ports in range form, with host IP, and --pid")
    func podmanPorts() throws {
        let options = try parseOptions(.pasta, [
            "--config-net", "-t", "8080-8080:80-80", "-t", "127.0.0.1/9090-9091:90-91", "-u", "5353-5353:53-53",
            "--dns-forward", "169.254.1.1", "-T", "none", "-U", "none", "--no-map-gw", "--quiet",
            "--netns", "/run/user/1000/netns/netns-1", "--map-guest-addr", "169.254.1.2",
            "--pid", "/tmp/containers-user-1000/pasta-1/pasta.pid",
        ])
        #expect(options.tcpPorts.forwarded.ports == [8080, 9090, 9091])
        #expect(options.tcpPorts.targetPort(for: 8080) == 80)
        #expect(options.tcpPorts.targetPort(for: 9091) == 91)
        #expect(options.tcpPorts.listeners[1].address == .v4(.loopback))
        #expect(options.udpPorts.targetPort(for: 5353) == 53)
        #expect(options.pidFile == "/tmp/containers-user-1000/pasta-1/pasta.pid")
    }

    @Test("podman: user options from --network pasta:... before the generated ones")
    func podmanUserOptions() throws {
        let options = try parseOptions(.pasta, [
            "--config-net", "-a", "10.0.2.0", "-n", "24", "-g", "10.0.2.2", "--dns-forward", "10.0.2.3",
            "-I", "tap0", "--ipv4-only", "-t", "none", "-u", "none", "-T", "none", "-U", "none", "--quiet",
            "--netns", "/run/user/1000/netns/netns-2", "--map-guest-addr", "169.254.1.2",
        ])
        #expect(options.address4 == IPv4Address(10, 0, 2, 0) && options.prefixLength4 == 24)
        #expect(options.gateway4 == IPv4Address(10, 0, 2, 2) && options.ipv4Only)
        #expect(options.namespaceInterfaceName == "tap0")
        #expect(!options.noMapGateway)
    }

    @Test("podman 4: --dns none and 169.254.0.1, rootless netns with a PID file")
    func podmanOlder() throws {
        let old = try parseOptions(.pasta, [
            "--config-net", "--dns-forward", "169.254.0.1", "-t", "none", "-u", "none", "-T", "none", "-U", "none",
            "--no-map-gw", "--quiet", "--netns", "/run/user/1000/netns/netns-3",
        ])
        #expect(old.dnsForward4 == IPv4Address(169, 254, 0, 1))
        let olderStill = try parseOptions(.pasta, [
            "--config-net", "--dns", "none", "-t", "none", "-u", "none", "-T", "none", "-U", "none",
            "--no-map-gw", "--quiet", "--netns", "/run/user/1000/netns/netns-4",
        ])
        #expect(olderStill.noDNS)
        let rootless = try parseOptions(.pasta, [
            "--config-net", "--pid", "/run/user/1000/containers/networks/rootless-netns/rootless-netns-conn.pid",
            "--dns-forward", "169.254.1.1", "-t", "none", "-u", "none", "-T", "none", "-U", "none", "--no-map-gw",
            "--quiet", "--netns", "/run/user/1000/containers/networks/rootless-netns/rootless-netns",
            "--map-guest-addr", "169.254.1.2",
        ])
        #expect(rootless.pidFile == "/run/user/1000/containers/networks/rootless-netns/rootless-netns-conn.pid")
    }

    @Test("podman's retry probe: --map-guest-addr is recognised by us")
    func podmanProbe() throws {
        let parsed = try parseCommandLine(.pasta, ["--map-guest-addr", "169.254.1.2", "--netns", "ns"])
        #expect(parsed.warnings.isEmpty)
    }

    @Test("libvirt: qemu_passt.c argument list")
    func libvirt() throws {
        let options = try parseOptions(.passt, [
            "--one-off", "--socket", "/run/libvirt/qemu/passt/1-vm1-net0.socket",
            "--pid", "/run/libvirt/qemu/passt/1-vm1-net0-passt.pid", "--mtu", "1500", "--interface", "eth0",
            "--address", "192.0.2.10", "--netmask", "24", "--address", "2001:db8::10",
            "--tcp-ports", "192.0.2.10%eth0/2222:22,8080-8090:80-90,~8085",
            "--udp-ports", "5353:53", "--tcp-ports", "[2001:db8::10]/443",
        ])
        #expect(options.oneOff && options.socketPath == "/run/libvirt/qemu/passt/1-vm1-net0.socket")
        #expect(options.pidFile == "/run/libvirt/qemu/passt/1-vm1-net0-passt.pid")
        #expect(options.mtu == 1500 && options.interface == "eth0")
        #expect(options.address4 == IPv4Address(192, 0, 2, 10) && options.prefixLength4 == 24)
        #expect(options.address6 == IPv6Address("2001:db8::10"))
        #expect(options.tcpPorts.forwarded.count == 1 + 10 + 1)
        #expect(!options.tcpPorts.forwarded.contains(8085))
        #expect(options.tcpPorts.listeners[0].interface == "eth0")
        #expect(options.udpPorts.targetPort(for: 5353) == 53)
    }

    @Test("libvirt: 'all' and the early-2023 --mac-addr and log file")
    func libvirtAll() throws {
        let options = try parseOptions(.passt, [
            "--one-off", "--socket", "/var/lib/libvirt/qemu/passt/vm-net0.socket", "--mac-addr", "52:54:00:12:34:56",
            "--log-file", "/var/log/passt.log", "--tcp-ports", "all", "--udp-ports", "all",
        ])
        #expect(options.tcpPorts.mode == .all && options.udpPorts.mode == .all)
        #expect(options.ourMAC == MACAddress(0x52, 0x54, 0, 0x12, 0x34, 0x56))
    }
}
