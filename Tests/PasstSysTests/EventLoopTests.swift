// Epoll readiness, the event loop's dispatch and timers under a manual clock, signals via signalfd.
import Testing
import Glibc
import CPasstShim
@testable import PasstSys

/// Records everything the loop hands it; reads ready sockets dry; stops on a chosen kind.
private struct Recorder: EventHandler {
    var events: [(kind: UInt8, fd: Int32, data: UInt32, events: EpollEvents)] = []
    var timers: [(token: UInt32, at: UInt64)] = []
    var iterations = 0
    var signals: [Int32] = []
    var stopOnTimer: UInt32?
    var signalFD: Int32 = -1

    mutating func handleEvent(_ token: EventToken, events: EpollEvents, loop: inout EventLoop) {
        self.events.append((token.kind, token.fd, token.data, events))
        if token.kind == 9 {
            var info = signalfd_siginfo()
            while case .success = withUnsafeMutableBytes(of: &info, { Sys.read(signalFD, into: $0) }) {
                signals.append(Int32(info.ssi_signo))
            }
            loop.stop()
            return
        }
        var buf = [UInt8](repeating: 0, count: 64)
        while case .success(let n) = buf.withUnsafeMutableBytes({ Sys.recv(token.fd, into: $0, flags: Int32(MSG_DONTWAIT)) }),
              n > 0 {}
    }

    mutating func handleTimer(_ token: EventToken, loop: inout EventLoop) {
        timers.append((token.data, loop.now))
        if token.data == stopOnTimer { loop.stop() }
    }

    mutating func iterationDone(loop: inout EventLoop) { iterations += 1 }
}

@Suite struct EpollTests {
    @Test func socketPairReadinessCarriesUserData() throws {
        let epoll = try Epoll.create().get()
        let pair = try Sys.socketPair(type: SocketType.stream | SocketType.nonBlocking).get()
        var buffer = EpollEventBuffer(capacity: 8)
        #expect(epoll.add(pair.second.raw, events: [.input, .readHangup], data: 0xdead_beef_0000_0042).errorCode == nil)
        #expect(epoll.wait(into: &buffer, timeoutMilliseconds: 0).errorCode == nil)
        #expect(buffer.count == 0)

        _ = [UInt8](repeating: 7, count: 3).withUnsafeBytes { Sys.write(pair.first.raw, $0) }
        guard case .success(1) = epoll.wait(into: &buffer, timeoutMilliseconds: 1000) else {
            Issue.record("no readiness"); return
        }
        #expect(buffer.data(at: 0) == 0xdead_beef_0000_0042)
        #expect(buffer.events(at: 0).contains(.input))
        #expect(!buffer.events(at: 0).contains(.output))

        // Switch to output interest; a fresh socket is writable.
        #expect(epoll.modify(pair.second.raw, events: .output, data: 5).errorCode == nil)
        guard case .success(1) = epoll.wait(into: &buffer, timeoutMilliseconds: 1000) else {
            Issue.record("no output readiness"); return
        }
        #expect(buffer.data(at: 0) == 5 && buffer.events(at: 0) == .output)

        #expect(epoll.remove(pair.second.raw).errorCode == nil)
        #expect(epoll.remove(pair.second.raw).errorCode == ENOENT)
        #expect(epoll.wait(into: &buffer, timeoutMilliseconds: 0).errorCode == nil)
        #expect(buffer.count == 0)
    }

    @Test func peerCloseReportsReadHangup() throws {
        let epoll = try Epoll.create().get()
        let pair = try Sys.socketPair(type: SocketType.stream).get()
        let watched = pair.first
        #expect(epoll.add(watched.raw, events: [.input, .readHangup], data: 1).errorCode == nil)
        _ = pair.second.close()
        var buffer = EpollEventBuffer(capacity: 2)
        guard case .success(1) = epoll.wait(into: &buffer, timeoutMilliseconds: 1000) else {
            Issue.record("no hang-up event"); return
        }
        #expect(buffer.events(at: 0).contains(.readHangup))
    }
}

@Suite struct EventLoopTests {
    @Test func tokenPacksKindDescriptorAndData() {
        let t = EventToken(kind: 0xab, fd: 0x12_3456, data: 0xfeed_f00d)
        #expect(t.kind == 0xab && t.fd == 0x12_3456 && t.data == 0xfeed_f00d)
        #expect(EventToken(rawValue: t.rawValue) == t)
        #expect(EventToken(kind: 1, fd: -1).fd == 0xff_ffff)
    }

    @Test func dispatchesEventsWithTokens() throws {
        var loop = try EventLoop(timeSource: .manual, startTime: 0)
        let a = try Sys.socketPair(type: SocketType.stream | SocketType.nonBlocking).get()
        let b = try Sys.socketPair(type: SocketType.stream | SocketType.nonBlocking).get()
        #expect(loop.register(a.second.raw, events: .input, token: EventToken(kind: 1, fd: a.second.raw, data: 10)).errorCode == nil)
        #expect(loop.register(b.second.raw, events: .input, token: EventToken(kind: 2, fd: b.second.raw, data: 20)).errorCode == nil)
        var recorder = Recorder()

        #expect(loop.runOnce(&recorder).errorCode == nil)
        #expect(recorder.events.isEmpty && recorder.iterations == 1)

        _ = [UInt8](repeating: 1, count: 4).withUnsafeBytes { Sys.write(a.first.raw, $0) }
        _ = [UInt8](repeating: 2, count: 4).withUnsafeBytes { Sys.write(b.first.raw, $0) }
        guard case .success(2) = loop.runOnce(&recorder, timeoutMilliseconds: 1000) else {
            Issue.record("expected two events"); return
        }
        let seen = recorder.events.map { "\($0.kind)/\($0.data)/\($0.fd == ($0.kind == 1 ? a.second.raw : b.second.raw))" }.sorted()
        #expect(seen == ["1/10/true", "2/20/true"])
        #expect(recorder.events.allSatisfy { $0.events == .input })

        // Handled (read dry): level-triggered epoll reports nothing more.
        #expect(loop.runOnce(&recorder).errorCode == nil)
        #expect(recorder.events.count == 2 && recorder.iterations == 3)

        #expect(loop.unregister(a.second.raw).errorCode == nil)
        _ = [UInt8](repeating: 1, count: 4).withUnsafeBytes { Sys.write(a.first.raw, $0) }
        #expect(loop.runOnce(&recorder).errorCode == nil)
        #expect(recorder.events.count == 2)
    }

    @Test func timersFireDeterministicallyWithManualClock() throws {
        let second: UInt64 = 1_000_000_000
        var loop = try EventLoop(timeSource: .manual, startTime: 100 * second)
        var recorder = Recorder()
        _ = loop.addPeriodicTimer(every: second, token: EventToken(kind: 0, data: 1))
        _ = loop.addDeadlineTimer(at: 102 * second + second / 2, token: EventToken(kind: 0, data: 2))
        let cancelled = loop.addDeadlineTimer(at: 101 * second, token: EventToken(kind: 0, data: 3))
        loop.cancelTimer(cancelled)
        #expect(loop.nextDeadline == 101 * second)

        _ = loop.runOnce(&recorder)
        #expect(recorder.timers.isEmpty)

        loop.advanceTime(by: second)                 // 101 s: periodic
        _ = loop.runOnce(&recorder)
        loop.advanceTime(by: second / 2)             // 101.5 s: nothing
        _ = loop.runOnce(&recorder)
        loop.advanceTime(by: second)                 // 102.5 s: periodic (due 102) and deadline
        _ = loop.runOnce(&recorder)
        loop.advanceTime(by: 10 * second)            // 112.5 s: one catch-up firing, not ten
        _ = loop.runOnce(&recorder)
        loop.advanceTime(by: second / 2)             // 113 s: not due (rescheduled to 113.5)
        _ = loop.runOnce(&recorder)
        loop.advanceTime(by: second / 2)             // 113.5 s: periodic
        _ = loop.runOnce(&recorder)

        #expect(recorder.timers.map(\.token) == [1, 1, 2, 1, 1])
        #expect(recorder.timers.map(\.at) == [101, 102.5, 102.5, 112.5, 113.5].map { UInt64($0 * 1e9) })
        #expect(recorder.iterations == 7)

        // A fired one-shot slot is reused; stale identifiers no longer cancel it.
        let reused = loop.addDeadlineTimer(at: 200 * second, token: EventToken(kind: 0, data: 4))
        loop.cancelTimer(cancelled)
        #expect(loop.nextDeadline == 114_500_000_000)
        loop.cancelTimer(reused)
        #expect(loop.nextDeadline == 114_500_000_000)
    }

    @Test func runStopsFromTimerWithRealClock() throws {
        var loop = try EventLoop(maxTimeoutMilliseconds: 1000)
        var recorder = Recorder()
        recorder.stopOnTimer = 2
        _ = loop.addPeriodicTimer(every: 2_000_000, token: EventToken(kind: 0, data: 1))
        _ = loop.addDeadlineTimer(at: loop.now + 20_000_000, token: EventToken(kind: 0, data: 2))
        let start = SystemClock.monotonicNanoseconds()
        let result = loop.run(&recorder)
        #expect(result.errorCode == nil)
        let elapsed = SystemClock.monotonicNanoseconds() - start
        let stopped = loop.isStopped
        #expect(stopped)
        #expect(recorder.timers.last?.token == 2)
        #expect(recorder.timers.filter { $0.token == 1 }.count >= 2)
        #expect(elapsed >= 19_000_000 && elapsed < 900_000_000)
    }

    @Test func signalsArriveThroughTheLoop() throws {
        let set = SignalSet([SIGUSR1, SIGUSR2])
        #expect(set.contains(SIGUSR1) && !set.contains(SIGTERM))
        let previous = try Signals.block(set).get()
        defer { _ = Signals.setMask(previous) }

        let signals = try SignalFD.create(set).get()
        var loop = try EventLoop(timeSource: .manual)
        #expect(loop.register(signals.raw, events: .input, token: EventToken(kind: 9, fd: signals.raw)).errorCode == nil)
        var recorder = Recorder()
        recorder.signalFD = signals.raw

        // raise() targets this thread, which blocks both signals: they queue for the signalfd.
        #expect(raise(SIGUSR1) == 0)
        #expect(raise(SIGUSR2) == 0)
        let result = loop.run(&recorder)
        #expect(result.errorCode == nil)
        #expect(recorder.signals.sorted() == [SIGUSR1, SIGUSR2].sorted())
        guard case .wouldBlock = signals.read() else { Issue.record("signal left pending"); return }
    }
}
