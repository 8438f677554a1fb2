// The trainer's collectives over MPI: gradients go through LeffaDistributed's bucketed reducer
// (a communication thread all-reduces each bucket as soon as backward has finished its
// parameters), the rest through the context's blocking collectives.
import Foundation
import LeffaTensor
import LeffaDistributed

public final class MPICollective: Collective {
    public let context: MPIContext
    let reducer: GradientReducer
    /// Seconds waited for gradients in the last step.
    public private(set) var lastWait = 0.0

    /// `gradients` is the flat gradient block; `sizes` the parameters' element counts in order.
    public init(context: MPIContext, gradients: Tensor, sizes: [Int], fixedOrder: Bool, bucketBytes: Int? = nil) throws {
        self.context = context
        reducer = try GradientReducer(context: context, gradients: gradients, parameterSizes: sizes, capBytes: bucketBytes, fixedOrder: fixedOrder)
    }
    deinit { reducer.close() }

    public var rank: Int { context.rank }
    public var size: Int { context.size }
    public func gradientReady(_ index: Int) { reducer.markReady(index) }
    public func finishGradients() -> Double { lastWait = reducer.finish().waitSeconds; return lastWait }
    public func sumGradientsInRankOrder() -> Double {
        precondition(reducer.fixedOrder, "sumGradientsInRankOrder needs a reducer made with fixedOrder")
        return reducer.reduceAll(average: false).waitSeconds
    }
    public func allReduceSum(_ values: [Double]) -> [Double] {
        var v = values
        context.allreduce(&v)
        return v
    }
    public func barrier() { context.barrier() }
    public func verifyIdentical(_ values: Tensor, what: String) throws { try context.verifyIdentical(values, what: what) }
    public func verifyIdentical(_ text: String, what: String) throws { try context.verifyIdentical(text, what: what) }
}
