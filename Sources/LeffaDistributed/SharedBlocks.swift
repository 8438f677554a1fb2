// Gradient averaging through shared memory, for ranks that share one node. Every rank's flat
// gradient block lives in one shared-memory window (SharedWindow.swift). A rank reads its peers'
// gradients where their backward wrote them: no messages, no copies into and out of MPI's
// buffers. A range R of the blocks is cut into one slice per rank (`slice`).
//
// The reduction of gradient range R:
//   1. sync: every rank has finished backward;
//   2. reduce-scatter in place: rank r writes slice r of its own gradient block,
//          g_r[i] = (((g_0[i] + g_1[i]) + g_2[i]) + … + g_{N−1}[i]) / N     (OrderedSum.sum)
//      while reading slice r of the others. Each rank writes only its own slice of its own block
//      and reads only other slices of other blocks, so no two ranks touch the same element;
//   3. (unless the optimizer step is sharded) sync, then all-gather: rank r copies slice k of
//      rank k's block into its own, for every k ≠ r;
//   4. sync: no rank writes its block again (the next step's zeroing) while a peer still reads it.
// A sharded optimizer step (ZeRO stage 1: PyTorch's ZeroRedundancyOptimizer, DeepSpeed) stops
// after 2: rank r updates slice r of the node's one copy of the weights, moments and EMA
// (SharedState.swift), reading the averaged gradients from slice r of its own block.
//
// WHY next to the bucketed, overlapped reducer (GradientReducer.swift):
//  - It moves less memory. Per rank and step the reduction reads 1.5 blocks and writes 1 (1 and
//    0.5 when sharded); OpenMPI's shared-memory all-reduce copies each message into a shared
//    buffer and out again, then adds. On 2 ranks × 1 thread of the `small` model (272 MB of
//    gradients) the overlapped MPI reduction cost 3–5 % of the step.
//  - Overlap cannot hide it. The reduction is memory-bound CPU work, and on one node it runs on the
//    same cores as backward: a communication thread only moves the work around.
//  - It is the fixed order for free. Every element is summed in rank order, so results are
//    identical bit for bit on every rank, at any thread count, and between runs.
// Across nodes (hierarchical, as Horovod's HOROVOD_HIERARCHICAL_ALLREDUCE): shared memory reaches
// only the ranks of one node, so step 2 sums without dividing, the ranks with the same local index
// on every node all-reduce their slice over MPI (each node sends 1/L of the gradients, L its
// rank count), and then divide by the world size. Every node must hold the same number of ranks.
// The sum is then ((g_0 + g_1) + (g_2 + g_3)) for 2 nodes of 2, not rank order: MPICollective uses
// buckets for the fixed order across nodes, and picks this path across nodes only when asked
// (its benefit over the overlapped buckets depends on the network, and is not measured here).
import CMPI
import Foundation
import LeffaTensor

public final class SharedBlocks {
    public let context: MPIContext
    /// Floats in each rank's block.
    public let count: Int
    /// Slices are cut at multiples of this many floats from a range's start (16: a cache line).
    public let grain: Int
    /// This rank's gradient block, in the window: give it to the parameters. It keeps this object,
    /// and so the window, alive; this object does not keep it (that cycle would never free the window).
    public var block: Storage { Storage(borrowing: peers[nodeRank], count: count, owner: self) }
    /// This rank's index among the ranks of its node, their number, and the number of nodes.
    public var nodeRank: Int { window.nodeRank }
    public var nodeSize: Int { window.nodeSize }
    public let nodes: Int
    private let window: SharedWindow
    /// The node's blocks, in node-rank order (peers[nodeRank] is this rank's).
    private let peers: [UnsafeMutablePointer<Float>]
    /// The ranks with this rank's node index on every node (nil on one node).
    private var cross: MPI_Comm? = nil

    /// Why ranks cannot share their gradients here, or nil when they can: all ranks on one node
    /// (or, with `acrossNodes`, the same number of ranks on every node), and room in the
    /// directory backing the windows for every rank's block plus `stateBlocks` blocks per node
    /// (SharedState). Collective.
    public static func unavailableReason(
        context: MPIContext, count: Int, stateBlocks: Int = 0, acrossNodes: Bool = false
    ) -> String? {
        guard context.isDistributed && context.size > 1 else { return "one rank has nothing to share" }
        let perNode = SharedWindow.ranksPerNode(context)
        // Every rank sees the same answer.
        var sizes = [Int64(perNode), -Int64(perNode)]
        context.allreduce(&sizes, .min)
        let fewest = Int(sizes[0]), most = Int(-sizes[1])
        if fewest == context.size {
            // One node.
        } else if !acrossNodes {
            return "the \(context.size) ranks span several nodes (shared memory only reaches ranks on one node)"
        } else if fewest != most || context.size % fewest != 0 {
            return
                "nodes hold different numbers of ranks (\(fewest) to \(most)); the hierarchical reduction needs the same number on every node"
        }
        let what =
            "\(perNode) ranks' gradient blocks" + (stateBlocks > 0 ? " and the node's \(stateBlocks) state blocks" : "")
        return SharedWindow.roomReason(
            context: context, bytes: Double(count) * 4 * Double(perNode + stateBlocks), what: what)
    }

    /// Allocates every rank's block of `count` floats (zeroed) in one shared window. Collective;
    /// check `unavailableReason` first. `keepingAlive` is freed only after this window.
    public init(context: MPIContext, count: Int, grain: Int = 16, keepingAlive other: AnyObject? = nil) throws {
        precondition(context.isDistributed && grain >= 1, "SharedBlocks needs MPI ranks (see unavailableReason)")
        self.context = context
        self.count = count
        self.grain = grain
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        let w = try SharedWindow(
            context: context, bytes: { _ in bytes }, what: "shared gradient blocks", keepingAlive: other)
        window = w
        peers = (0..<w.nodeSize).map { w.floats($0) }
        nodes = context.size / w.nodeSize
        precondition(
            nodes * w.nodeSize == context.size,
            "SharedBlocks: nodes hold different numbers of ranks (see unavailableReason)")
        if nodes > 1 {
            var c: MPI_Comm? = nil
            context.call("MPI_Comm_split(shared blocks across nodes)") {
                MPI_Comm_split(context.world, Int32(w.nodeRank), Int32(context.rank), &c)
            }
            cross = c
        }
        peers[nodeRank].update(repeating: 0, count: max(count, 1))
        window.sync("allocate")
    }

    /// Frees the communicator across nodes (the window frees itself). Collective, as the window's.
    deinit {
        guard cross != nil, !context.isFinalized else { return }
        context.call("MPI_Comm_free(shared blocks across nodes)") { MPI_Comm_free(&cross) }
    }

    /// The slice of `range` that node rank k reduces: one of the node's near-equal parts.
    public func slice(_ k: Int, of range: Range<Int>) -> Range<Int> { window.slice(k, of: range, grain: grain) }

    /// This rank's slice: what it reduces, and updates in a sharded step.
    public func mySlice(of range: Range<Int>) -> Range<Int> { slice(nodeRank, of: range) }

    /// Replaces gradient elements `range` of every rank by their average over ranks (or their sum,
    /// `average: false`), added in rank order on one node (hierarchically across nodes, see
    /// above). With `gather: false` each rank holds the result only in its own slice of the
    /// range. Collective; every rank passes the same range.
    @discardableResult
    public func reduce(_ range: Range<Int>, average: Bool = true, gather: Bool = true) -> ReduceTiming {
        precondition(
            range.lowerBound >= 0 && range.upperBound <= count,
            "SharedBlocks.reduce: \(range) outside blocks of \(count)")
        let t0 = monotonicSeconds()
        let n = nodeSize, r = nodeRank
        window.sync("backward finished")
        let mine = slice(r, of: range)
        let out = peers[r] + mine.lowerBound
        if !mine.isEmpty {
            OrderedSum.sum(
                parts: (0..<n).map { UnsafePointer(peers[$0] + mine.lowerBound) }, count: mine.count,
                into: out, dividingBy: average && nodes == 1 ? n : nil)
        }
        if nodes > 1 {
            // Every node's sum of this slice, then the average over all ranks.
            context.rawAllreduce(
                UnsafeMutableRawPointer(out), count: mine.count, type: .float, op: .sum, comm: cross,
                what: "MPI_Allreduce(slice \(r) of the gradients across \(nodes) nodes, \(mine.count) floats)")
            if average { OrderedSum.divide(out, count: mine.count, by: context.size) }
        }
        if gather { self.gather(range) } else { window.sync("reduce-scatter") }
        let dt = monotonicSeconds() - t0
        var t = ReduceTiming()
        t.waitSeconds = dt; t.commSeconds = dt; t.spanSeconds = dt
        t.buckets = 1
        t.bytes = range.count * MemoryLayout<Float>.stride
        return t
    }

    /// Every rank's slice of `range` into every rank's block, after each rank has reduced only its
    /// own. Collective.
    func gather(_ range: Range<Int>) {
        let n = nodeSize, r = nodeRank
        window.sync("reduce-scatter")
        for k in 0..<n where k != r {
            let s = slice(k, of: range)
            let src = peers[k] + s.lowerBound, dst = peers[r] + s.lowerBound
            Parallel.for(s.count, grain: 1 << 16) { part in
                (dst + part.lowerBound).update(from: src + part.lowerBound, count: part.count)
            }
        }
        window.sync("all-gather")
    }
}
