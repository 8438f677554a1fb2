// The node's one copy of the training state: the weights, the two Adam moments and the EMA as
// flat blocks in a shared-memory window (SharedWindow.swift) that node rank 0 allocates whole and
// every rank of the node maps. Every rank reads all of it (forward and backward read the weights
// where they are); each rank writes only its shard (`shard`): the optimizer step of its slice of
// the gradients, the EMA of the same elements. `publish` then makes every shard visible to the
// node, so no rank copies anyone's values (ZeRO stage 1 with one copy of the weights per node
// instead of one per rank).
//
// Memory per node: the state once (weights + m + v + EMA = 4 blocks) instead of once per rank;
// the gradients stay one block per rank (SharedBlocks, or each rank's own with MPI buckets).
// Across nodes each node holds its own copy, and node rank k updates shard k identically on
// every node: the gradients it reads are the same bits everywhere. Nodes may differ in size.
// Rank 0 reads the whole state for a checkpoint straight from its node's copy, and one rank per
// node (`loads`) writes it when a checkpoint is restored.
import Foundation
import LeffaTensor

public final class SharedState {
    public let context: MPIContext
    /// Floats in each block, and the number of blocks.
    public let count: Int, blocks: Int
    /// This rank's index among the ranks of its node, and their number.
    public var nodeRank: Int { window.nodeRank }
    public var nodeSize: Int { window.nodeSize }
    /// True on the node's first rank: the one that writes the whole state when it is loaded.
    public var loads: Bool { nodeRank == 0 }
    private let window: SharedWindow

    /// Why the node's ranks cannot keep one copy of `blocks` blocks of `count` floats, or nil when
    /// they can. Collective.
    public static func unavailableReason(context: MPIContext, count: Int, blocks: Int) -> String? {
        guard context.isDistributed && context.size > 1 else { return "one rank has nothing to share" }
        let most = context.allreduce(Int64(SharedWindow.ranksPerNode(context)), .max)
        if most == 1 { return "every node runs one rank" }
        return SharedWindow.roomReason(
            context: context, bytes: Double(count) * 4 * Double(blocks), what: "the node's \(blocks) state blocks")
    }

    /// Allocates `blocks` blocks of `count` floats once per node. Their contents are undefined
    /// until written: every rank writes its shard first (its pages then sit on its NUMA node).
    /// Collective; check `unavailableReason` first.
    public init(context: MPIContext, count: Int, blocks: Int) throws {
        self.context = context
        self.count = count
        self.blocks = blocks
        let bytes = max(count, 1) * blocks * MemoryLayout<Float>.stride
        window = try SharedWindow(context: context, bytes: { $0 == 0 ? bytes : 0 }, what: "shared training state")
    }

    /// Block b, the same memory on every rank of the node. The storage keeps this object, and so
    /// the window, alive.
    public func storage(_ b: Int) -> Storage {
        precondition(b >= 0 && b < blocks, "SharedState.storage: no block \(b) of \(blocks)")
        return Storage(borrowing: window.floats(0) + b * count, count: count, owner: self)
    }

    /// This rank's part of every block: its slice of `trained` cut as the gradient reduction cuts
    /// it (`grain`), the first rank's reaching down to the block's start and the last rank's up
    /// to its end, so the shards cover the whole block (the parameters around the trained ones
    /// still move their EMA).
    public func shard(of trained: Range<Int>, grain: Int) -> Range<Int> {
        Self.shard(nodeRank, of: nodeSize, trained: trained, count: count, grain: grain)
    }

    /// Shard k of `n` over a block of `count` floats (see `shard(of:grain:)`).
    public static func shard(_ k: Int, of n: Int, trained: Range<Int>, count: Int, grain: Int) -> Range<Int> {
        let s = SharedWindow.slice(k, of: n, trained, grain: grain)
        return (k == 0 ? 0 : s.lowerBound)..<(k == n - 1 ? count : s.upperBound)
    }

    /// Every rank's writes to its shard are visible to the node's other ranks once all are here.
    /// Collective over the node.
    public func publish(_ what: String = "training state written") { window.sync(what) }

    /// Element-wise sums over the node's ranks (each shard's partial results, zero elsewhere).
    public func sumOverNode(_ values: [Double]) -> [Double] {
        var v = values
        window.sumOverNode(&v, what: "\(values.count) doubles over the node's ranks")
        return v
    }
}
