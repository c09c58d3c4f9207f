// The deadlines of TCP connection timers, earliest first, for the one timerfd they share.
//
// Theory of operation: a binary min-heap of slot numbers keyed by deadline (monotonic ns).
// `entries[0..<count]` keeps the heap order (a parent's deadline is never later than its
// children's; ties in any order), so the earliest deadline is `entries[0]`. `positions[slot]`
// is the slot's index in `entries` plus one (0: not scheduled), so moving or removing one
// slot's deadline is a sift of O(log n) steps without a search. Each slot is in the heap at
// most once. Storage for `capacity` slots is allocated once with calloc (pages never touched
// cost nothing); no operation allocates.
#if canImport(Glibc)
import Glibc
#endif

/// Slots ordered by deadline, with O(log n) scheduling, moving and removal.
struct DeadlineHeap: ~Copyable {
    /// One scheduled slot.
    struct Entry {
        var deadline: UInt64
        var slot: Int32
    }

    /// The heap, `count` entries long.
    let entries: UnsafeMutablePointer<Entry>
    /// Per slot: its index in `entries` plus one, 0 when not scheduled.
    let positions: UnsafeMutablePointer<Int32>
    /// Scheduled slots.
    private(set) var count = 0
    /// Slots numbered 0..<capacity can be scheduled.
    let capacity: Int

    /// Room for slots 0..<`capacity`.
    init(capacity: Int) {
        let heap = calloc(max(capacity, 1), MemoryLayout<Entry>.stride)
        let index = calloc(max(capacity, 1), MemoryLayout<Int32>.stride)
        precondition(heap != nil && index != nil, "Can't allocate the timer heap")
        entries = heap!.bindMemory(to: Entry.self, capacity: capacity)
        positions = index!.bindMemory(to: Int32.self, capacity: capacity)
        self.capacity = capacity
    }

    deinit {
        free(entries)
        free(positions)
    }

    /// The earliest deadline, nil when nothing is scheduled.
    var earliest: UInt64? { count > 0 ? entries[0].deadline : nil }

    /// `slot`'s deadline, nil when it is not scheduled.
    func deadline(of slot: Int) -> UInt64? {
        let position = Int(positions[slot])
        return position == 0 ? nil : entries[position - 1].deadline
    }

    /// Schedules `slot` for `deadline`, moving it if it was scheduled already.
    mutating func schedule(_ slot: Int, at deadline: UInt64) {
        let position = Int(positions[slot])
        if position == 0 {
            entries[count] = Entry(deadline: deadline, slot: Int32(slot))
            count += 1
            siftUp(count - 1)
            return
        }
        let index = position - 1
        let earlier = deadline < entries[index].deadline
        entries[index].deadline = deadline
        if earlier { siftUp(index) } else { siftDown(index) }
    }

    /// Unschedules `slot` (nothing if it was not scheduled).
    mutating func remove(_ slot: Int) {
        let position = Int(positions[slot])
        guard position != 0 else { return }
        positions[slot] = 0
        count -= 1
        let index = position - 1
        guard index != count else { return }
        entries[index] = entries[count]
        if index > 0 && entries[index].deadline < entries[(index - 1) / 2].deadline {
            siftUp(index)
        } else {
            siftDown(index)
        }
    }

    /// Unschedules and returns the slot with the earliest deadline if that is not after `now`.
    mutating func popDue(now: UInt64) -> Int? {
        guard count > 0, entries[0].deadline <= now else { return nil }
        let slot = Int(entries[0].slot)
        remove(slot)
        return slot
    }

    /// Moves the entry at `index` towards the root while its parent is due later.
    private mutating func siftUp(_ index: Int) {
        let moving = entries[index]
        var hole = index
        while hole > 0 {
            let parent = (hole - 1) / 2
            guard moving.deadline < entries[parent].deadline else { break }
            place(entries[parent], at: hole)
            hole = parent
        }
        place(moving, at: hole)
    }

    /// Moves the entry at `index` towards the leaves while a child is due earlier.
    private mutating func siftDown(_ index: Int) {
        let moving = entries[index]
        var hole = index
        while true {
            var child = 2 * hole + 1
            guard child < count else { break }
            if child + 1 < count && entries[child + 1].deadline < entries[child].deadline { child += 1 }
            guard entries[child].deadline < moving.deadline else { break }
            place(entries[child], at: hole)
            hole = child
        }
        place(moving, at: hole)
    }

    /// Stores `entry` at `index` and records its position.
    private mutating func place(_ entry: Entry, at index: Int) {
        entries[index] = entry
        positions[Int(entry.slot)] = Int32(index + 1)
    }
}
