// The heap of TCP timer deadlines against a plain model: a dictionary of slot -> deadline whose
// minimum is found by a linear scan.
import Testing
@testable import PasstFlow

@Suite("Deadline heap")
struct DeadlineHeapTests {
    /// Checks `heap` against `model`: same slots and deadlines, earliest first, positions intact.
    static func check(_ heap: borrowing DeadlineHeap, _ model: [Int: UInt64], capacity: Int) {
        #expect(heap.count == model.count)
        #expect(heap.earliest == model.values.min())
        for slot in 0..<capacity { #expect(heap.deadline(of: slot) == model[slot]) }
        for index in 1..<max(heap.count, 1) {
            #expect(heap.entries[(index - 1) / 2].deadline <= heap.entries[index].deadline, "heap order at \(index)")
        }
    }

    @Test("Scheduling, moving earlier and later, removing and popping agree with a linear scan")
    func randomOperations() {
        let capacity = 48
        var heap = DeadlineHeap(capacity: capacity)
        var model: [Int: UInt64] = [:]
        // A fixed linear congruential sequence, so a failure repeats.
        var state: UInt64 = 0x5eed
        func random(_ bound: UInt64) -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return (state >> 33) % bound
        }
        var now: UInt64 = 1_000
        for step in 0..<20_000 {
            let slot = Int(random(UInt64(capacity)))
            switch random(8) {
            case 0...3:
                // Few distinct values, so ties are common.
                let deadline = now + random(64)
                heap.schedule(slot, at: deadline)
                model[slot] = deadline
            case 4, 5:
                heap.remove(slot)
                model[slot] = nil
            default:
                now += random(8)
                while let popped = heap.popDue(now: now) {
                    let deadline = model.removeValue(forKey: popped)
                    #expect(deadline != nil && deadline! <= now, "popped \(popped) at step \(step)")
                    #expect(model.values.allSatisfy { $0 >= deadline! }, "popped out of order at step \(step)")
                }
                #expect(model.values.allSatisfy { $0 > now }, "a due slot stayed in at step \(step)")
            }
            if step % 97 == 0 { DeadlineHeapTests.check(heap, model, capacity: capacity) }
        }
        DeadlineHeapTests.check(heap, model, capacity: capacity)
    }

    @Test("Removing the last entry, the root and an inner entry keeps the others in order")
    func removals() {
        var heap = DeadlineHeap(capacity: 8)
        for (slot, deadline) in [(0, 50), (1, 10), (2, 30), (3, 20), (4, 40), (5, 60), (6, 5)] {
            heap.schedule(slot, at: UInt64(deadline))
        }
        heap.remove(6)      // the root
        heap.remove(3)      // inner
        heap.remove(7)      // never scheduled: nothing happens
        heap.schedule(5, at: 1)   // moved to the front
        var order: [Int] = []
        while let slot = heap.popDue(now: 100) { order.append(slot) }
        #expect(order == [5, 1, 2, 4, 0])
        #expect(heap.count == 0 && heap.earliest == nil && heap.popDue(now: .max) == nil)
    }
}
