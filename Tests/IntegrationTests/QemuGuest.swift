// A real virtual machine as passt's client: qemu under TCG (no KVM here) boots the machine's own
// Debian kernel with a tiny initramfs that the test builds at run time.
//
//   initramfs (cpio, newc, gzip)               qemu-system-x86_64 -accel tcg (bed's host namespace)
//   /bin/busybox + one symlink per applet      -kernel /boot/vmlinuz-V -initrd initramfs.cpio.gz
//   /lib/modules/*.ko  virtio-pci, virtio-net  -device virtio-net-pci -netdev stream -> passt's socket
//   /init              mounts, insmod, script  -serial file:console.log (console=ttyS0)
//
// Debian's kernel has virtio, virtio_pci and virtio_net as modules, so the modules are taken from
// /lib/modules/V with their dependencies from modules.dep (dependencies first) and loaded by /init
// with busybox insmod, which cannot decompress: .ko.xz/.zst/.gz files are unpacked while building.
// A module modules.dep does not list is taken to be built in. The script the test passes is the
// rest of /init; it reports on the serial console in lines "VMTEST <key> <value>", which
// `GuestConsole` reads back. The VM has no network but passt: `-nodefaults` leaves out qemu's
// default user-mode NIC, and qemu runs inside the bed's host namespace all the same.
import Foundation

/// Where the VM's parts come from on this machine, and building and booting it.
enum QemuGuest {
    /// The qemu binary, if installed (Debian's qemu-system-x86).
    static let qemu = Command.resolve("qemu-system-x86_64").flatMap { access($0, X_OK) == 0 ? $0 : nil }
    /// The static busybox of Debian's busybox-static.
    static let busybox = "/bin/busybox"
    /// The newest /boot/vmlinuz-VERSION that has /lib/modules/VERSION/modules.dep (Debian's linux-image-amd64).
    static let kernel: (path: String, version: String)? = {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/boot")) ?? []
        let versions = names.filter { $0.hasPrefix("vmlinuz-") }.map { String($0.dropFirst("vmlinuz-".count)) }
            .filter { access("/lib/modules/\($0)/modules.dep", R_OK) == 0 }
        return versions.max().map { ("/boot/vmlinuz-\($0)", $0) }
    }()
    /// Whether everything the VM tests need is here (plus root, for the bed).
    static var available: Bool {
        getuid() == 0 && qemu != nil && kernel != nil && access(busybox, X_OK) == 0
            && Command.resolve("cpio") != nil
    }
    /// The guest's MAC address (qemu's default for the first NIC).
    static let mac = "52:54:00:12:34:56"
    /// The SLAAC address the guest forms from passt's fd00::/64 prefix and its MAC.
    static let slaacAddress = "fd00::5054:ff:fe12:3456/64"

    /// Builds `directory`/initramfs.cpio.gz: busybox and its applet links, the virtio-net modules,
    /// `files` (path -> text, mode 0755) and an /init that mounts, loads the modules, then runs `script`.
    static func buildInitramfs(in directory: String, script: String, files: [String: String] = [:]) throws -> String {
        guard let kernel else { throw TestBedError(description: "no kernel with modules under /boot") }
        let root = directory + "/initramfs"
        let manager = FileManager.default
        for sub in ["bin", "dev", "proc", "sys", "tmp", "lib/modules"] {
            try manager.createDirectory(atPath: root + "/" + sub, withIntermediateDirectories: true)
        }
        try manager.copyItem(atPath: busybox, toPath: root + "/bin/busybox")
        for applet in try Command.check([busybox, "--list"]).split(separator: "\n") where applet != "busybox" {
            try manager.createSymbolicLink(atPath: root + "/bin/\(applet)", withDestinationPath: "busybox")
        }
        var insmod = ""
        for module in try moduleOrder(version: kernel.version, wanted: ["virtio_pci", "virtio_net"]) {
            let name = moduleName(module)
            try unpackModule("/lib/modules/\(kernel.version)/\(module)", to: root + "/lib/modules/\(name).ko")
            insmod += "insmod /lib/modules/\(name).ko || echo \"VMTEST insmod-failed \(name)\"\n"
        }
        let initText = """
            #!/bin/sh
            mount -t proc proc /proc
            mount -t sysfs sys /sys
            mount -t devtmpfs dev /dev
            \(insmod)
            """ + script + "\npoweroff -f\n"
        for (path, text) in files.merging(["init": initText], uniquingKeysWith: { $1 }) {
            let full = root + "/" + path
            try manager.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try text.write(toFile: full, atomically: false, encoding: .utf8)
            chmod(full, 0o755)
        }
        let image = directory + "/initramfs.cpio.gz"
        try Command.check(["sh", "-c", "cd \"$1\" && find . | cpio -o -H newc --quiet | gzip -1 > \"$2\"", "sh", root, image],
                          timeout: 30)
        return image
    }

    /// Starts qemu in the bed's host namespace on `initramfs`, its NIC on passt's socket at
    /// `socketPath`, its console going to `consoleLog`; teardown kills it.
    static func boot(_ bed: TestBed, initramfs: String, socketPath: String, consoleLog: String) throws -> BackgroundProcess {
        guard let qemu, let kernel else { throw TestBedError(description: "qemu or kernel missing") }
        return try bed.startBackground(in: bed.host, [
            qemu, "-accel", "tcg", "-m", "256M", "-smp", "1", "-nodefaults", "-display", "none", "-no-reboot",
            "-serial", "file:" + consoleLog,
            "-kernel", kernel.path, "-initrd", initramfs, "-append", "console=ttyS0 quiet panic=-1",
            "-device", "virtio-net-pci,netdev=n,mac=\(mac)",
            "-netdev", "stream,id=n,server=off,addr.type=unix,addr.path=\(socketPath)",
        ])
    }

    /// Paths (relative to /lib/modules/VERSION) of the modules `wanted` and everything they need,
    /// dependencies first; drivers modules.dep does not list are built in and need nothing.
    static func moduleOrder(version: String, wanted: [String]) throws -> [String] {
        let text = try String(contentsOfFile: "/lib/modules/\(version)/modules.dep", encoding: .utf8)
        var dependencies: [String: [String]] = [:]
        var pathOfName: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            let path = String(parts[0])
            dependencies[path] = parts.count > 1 ? parts[1].split(separator: " ").map(String.init) : []
            pathOfName[moduleName(path)] = path
        }
        var order: [String] = []
        func visit(_ path: String) {
            guard !order.contains(path) else { return }
            for dependency in dependencies[path] ?? [] { visit(dependency) }
            order.append(path)
        }
        for name in wanted { if let path = pathOfName[name] { visit(path) } }
        return order
    }

    /// The module name of a modules.dep path ("kernel/drivers/net/virtio_net.ko.xz" -> "virtio_net").
    static func moduleName(_ path: String) -> String {
        let file = (path as NSString).lastPathComponent
        return file.components(separatedBy: ".ko").first ?? file
    }

    /// Copies module `source` to `destination`, decompressing .xz, .zst and .gz files.
    static func unpackModule(_ source: String, to destination: String) throws {
        let decompressors = [".xz": "xz", ".zst": "zstd", ".gz": "gzip"]
        guard let (_, tool) = decompressors.first(where: { source.hasSuffix($0.key) }) else {
            try FileManager.default.copyItem(atPath: source, toPath: destination)
            return
        }
        try Command.check(["sh", "-c", "\"$1\" -dc \"$2\" > \"$3\"", "sh", tool, source, destination], timeout: 30)
    }
}

/// The guest's serial console log and its "VMTEST <key> <value>" report lines.
struct GuestConsole {
    /// The file qemu writes the serial console to.
    let path: String

    /// The whole log so far (carriage returns removed).
    var text: String {
        ((try? String(contentsOfFile: path, encoding: .isoLatin1)) ?? "").replacingOccurrences(of: "\r", with: "")
    }

    /// The value of the first "VMTEST `key` value" line, "" for a line with the key alone, nil if none yet.
    func report(_ key: String) -> String? {
        for line in text.split(separator: "\n") where line.hasPrefix("VMTEST \(key)") {
            let rest = line.dropFirst("VMTEST \(key)".count)
            if rest.isEmpty { return "" }
            if rest.hasPrefix(" ") { return String(rest.dropFirst()) }
        }
        return nil
    }

    /// Waits up to `timeout` s for report `key`; gives up early once the guest has panicked or powered off.
    func wait(for key: String, timeout: Double) -> String? {
        _ = waitUntil(timeout) {
            let log = text
            return report(key) != nil || log.contains("Kernel panic") || log.contains("reboot: Power down")
        }
        return report(key)
    }
}
