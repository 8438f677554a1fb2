// Gradient averaging through shared memory, for ranks that share one node. Every rank's flat
// blocks (the gradients, and for a sharded optimizer step also the values and the two Adam
// moments) live in one MPI-3 shared-memory window (MPI_Win_allocate_shared). A rank reads its
// peers' gradients where their backward wrote them: no messages, no copies into and out of MPI's
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
// after 2: rank r updates only slice r of the values and moments, then `gather` brings the other
// slices of the values (every step) and of the moments (only before a checkpoint).
// A sync is MPI_Win_sync, MPI_Barrier, MPI_Win_sync (MPI-3's unified memory model, under a
// lock_all epoch that lasts as long as the window).
//
// WHY next to the bucketed, overlapped reducer (GradientReducer.swift):
//  - It moves less memory. Per rank and step the reduction reads 1.5 blocks and writes 1 (1 and
//    0.5 when sharded); OpenMPI's shared-memory all-reduce copies each message into a shared
//    buffer and out again, then adds. On 2 ranks × 1 thread of the `small` model (272 MB of
//    gradients) the overlapped MPI reduction cost 3–5 % of the step.
//  - Overlap cannot hide it. The reduction is memory-bound CPU work, and on one node it runs on the
//    same cores as backward: a communication thread only moves the work around.
//  - Sharding the optimizer step halves each rank's AdamW pass (seven streams over the block and
//    a division and a square root per element: 6.4 % of a 1-rank `small` step) for the price of
//    copying the other half of the values.
//  - It is the fixed order for free. Every element is summed in rank order, so results are
//    identical bit for bit on every rank, at any thread count, and between runs.
// Across nodes (hierarchical, as Horovod's HOROVOD_HIERARCHICAL_ALLREDUCE): shared memory reaches
// only the ranks of one node, so step 2 sums without dividing, the ranks with the same local index
// on every node all-reduce their slice over MPI (each node sends 1/L of the gradients, L its
// rank count), and then divide by the world size. Every node must hold the same number of ranks.
// The sum is then ((g_0 + g_1) + (g_2 + g_3)) for 2 nodes of 2, not rank order: MPICollective uses
// buckets for the fixed order across nodes, and picks this path across nodes only when asked
// (its benefit over the overlapped buckets depends on the network, and is not measured here).
// LEFFA_RANKS_PER_NODE=K treats every K consecutive ranks as one node: how tests run the
// hierarchical path on one machine.
import CMPI
import Foundation
import LeffaTensor

public final class SharedBlocks {
    public let context: MPIContext
    /// Floats in each block.
    public let count: Int
    /// Blocks per rank; block 0 holds the gradients.
    public let blocks: Int
    /// This rank's blocks, in the window: give them to their owners (the parameters, the
    /// optimizer). Each keeps this object, and so the window, alive; this object does not keep
    /// them (that cycle would never free the window).
    public var storage: [Storage] { (0..<blocks).map { Storage(borrowing: peers[nodeRank] + $0 * count, count: count, owner: self) } }
    /// Windows allocated and not yet freed in this process: what a test checks for leaks.
    public static var alive: Int { aliveLock.lock(); defer { aliveLock.unlock() }; return aliveCount }
    nonisolated(unsafe) private static var aliveCount = 0
    private static let aliveLock = NSLock()
    /// This rank's index among the ranks of its node, their number, and the number of nodes.
    public let nodeRank: Int, nodeSize: Int, nodes: Int
    /// The node's window segments, in node-rank order (peers[nodeRank] is this rank's).
    private var peers: [UnsafeMutablePointer<Float>] = []
    private var window: MPI_Win? = nil
    private var node: MPI_Comm? = nil
    /// The ranks with this rank's node index on every node (nil on one node).
    private var cross: MPI_Comm? = nil

    public static let ranksPerNodeKey = "LEFFA_RANKS_PER_NODE"

    /// LEFFA_RANKS_PER_NODE, when it holds a positive number: the test setting that treats every
    /// K consecutive ranks as one node. The one reading of it, for the check and the split alike.
    static var simulatedNodeSize: Int? {
        ProcessInfo.processInfo.environment[ranksPerNodeKey].flatMap { Int($0) }.flatMap { $0 >= 1 ? $0 : nil }
    }

    /// Ranks per node as this job sees them: the simulated node size when set, else the ranks
    /// sharing this rank's memory.
    static func ranksPerNode(_ context: MPIContext) -> Int {
        if let k = simulatedNodeSize { return min(k, context.size - context.rank / k * k) }   // the last group may be smaller
        return context.localSize
    }

    /// Why ranks cannot share memory here, or nil when they can: all ranks on one node (or, with
    /// `acrossNodes`, the same number of ranks on every node), and room for every rank's `blocks`
    /// blocks in the directory backing the windows. Collective.
    public static func unavailableReason(context: MPIContext, count: Int, blocks: Int = 1, acrossNodes: Bool = false) -> String? {
        guard context.isDistributed && context.size > 1 else { return "one rank has nothing to share" }
        let perNode = ranksPerNode(context)
        // Every rank sees the same answer.
        var sizes = [Int64(perNode), -Int64(perNode)]
        context.allreduce(&sizes, .min)
        let fewest = Int(sizes[0]), most = Int(-sizes[1])
        if fewest == context.size {
            // One node.
        } else if !acrossNodes {
            return "the \(context.size) ranks span several nodes (shared memory only reaches ranks on one node)"
        } else if fewest != most || context.size % fewest != 0 {
            return "nodes hold different numbers of ranks (\(fewest) to \(most)); the hierarchical reduction needs the same number on every node"
        }
        let dir = backingDirectory
        let need = Double(count) * 4 * Double(blocks) * Double(perNode)
        var st = statvfs()
        let free = statvfs(dir, &st) == 0 ? Double(st.f_bavail) * Double(st.f_frsize) : -1
        // Every rank measured the same directory, perhaps while others were allocating: agree.
        let leastFree = context.allreduce(free, .min)
        if leastFree < 0 { return "cannot read the free space of \(dir) (the shared-memory backing directory; OMPI_MCA_osc_sm_backing_directory sets it)" }
        if leastFree < need * 1.05 {
            return String(format: "%@ has %.2f GB free; %d ranks' %d blocks need %.2f GB (enlarge it, e.g. docker run --shm-size, or set OMPI_MCA_osc_sm_backing_directory)",
                          dir, leastFree / 1e9, perNode, blocks, need / 1e9)
        }
        return nil
    }

    /// Where OpenMPI's shared-memory windows keep their backing files.
    static var backingDirectory: String {
        ProcessInfo.processInfo.environment["OMPI_MCA_osc_sm_backing_directory"] ?? "/dev/shm"
    }

    /// Allocates every rank's `blocks` blocks of `count` floats (zeroed) in one shared window.
    /// Collective; check `unavailableReason` first.
    public init(context: MPIContext, count: Int, blocks: Int = 1) throws {
        precondition(context.isDistributed && blocks >= 1, "SharedBlocks needs MPI ranks (see unavailableReason)")
        self.context = context
        self.count = count
        self.blocks = blocks
        var node: MPI_Comm? = nil
        if let k = Self.simulatedNodeSize {
            context.call("MPI_Comm_split(\(Self.ranksPerNodeKey)=\(k))") { MPI_Comm_split(context.world, Int32(context.rank / k), Int32(context.rank), &node) }
        } else {
            context.call("MPI_Comm_split_type(shared blocks)") {
                MPI_Comm_split_type(context.world, leffa_mpi_comm_type_shared(), Int32(context.rank), leffa_mpi_info_null(), &node)
            }
        }
        self.node = node
        var nr: Int32 = 0, ns: Int32 = 0
        MPI_Comm_rank(node, &nr)
        MPI_Comm_size(node, &ns)
        nodeRank = Int(nr); nodeSize = Int(ns); nodes = context.size / Int(ns)
        precondition(nodes * nodeSize == context.size, "SharedBlocks: nodes hold different numbers of ranks (see unavailableReason)")
        if nodes > 1 {
            var c: MPI_Comm? = nil
            context.call("MPI_Comm_split(shared blocks across nodes)") { MPI_Comm_split(context.world, nr, Int32(context.rank), &c) }
            cross = c
            var cr: Int32 = 0
            MPI_Comm_rank(c, &cr)
            countsItsSlice = cr == 0
        }
        var info: MPI_Info? = nil
        MPI_Info_create(&info)
        // Each rank's segment starts on its own pages (first touched by that rank: its NUMA node).
        MPI_Info_set(info, "alloc_shared_noncontig", "true")
        var base: UnsafeMutableRawPointer? = nil
        var win: MPI_Win? = nil
        let floats = max(count, 1) * blocks
        let bytes = MPI_Aint(floats * MemoryLayout<Float>.stride)
        var rc: Int32 = 0
        withUnsafeMutablePointer(to: &base) { bp in
            rc = MPI_Win_allocate_shared(bytes, Int32(MemoryLayout<Float>.stride), info, node, UnsafeMutableRawPointer(bp), &win)
        }
        MPI_Info_free(&info)
        guard rc == leffa_mpi_success(), let win else {
            throw DistributedError.setup(call: "MPI_Win_allocate_shared(\(bytes) bytes in \(Self.backingDirectory))", message: mpiErrorString(rc))
        }
        window = win
        MPI_Win_set_errhandler(win, leffa_mpi_errors_return())
        for k in 0..<nodeSize {
            var segBytes: MPI_Aint = 0
            var disp: Int32 = 0
            var p: UnsafeMutableRawPointer? = nil
            context.call("MPI_Win_shared_query(rank \(k))") {
                withUnsafeMutablePointer(to: &p) { MPI_Win_shared_query(win, Int32(k), &segBytes, &disp, UnsafeMutableRawPointer($0)) }
            }
            guard let p, segBytes >= bytes else {
                throw DistributedError.setup(call: "MPI_Win_shared_query(rank \(k))", message: "\(segBytes) bytes shared, expected \(bytes)")
            }
            peers.append(p.bindMemory(to: Float.self, capacity: floats))
        }
        context.call("MPI_Win_lock_all(shared blocks)") { MPI_Win_lock_all(leffa_mpi_mode_nocheck(), win) }
        peers[nodeRank].update(repeating: 0, count: floats)
        Self.aliveLock.lock(); Self.aliveCount += 1; Self.aliveLock.unlock()
        sync("allocate")
    }

    /// Frees the window when the last user (this object, the views of the parameters and the
    /// optimizer) lets go. Collective: the trainer releases its model on every rank at the same
    /// point. After MPI_Finalize there is nothing left to free.
    deinit {
        guard let win = window, !context.isFinalized else { return }
        Self.aliveLock.lock(); Self.aliveCount -= 1; Self.aliveLock.unlock()
        var w: MPI_Win? = win
        context.call("MPI_Win_unlock_all(shared blocks)") { MPI_Win_unlock_all(win) }
        context.call("MPI_Win_free(shared blocks)") { MPI_Win_free(&w) }
        context.call("MPI_Comm_free(shared blocks)") { MPI_Comm_free(&node) }
        if cross != nil { context.call("MPI_Comm_free(shared blocks across nodes)") { MPI_Comm_free(&cross) } }
    }

    /// The slice of `range` that node rank k reduces and updates: one of the node's near-equal
    /// parts, cut at 16-float (cache line) boundaries.
    public func slice(_ k: Int, of range: Range<Int>) -> Range<Int> {
        let n = nodeSize
        func cut(_ j: Int) -> Int {
            if j == n { return range.upperBound }
            return min(range.upperBound, range.lowerBound + (range.count * j / n) / 16 * 16)
        }
        return cut(k)..<cut(k + 1)
    }

    private func peer(_ k: Int, block b: Int) -> UnsafeMutablePointer<Float> { peers[k] + b * count }

    /// This rank's slice: what it reduces, and updates in a sharded step.
    public func mySlice(of range: Range<Int>) -> Range<Int> { slice(nodeRank, of: range) }

    /// True for one rank per slice index (the first of those holding it on the nodes): values
    /// from these ranks count every slice of a range once.
    public private(set) var countsItsSlice = true

    /// Replaces gradient elements `range` (block 0) of every rank by their average over ranks (or
    /// their sum, `average: false`), added in rank order on one node (hierarchically across
    /// nodes, see above). With `gather: false` each rank holds the result only in its own slice
    /// of the range. Collective; every rank passes the same range.
    @discardableResult
    public func reduce(_ range: Range<Int>, average: Bool = true, gather: Bool = true) -> ReduceTiming {
        precondition(range.lowerBound >= 0 && range.upperBound <= count, "SharedBlocks.reduce: \(range) outside blocks of \(count)")
        let t0 = monotonicSeconds()
        let n = nodeSize, r = nodeRank
        sync("backward finished")
        let mine = slice(r, of: range)
        let out = peer(r, block: 0) + mine.lowerBound
        if !mine.isEmpty {
            OrderedSum.sum(parts: (0..<n).map { UnsafePointer(peer($0, block: 0) + mine.lowerBound) }, count: mine.count,
                           into: out, dividingBy: average && nodes == 1 ? n : nil)
        }
        if nodes > 1 {
            // Every node's sum of this slice, then the average over all ranks.
            context.rawAllreduce(UnsafeMutableRawPointer(out), count: mine.count, type: .float, op: .sum, comm: cross,
                                 what: "MPI_Allreduce(slice \(r) of the gradients across \(nodes) nodes, \(mine.count) floats)")
            if average { OrderedSum.divide(out, count: mine.count, by: context.size) }
        }
        if gather { self.gather(block: 0, range, finished: "reduce-scatter") } else { sync("reduce-scatter") }
        let dt = monotonicSeconds() - t0
        var t = ReduceTiming()
        t.waitSeconds = dt; t.commSeconds = dt; t.spanSeconds = dt
        t.buckets = 1
        t.bytes = range.count * MemoryLayout<Float>.stride
        return t
    }

    /// Every rank's slice of `range` in block `b` into every rank's block: after each rank has
    /// updated only its own slice. Collective.
    public func gather(block b: Int, _ range: Range<Int>, finished: String = "sharded update") {
        precondition(b >= 0 && b < blocks, "SharedBlocks.gather: no block \(b) of \(blocks)")
        let n = nodeSize, r = nodeRank
        sync(finished)
        for k in 0..<n where k != r {
            let s = slice(k, of: range)
            let src = peer(k, block: b) + s.lowerBound, dst = peer(r, block: b) + s.lowerBound
            Parallel.for(s.count, grain: 1 << 16) { part in
                (dst + part.lowerBound).update(from: src + part.lowerBound, count: part.count)
            }
        }
        sync("all-gather of block \(b)")
    }

    /// Everyone's writes to the window are visible to everyone once all ranks are here.
    private func sync(_ what: String) {
        let win = window
        context.call("MPI_Win_sync(shared blocks, \(what))") { MPI_Win_sync(win) }
        context.call("MPI_Barrier(shared blocks, \(what))") { MPI_Barrier(node) }
        context.call("MPI_Win_sync(shared blocks, \(what))") { MPI_Win_sync(win) }
    }
}
