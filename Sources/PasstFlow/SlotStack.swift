// Connection slots of a fixed table, handed out and given back, and the epoll token payloads
// that name them.
//
// Theory of operation: TCP and spliced connections live in fixed arrays indexed by slot; free
// slots are a stack (the last one given back is the next one handed out), and slots never used
// yet come after those. One epoll wake-up returns a batch of events; handling an early one may
// close a connection and open another, which can get the same slot (the stack) and the same
// descriptor number (the kernel hands out the lowest free one), while the old connection's
// events wait further down the batch. So every slot has a generation, moved on each time the
// slot is handed out, and a token payload carries it beside the slot: an event whose payload is
// not the slot's current one belongs to a connection that is gone and is ignored. Payload bits:
// slot in the low 20 (at most 1,048,576 slots), one bit the owner may use (a spliced
// connection's side), the generation in the high 11 (a stale event would need the slot reused
// 2,048 times within one wake-up to match).
#if canImport(Glibc)
import Glibc
#endif

/// Free and never-used slots of a table of `capacity`, with a generation per slot.
struct SlotStack: ~Copyable {
    /// Slots in the table.
    let capacity: Int
    /// Slots handed out at least once: every slot in use is below this.
    private(set) var neverUsed = 0
    /// Slots given back, a stack of `freeCount`.
    private let freeSlots: UnsafeMutablePointer<Int32>
    private var freeCount = 0
    /// Per slot, how many times it was handed out (mod 2,048).
    private let generations: UnsafeMutablePointer<UInt16>

    static let slotBits = 20
    static let slotMask = (1 << slotBits) - 1
    static let generationMask: UInt16 = (1 << 11) - 1

    /// Room for `capacity` slots (at most 2^20).
    init(capacity: Int) {
        precondition(capacity > 0 && capacity <= SlotStack.slotMask + 1)
        let stack = malloc(capacity * MemoryLayout<Int32>.stride)
        let counts = calloc(capacity, MemoryLayout<UInt16>.stride)
        precondition(stack != nil && counts != nil, "Can't allocate the slot table")
        freeSlots = stack!.bindMemory(to: Int32.self, capacity: capacity)
        generations = counts!.bindMemory(to: UInt16.self, capacity: capacity)
        self.capacity = capacity
    }

    deinit {
        free(freeSlots)
        free(generations)
    }

    /// A free slot in a new generation, nil if the table is full.
    mutating func allocate() -> Int? {
        let slot: Int
        if freeCount > 0 {
            freeCount -= 1
            slot = Int(freeSlots[freeCount])
        } else {
            guard neverUsed < capacity else { return nil }
            neverUsed += 1
            slot = neverUsed - 1
        }
        generations[slot] = (generations[slot] &+ 1) & SlotStack.generationMask
        return slot
    }

    /// Gives `slot` back.
    mutating func release(_ slot: Int) {
        freeSlots[freeCount] = Int32(slot)
        freeCount += 1
    }

    /// The token payload of `slot` in its current generation, with owner bit `bit` (0 or 1).
    func tokenData(_ slot: Int, bit: Int = 0) -> UInt32 {
        UInt32(slot) | UInt32(bit) << SlotStack.slotBits | UInt32(generations[slot]) << (SlotStack.slotBits + 1)
    }

    /// The slot and owner bit a token payload names, nil unless the slot was handed out and is
    /// still in the generation the payload carries (the caller checks that it is in use).
    func decode(_ data: UInt32) -> (slot: Int, bit: Int)? {
        let slot = Int(data) & SlotStack.slotMask
        let bit = Int(data >> SlotStack.slotBits) & 1
        guard slot < neverUsed, tokenData(slot, bit: bit) == data else { return nil }
        return (slot, bit)
    }
}
