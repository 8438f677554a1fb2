// What the trainer needs from the processes it runs with: a rank, a size, the gradient average
// over ranks (started per parameter as backward finishes it, finished before the optimizer step),
// small sums, a barrier and start-up consistency checks. One process needs none of it; MPI is in
// MPICollective.swift.
import LeffaTensor

public protocol Collective: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// Parameter `index` (registration order) has its final gradient for this step.
    func gradientReady(_ index: Int)
    /// Waits until the gradient block holds the average over ranks; returns the seconds spent waiting.
    func finishGradients() -> Double
    /// Replaces the gradient block by its sum over ranks, added left to right in rank order (not
    /// averaged, not overlapped): the fixed-order reduction. Returns the seconds spent.
    func sumGradientsInRankOrder() -> Double
    /// The elements of the flat blocks this rank updates in the optimizer step when the step is
    /// sharded over ranks (ZeRO stage 1): finishGradients() then leaves the averaged gradient only
    /// there, and gatherShards() brings the rest of the values. nil: every rank updates everything.
    var optimizerShard: Range<Int>? { get }
    /// With a sharded step: the sum of one double per shard (each rank's value for its shard,
    /// each shard counted once), added in rank order: the same bits on every rank.
    func sumOverShards(_ value: Double) -> Double
    /// After a sharded optimizer step: the other ranks' slices of the values, and with `moments`
    /// of the Adam moments too (before a checkpoint), into this rank's blocks.
    func gatherShards(moments: Bool)
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

/// A single process: every collective is the identity.
public final class SingleProcess: Collective {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func gradientReady(_ index: Int) {}
    public func finishGradients() -> Double { 0 }
    public func sumGradientsInRankOrder() -> Double { 0 }
    public var optimizerShard: Range<Int>? { nil }
    public func sumOverShards(_ value: Double) -> Double { value }
    public func gatherShards(moments: Bool) {}
    public func allReduceSum(_ values: [Double]) -> [Double] { values }
    public func barrier() {}
    public func patiently<T>(_ body: () throws -> T) rethrows -> T { try body() }
    public func verifyIdentical(_ values: Tensor, what: String) throws {}
    public func verifyIdentical(_ text: String, what: String) throws {}
}
