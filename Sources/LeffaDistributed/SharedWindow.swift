// The ranks of one node and memory they share: one MPI-3 shared-memory window
// (MPI_Win_allocate_shared) over the node's ranks, in which each rank allocates a segment of any
// size (zero included) and addresses every other rank's directly. It holds the per-rank gradient
// blocks (SharedBlocks.swift) and the node's one copy of the training state (SharedState.swift);
// what lives where, and who writes what, is theirs to say.
//
// A node is the ranks that share memory (MPI_Comm_split_type SHARED), or with
// LEFFA_RANKS_PER_NODE=K every K consecutive ranks: how tests run several nodes on one machine.
// Writes become visible to the node's other ranks at `sync`: MPI_Win_sync, MPI_Barrier,
// MPI_Win_sync (MPI-3's unified memory model, under a lock_all epoch that lasts as long as the
// window).
import CMPI
import Foundation
import LeffaTensor

public final class SharedWindow {
    public let context: MPIContext
    /// This rank's index among the ranks of its node, and their number.
    public let nodeRank: Int, nodeSize: Int
    /// The node's ranks (freed with the window).
    private(set) var node: MPI_Comm?
    /// Every node rank's segment as floats (what its users keep there), in node-rank order; nil
    /// where a rank allocated nothing.
    let segments: [UnsafeMutablePointer<Float>?]
    private var window: MPI_Win?
    /// Another window's owner, released only after this window is freed: freeing a window is
    /// collective, so every rank must free two windows in the same order.
    private let keptAlive: AnyObject?

    /// Windows allocated and not yet freed in this process: what a test checks for leaks.
    public static var alive: Int { aliveLock.lock(); defer { aliveLock.unlock() }; return aliveCount }
    nonisolated(unsafe) private static var aliveCount = 0
    private static let aliveLock = NSLock()

    public static let ranksPerNodeKey = "LEFFA_RANKS_PER_NODE"

    /// LEFFA_RANKS_PER_NODE, when it holds a positive number: the test setting that treats every
    /// K consecutive ranks as one node. The one reading of it, for the checks and the split alike.
    static var simulatedNodeSize: Int? {
        ProcessInfo.processInfo.environment[ranksPerNodeKey].flatMap { Int($0) }.flatMap { $0 >= 1 ? $0 : nil }
    }

    /// Ranks per node as this job sees them: the simulated node size when set, else the ranks
    /// sharing this rank's memory.
    static func ranksPerNode(_ context: MPIContext) -> Int {
        if let k = simulatedNodeSize { return min(k, context.size - context.rank / k * k) } // the last group may be smaller
        return context.localSize
    }

    /// Where OpenMPI's shared-memory windows keep their backing files.
    static var backingDirectory: String {
        ProcessInfo.processInfo.environment["OMPI_MCA_osc_sm_backing_directory"] ?? "/dev/shm"
    }

    /// Why the backing directory cannot hold `bytes` more on every node (`what` says whose), or
    /// nil when it can. Collective: every rank gets the same answer.
    static func roomReason(context: MPIContext, bytes need: Double, what: String) -> String? {
        let dir = backingDirectory
        var st = statvfs()
        let free = statvfs(dir, &st) == 0 ? Double(st.f_bavail) * Double(st.f_frsize) : -1
        // Every rank measured the same directory, perhaps while others were allocating: agree.
        let leastFree = context.allreduce(free, .min)
        if leastFree < 0 {
            return
                "cannot read the free space of \(dir) (the shared-memory backing directory; OMPI_MCA_osc_sm_backing_directory sets it)"
        }
        if leastFree < need * 1.05 {
            return String(
                format: "%@ has %.2f GB free; %@ need %.2f GB (enlarge it, e.g. docker run --shm-size, "
                    + "or set OMPI_MCA_osc_sm_backing_directory)", dir, leastFree / 1e9, what, need / 1e9)
        }
        return nil
    }

    /// Allocates `bytes(nodeRank)` bytes for this rank in a window over its node's ranks and maps
    /// every rank's segment; `bytes` gives every node rank's size, the same function on every
    /// rank. Collective over all ranks. `what` names the window in errors; `keepingAlive` is
    /// released after this window is freed.
    init(context: MPIContext, bytes: (Int) -> Int, what: String, keepingAlive other: AnyObject? = nil) throws {
        precondition(context.isDistributed, "SharedWindow needs MPI ranks")
        self.context = context
        keptAlive = other
        var node: MPI_Comm? = nil
        if let k = Self.simulatedNodeSize {
            context.call("MPI_Comm_split(\(Self.ranksPerNodeKey)=\(k), \(what))") {
                MPI_Comm_split(context.world, Int32(context.rank / k), Int32(context.rank), &node)
            }
        } else {
            context.call("MPI_Comm_split_type(\(what))") {
                MPI_Comm_split_type(
                    context.world, leffa_mpi_comm_type_shared(), Int32(context.rank), leffa_mpi_info_null(), &node)
            }
        }
        var nr: Int32 = 0, ns: Int32 = 0
        MPI_Comm_rank(node, &nr)
        MPI_Comm_size(node, &ns)
        nodeRank = Int(nr); nodeSize = Int(ns)
        var info: MPI_Info? = nil
        MPI_Info_create(&info)
        // Each rank's segment starts on its own pages (first touched by that rank: its NUMA node).
        MPI_Info_set(info, "alloc_shared_noncontig", "true")
        var base: UnsafeMutableRawPointer? = nil
        var win: MPI_Win? = nil
        let mine = MPI_Aint(bytes(nodeRank))
        var rc: Int32 = 0
        withUnsafeMutablePointer(to: &base) { bp in
            rc = MPI_Win_allocate_shared(mine, 1, info, node, UnsafeMutableRawPointer(bp), &win)
        }
        MPI_Info_free(&info)
        guard rc == leffa_mpi_success(), let win else {
            MPI_Comm_free(&node)
            throw DistributedError.setup(
                call: "MPI_Win_allocate_shared(\(what): \(mine) bytes in \(Self.backingDirectory))",
                message: mpiErrorString(rc))
        }
        MPI_Win_set_errhandler(win, leffa_mpi_errors_return())
        var segments: [UnsafeMutablePointer<Float>?] = []
        for k in 0..<nodeSize {
            var segBytes: MPI_Aint = 0
            var disp: Int32 = 0
            var p: UnsafeMutableRawPointer? = nil
            context.call("MPI_Win_shared_query(\(what), rank \(k))") {
                withUnsafeMutablePointer(to: &p) {
                    MPI_Win_shared_query(win, Int32(k), &segBytes, &disp, UnsafeMutableRawPointer($0))
                }
            }
            let expected = bytes(k)
            guard expected == 0 || (p != nil && segBytes >= expected) else {
                var w: MPI_Win? = win
                MPI_Win_free(&w)
                MPI_Comm_free(&node)
                throw DistributedError.setup(
                    call: "MPI_Win_shared_query(\(what), rank \(k))",
                    message: "\(segBytes) bytes shared, expected \(expected)")
            }
            segments.append(
                expected == 0 ? nil : p!.bindMemory(to: Float.self, capacity: expected / MemoryLayout<Float>.stride))
        }
        self.segments = segments
        self.node = node
        window = win
        context.call("MPI_Win_lock_all(\(what))") { MPI_Win_lock_all(leffa_mpi_mode_nocheck(), win) }
        Self.aliveLock.lock(); Self.aliveCount += 1; Self.aliveLock.unlock()
    }

    /// Frees the window and the node's communicator. Collective over the node: the trainer
    /// releases its model on every rank at the same point. After MPI_Finalize there is nothing
    /// left to free.
    deinit {
        guard let win = window, !context.isFinalized else { return }
        Self.aliveLock.lock(); Self.aliveCount -= 1; Self.aliveLock.unlock()
        var w: MPI_Win? = win
        context.call("MPI_Win_unlock_all") { MPI_Win_unlock_all(win) }
        context.call("MPI_Win_free") { MPI_Win_free(&w) }
        context.call("MPI_Comm_free(node)") { MPI_Comm_free(&node) }
    }

    /// Node rank k's segment.
    func floats(_ k: Int) -> UnsafeMutablePointer<Float> { segments[k]! }

    /// Part k of the node's near-equal parts of `range`, cut at multiples of `grain` floats from
    /// its start: the slice node rank k reduces, or writes.
    public func slice(_ k: Int, of range: Range<Int>, grain: Int) -> Range<Int> {
        Self.slice(k, of: nodeSize, range, grain: grain)
    }

    /// Part k of `n` near-equal parts of `range`, cut at multiples of `grain` from its start.
    public static func slice(_ k: Int, of n: Int, _ range: Range<Int>, grain: Int) -> Range<Int> {
        func cut(_ j: Int) -> Int {
            if j == n { return range.upperBound }
            return min(range.upperBound, range.lowerBound + (range.count * j / n) / grain * grain)
        }
        return cut(k)..<cut(k + 1)
    }

    /// Everyone's writes to the window are visible to everyone once all of the node's ranks are here.
    func sync(_ what: String) {
        let win = window
        context.call("MPI_Win_sync(\(what))") { MPI_Win_sync(win) }
        context.call("MPI_Barrier(node, \(what))") { MPI_Barrier(node) }
        context.call("MPI_Win_sync(\(what))") { MPI_Win_sync(win) }
    }

    /// Element-wise sum over the node's ranks, in place.
    func sumOverNode(_ values: inout [Double], what: String) {
        values.withUnsafeMutableBufferPointer { b in
            guard let base = b.baseAddress else { return }
            context.rawAllreduce(
                UnsafeMutableRawPointer(base), count: b.count, type: .double, op: .sum, comm: node,
                what: "MPI_Allreduce(\(what))")
        }
    }
}
