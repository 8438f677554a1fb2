// What the trainer needs from the processes it runs with: a rank, a size, sums over all ranks and
// a barrier. One process needs none of it; the MPI implementation lives in LeffaDistributed.
import LeffaTensor

public protocol Collective: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// In-place sum over ranks of a float buffer (the gradient block).
    func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int)
    /// Sum over ranks of a few doubles (losses, counters).
    func allReduceSum(_ values: [Double]) -> [Double]
    func barrier()
}

/// A single process: every collective is the identity.
public final class SingleProcess: Collective {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) {}
    public func allReduceSum(_ values: [Double]) -> [Double] { values }
    public func barrier() {}
}
