// passt with a real VM: qemu (TCG) booting Debian's kernel with a busybox initramfs
// (QemuGuest), its virtio-net NIC on passt's socket through `-netdev stream`, passt itself in the
// test bed's host namespace as in the frame-relay tests.
//
//   guest (qemu)                       passt (bed's host ns)               host namespace
//   udhcpc, SLAAC, ping      <-stream->  DHCP, RA, ping sockets  ---------->  router 192.0.2.1, fd00::1
//   wget 192.0.2.1:8081                  gateway -> 127.0.0.1      -------->  busybox httpd 127.0.0.1:8081
//   busybox httpd :8080      <---------  -t 8080                   <--------  wget 127.0.0.1 / 192.0.2.2:8080
//
// The guest's /init (`guestScript`) does the guest side and reports each result on the serial
// console; the test does the host side and checks both. Tokens are random per test, so a page
// can only have come through passt; a 16 MiB random file each way, compared by SHA-256, takes
// TCP through passt past the first window in both directions. The guest then waits for the host
// to publish "done" on its web server and powers off; qemu exits (-no-reboot), which closes
// passt's client connection.
// The libvirt test starts passt exactly as libvirt does (spec section 15: no -f, so passt
// daemonises; --one-off) and checks its readiness contract and that it leaves with its VM.
// qemu's `reconnect=` is not in Debian 12's qemu 7.2, so a restarted guest is tested as a second
// qemu connecting to the same passt (without --one-off).
import Foundation
import Testing

/// Size of the bulk files each way, in 64 KiB blocks.
let bulkBlocks = 256

/// The guest's /init body: DHCP (reported with udhcpc's values), SLAAC, pings to the gateway,
/// a page and a bulk file (its SHA-256) from the host through the gateway, a page and a bulk file
/// of its own served on 8080, then waiting for the host's "done".
func guestScript(hostPort: Int) -> String {
    """
    ip link set lo up
    echo 1 > /proc/sys/net/ipv6/conf/all/accept_ra
    ip link set eth0 up
    udhcpc -i eth0 -s /udhcpc.sh -O search -O mtu -n -q -t 5 -T 2 || echo "VMTEST dhcp-failed"
    slaac=""
    for i in $(seq 100); do
        slaac=$(ip -6 -o addr show dev eth0 scope global | sed -n 's/.* inet6 \\(fd00:[0-9a-f:]*\\/[0-9]*\\).*/\\1/p')
        [ -n "$slaac" ] && break
        sleep 0.1
    done
    echo "VMTEST slaac $slaac"
    ping -c 1 -W 5 192.0.2.1 > /dev/null && echo "VMTEST ping4 ok"
    ping -6 -c 1 -W 5 fd00::1 > /dev/null && echo "VMTEST ping6 ok"
    echo "VMTEST fetched $(timeout 10 wget -q -O - http://192.0.2.1:\(hostPort)/host.txt)"
    echo "VMTEST bulk-fetched $(timeout 60 wget -q -O - http://192.0.2.1:\(hostPort)/bulk | sha256sum | cut -d' ' -f1)"
    dd if=/dev/urandom of=/www/bulk bs=64k count=\(bulkBlocks) 2> /dev/null
    echo "VMTEST bulk-serving $(sha256sum /www/bulk | cut -d' ' -f1)"
    httpd -p 8080 -h /www && echo "VMTEST serving"
    for i in $(seq 600); do
        timeout 2 wget -q -O /dev/null http://192.0.2.1:\(hostPort)/done && break
        sleep 0.2
    done
    echo "VMTEST done"
    """
}

/// udhcpc's event script: configures eth0 from the lease and reports what it was given.
let udhcpcScript = """
    #!/bin/sh
    [ "$1" = bound ] || exit 0
    ip addr add $ip/$mask dev $interface
    [ -n "$mtu" ] && ip link set $interface mtu $mtu
    ip route add default via $router
    echo "VMTEST dhcp ip=$ip/$mask router=$router dns=$dns search=$search mtu=$mtu"
    """

/// One VM run: the host's web server, the initramfs with fresh tokens, the console.
struct VMRun {
    /// Port of the host's web server on 127.0.0.1 in the host namespace.
    static let hostPort = 8081
    /// The bed the VM's passt and the host's web server run in.
    let bed: TestBed
    /// Content of the host's page host.txt, fetched by the guest.
    let hostToken = "host-\(UInt64.random(in: 1...UInt64.max))"
    /// Content of the guest's page guest.txt, fetched by the host.
    let guestToken = "guest-\(UInt64.random(in: 1...UInt64.max))"
    /// Directory the host's web server serves (host.txt, and "done" once the host has checked).
    let webRoot: String
    /// The guest's initramfs (guestScript with this run's tokens).
    let initramfs: String

    /// Serves the host's page (busybox httpd on 127.0.0.1:8081 in the host namespace) and builds the initramfs.
    init(_ bed: TestBed) throws {
        self.bed = bed
        webRoot = bed.directory + "/www"
        try FileManager.default.createDirectory(atPath: webRoot, withIntermediateDirectories: true)
        try hostToken.write(toFile: webRoot + "/host.txt", atomically: true, encoding: .utf8)
        try Command.check(["dd", "if=/dev/urandom", "of=" + webRoot + "/bulk", "bs=64k", "count=\(bulkBlocks)"])
        _ = try bed.startBackground(in: bed.host, [QemuGuest.busybox, "httpd", "-f", "-p", "127.0.0.1:\(VMRun.hostPort)",
                                                    "-h", webRoot])
        initramfs = try QemuGuest.buildInitramfs(in: bed.directory, script: guestScript(hostPort: VMRun.hostPort),
                                                 files: ["udhcpc.sh": udhcpcScript, "www/guest.txt": guestToken])
    }

    /// Boots a VM on passt's socket; returns qemu and its console.
    func boot(socketPath: String) throws -> (BackgroundProcess, GuestConsole) {
        let console = GuestConsole(path: bed.directory + "/console-\(Command.nextID()).log")
        return (try QemuGuest.boot(bed, initramfs: initramfs, socketPath: socketPath, consoleLog: console.path), console)
    }

    /// Fetches `url` with busybox wget from the host namespace; returns the body or nil.
    func fetchFromHost(_ url: String) throws -> String? {
        let result = try bed.run(in: bed.host, [QemuGuest.busybox, "wget", "-q", "-O", "-", url], timeout: 15)
        return result.status == 0 ? result.stdout : nil
    }

    /// Checks the guest's lease, page and bulk file from the host, and page (to 127.0.0.1 and
    /// 192.0.2.2) and bulk file served to the host.
    func checkTraffic(_ console: GuestConsole, _ passt: () -> String) throws {
        let serving = console.wait(for: "serving", timeout: 120)
        try #require(serving != nil, "guest never served; console:\n\(console.text)\npasst: \(passt())")
        #expect(console.report("dhcp") == "ip=192.0.2.2/24 router=192.0.2.1 dns=192.0.2.1 search=example.test other.test mtu=65520",
                "\(console.text)")
        #expect(console.report("fetched") == hostToken, "\(console.text)")
        #expect(try fetchFromHost("http://127.0.0.1:8080/guest.txt") == guestToken)
        #expect(try fetchFromHost("http://192.0.2.2:8080/guest.txt") == guestToken)
        let hostSum = try sha256(webRoot + "/bulk")
        #expect(console.report("bulk-fetched") == hostSum, "\(console.text)")
        let copy = bed.directory + "/bulk-from-guest"
        let fetched = try bed.run(in: bed.host, [QemuGuest.busybox, "wget", "-q", "-O", copy, "http://192.0.2.2:8080/bulk"],
                                  timeout: 60)
        let guestSum = try sha256(copy)
        #expect(fetched.status == 0 && console.report("bulk-serving") == guestSum, "\(fetched.stderr)")
    }

    /// The SHA-256 of file `path` in hex.
    func sha256(_ path: String) throws -> String {
        String(try Command.check(["sha256sum", path]).prefix(64))
    }

    /// Tells the guest to power off, waits for it to do so and for qemu to exit; returns whether both happened.
    func finish(_ qemu: BackgroundProcess, _ console: GuestConsole) throws -> Bool {
        try "".write(toFile: webRoot + "/done", atomically: true, encoding: .utf8)
        let poweredOff = console.wait(for: "done", timeout: 30) != nil
            && waitUntil(30) { console.text.contains("reboot: Power down") }
        let stopped = waitUntil(10) { processState(qemu.pid) == "Z" }
        bed.stop(qemu)
        try FileManager.default.removeItem(atPath: webRoot + "/done")
        return poweredOff && stopped
    }
}

/// The state letter of process `pid` from /proc/PID/stat ("R", "S", "Z"...), nil once it is gone.
func processState(_ pid: pid_t) -> String? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return nil }
    return stat[stat.index(after: close)...].split(separator: " ").first.map(String.init)
}

@Suite("passt with a real VM (qemu TCG, Debian kernel, busybox)", .enabled(if: QemuGuest.available),
       .serialized, .integrationTimeLimit)
struct PasstVMTests {
    @Test("The VM gets its lease and SLAAC address, pings the gateway, fetches from and serves to the host; -p is readable")
    func guestServices() async throws {
        try await withTestBed { bed in
            let run = try VMRun(bed)
            let capture = bed.directory + "/vm.pcap"
            let (socketPath, passt) = try bed.startPasst(["-t", "8080", "-p", capture])
            let started = Date()
            let (qemu, console) = try run.boot(socketPath: socketPath)
            try run.checkTraffic(console, passt.stderr)
            let ready = Date().timeIntervalSince(started)
            #expect(console.report("slaac") == QemuGuest.slaacAddress, "\(console.text)")
            #expect(console.report("ping4") == "ok", "\(console.text)")
            #expect(console.report("ping6") == "ok", "\(console.text)")
            #expect(console.report("insmod-failed") == nil, "\(console.text)")
            #expect(try run.finish(qemu, console), "\(console.text)")
            #expect(waitUntil(5) { passt.stderr().contains("Client connection closed") }, "\(passt.stderr())")
            #expect(bed.stop(passt) == 0, "\(passt.stderr())")
            print("VM booted and served in \(String(format: "%.1f", ready)) s")

            let read = try Command.run(["tshark", "-n", "-r", capture, "-Y", "http.request or dhcp",
                                        "-T", "fields", "-e", "http.request.uri", "-e", "dhcp.option.dhcp"], timeout: 30)
            let complaints = read.stderr.split(separator: "\n").filter { !$0.hasPrefix("Running as user \"root\"") }
            #expect(read.status == 0 && complaints.isEmpty, "\(read.stderr)")
            let fields = Set(read.stdout.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) })
            #expect(fields.isSuperset(of: ["/host.txt", "/guest.txt", "1", "2", "3", "5"]), "\(read.stdout)")
        }
    }

    @Test("libvirt's invocation: exit 0 when ready, PID file of the live daemon, socket there; the daemon leaves with its VM")
    func libvirtInvocation() async throws {
        try await withTestBed { bed in
            try bed.allowPingSockets()
            let run = try VMRun(bed)
            let socketPath = bed.directory + "/guest-net0.socket"
            let pidFile = bed.directory + "/guest-net0-passt.pid"
            let result = try bed.run(in: bed.host, [try passtBinary(), "--one-off", "--socket", socketPath,
                                                    "--pid", pidFile, "--tcp-ports", "8080"])
            try #require(result.status == 0, "\(result.stderr)")
            var status = stat()
            #expect(stat(socketPath, &status) == 0 && status.st_mode & S_IFMT == S_IFSOCK)
            let text = try String(contentsOfFile: pidFile, encoding: .utf8)
            let pid = try #require(pid_t(text.trimmingCharacters(in: .newlines)), "PID file: \(text)")
            defer { if processState(pid) != nil { kill(pid, SIGKILL) } }
            #expect(text == "\(pid)\n")
            let comm = try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)
            #expect(comm?.hasPrefix("passt") == true && processState(pid) != "Z", "\(comm ?? "no process")")

            let (qemu, console) = try run.boot(socketPath: socketPath)
            try run.checkTraffic(console) { "" }
            #expect(try run.finish(qemu, console), "\(console.text)")
            #expect(waitUntil(10) { processState(pid) == nil || processState(pid) == "Z" },
                    "--one-off passt still running after its VM left")
        }
    }

    @Test("Without --one-off a second VM on the same socket is served after the first one left")
    func secondVM() async throws {
        try await withTestBed { bed in
            let run = try VMRun(bed)
            let (socketPath, passt) = try bed.startPasst(["-t", "8080"])
            for index in 1...2 {
                let (qemu, console) = try run.boot(socketPath: socketPath)
                try run.checkTraffic(console, passt.stderr)
                #expect(try run.finish(qemu, console), "VM \(index): \(console.text)")
            }
            #expect(bed.stop(passt) == 0, "\(passt.stderr())")
        }
    }
}
