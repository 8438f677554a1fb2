// What the trainer needs from the processes it runs with, in two parts as PyTorch's DDP splits
// them: the transport (rank, size, small sums, a barrier, start-up consistency checks) and the
// gradient reducer (the average over ranks, and where the training state lives: a copy per rank,
// or one per node that the ranks update in shards). One process needs none of it; MPI is in
// MPICollective.swift; what runs when is DataParallel's.
import LeffaTensor
import LeffaRunFormat

/// The transport: who this process is, and small collectives over the processes (a few counters
/// or losses, a barrier, start-up checks). MPI or nothing.
public protocol Transport: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// Rank 0's values on every rank.
    func broadcast(_ values: [Int64]) -> [Int64]
    /// Sum over ranks of a few doubles (losses, counters).
    func allReduceSum(_ values: [Double]) -> [Double]
    func barrier()
    /// Runs `body` with the collectives' watchdog off on this rank: for phases where ranks wait,
    /// on purpose and for as long as it takes, on work of others (rank 0 writing a checkpoint or a
    /// snapshot, validation sampling). Every rank must enter it together; the coordinator's
    /// heartbeat timeout still watches the job meanwhile.
    func patiently<T>(_ body: () throws -> T) rethrows -> T
    /// Throws, naming the ranks, unless every rank holds the same bytes.
    func verifyIdentical(_ values: Tensor, what: String) throws
    func verifyIdentical(_ text: String, what: String) throws
}

/// The reducer: the gradient block averaged over ranks (started per parameter as backward
/// finishes it, finished before the optimizer step), and where the training state lives.
/// DataParallel drives it.
public protocol GradientReducing: AnyObject {
    /// Parameter `index` (registration order) has its final gradient for this step.
    func gradientReady(_ index: Int)
    /// Waits until the gradient block holds the average over ranks; returns the seconds spent waiting.
    func finishGradients() -> Double
    /// Replaces the gradient block by its sum over ranks, added left to right in rank order (not
    /// averaged, not overlapped): the fixed-order reduction. Returns the seconds spent.
    func sumGradientsInRankOrder() -> Double
    /// The node's one copy of the training state when ranks share it (ZeRO stage 1, see
    /// SharedState.swift): the moments' and EMA's memory and this rank's shard. finishGradients()
    /// then leaves the averaged gradients only in the shard, and the optimizer step updates only
    /// the shard. nil: this rank holds and updates the whole state.
    var sharedState: SharedTrainingState? { get }
    /// With a shared state: the sums over ranks of each rank's list (each element nonzero on one
    /// rank, so exact), the same bits on every rank.
    func sumOverShards(_ values: [Double]) -> [Double]
    /// With a shared state: after each rank wrote its shard, every shard is visible to every rank
    /// sharing the state. Returns the seconds spent waiting for them.
    @discardableResult
    func publishState() -> Double
}

/// What the trainer runs with: a transport and the gradient reducer on top of it.
public typealias Collective = Transport & GradientReducing

/// The memory of the Adam moments and the EMA when the ranks of a node keep one copy of the
/// training state (the weights are already in it: the parameters point there), and the part of
/// every block this rank writes.
public struct SharedTrainingState {
    public let m: Storage, v: Storage
    /// Present when the collective was asked for an EMA.
    public let ema: Storage?
    /// The elements this rank updates (weights, moments, EMA), and swaps for validation.
    public let shard: Range<Int>
    /// True on one rank per node: the one that writes the whole state when a checkpoint is loaded.
    public let loads: Bool
}

/// A single process: every collective is the identity.
public final class SingleProcess: Collective {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func gradientReady(_ index: Int) {}
    public func finishGradients() -> Double { 0 }
    public func sumGradientsInRankOrder() -> Double { 0 }
    public var sharedState: SharedTrainingState? { nil }
    public func sumOverShards(_ values: [Double]) -> [Double] { values }
    public func publishState() -> Double { 0 }
    public func broadcast(_ values: [Int64]) -> [Int64] { values }
    public func allReduceSum(_ values: [Double]) -> [Double] { values }
    public func barrier() {}
    public func patiently<T>(_ body: () throws -> T) rethrows -> T { try body() }
    public func verifyIdentical(_ values: Tensor, what: String) throws {}
    public func verifyIdentical(_ text: String, what: String) throws {}
}
