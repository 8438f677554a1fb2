// The trainer's collectives over MPI: gradients go through LeffaDistributed's bucketed reducer
// (a communication thread all-reduces each bucket as soon as backward has finished its
// parameters), the rest through the context's blocking collectives.
import Foundation
import LeffaTensor
import LeffaDistributed
import LeffaLayers

public final class MPICollective: Collective {
    public let context: MPIContext
    let reducer: GradientReducer
    /// Seconds waited for gradients in the last step.
    public private(set) var lastWait = 0.0

    /// Parameter indices the reducer covers (those that train); gradientReady(i) maps i into it.
    let reduced: Range<Int>

    /// Reduces the gradients of the parameters that require them (frozen ones have none to
    /// average: the VAE, a reference UNet that does not train), as one contiguous range of the flat
    /// block; all parameters when the trained ones are not contiguous.
    public init(context: MPIContext, parameters: ParameterSet, fixedOrder: Bool, bucketBytes: Int? = nil) throws {
        self.context = context
        let all = parameters.all
        reduced = parameters.trainedRange ?? 0..<all.count
        reducer = try GradientReducer(context: context, gradients: parameters.gradients(of: reduced), parameterSizes: all[reduced].map(\.count),
                                      capBytes: bucketBytes, segments: Self.partSegments(all[reduced].map(\.name)), fixedOrder: fixedOrder)
    }

    /// The parameters split by model part (the name's first component: `unet`, `unet_encoder`), in
    /// registration order: the generative UNet's backward runs before the reference UNet's (whose
    /// gradients arrive through the reference features), so its buckets are ready and reduced
    /// while the reference UNet's backward still runs.
    public static func partSegments(_ names: [String]) -> [Range<Int>] {
        var segments: [Range<Int>] = []
        var start = 0
        func part(_ n: String) -> Substring { n.prefix(while: { $0 != "." }) }
        for i in names.indices.dropFirst() where part(names[i]) != part(names[i - 1]) {
            segments.append(start..<i); start = i
        }
        if !names.isEmpty { segments.append(start..<names.count) }
        return segments
    }
    deinit { reducer.close() }

    public var rank: Int { context.rank }
    public var size: Int { context.size }
    public func gradientReady(_ index: Int) { if reduced.contains(index) { reducer.markReady(index - reduced.lowerBound) } }
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
    public func patiently<T>(_ body: () throws -> T) rethrows -> T {
        let limit = context.watchdogTimeout
        context.watchdogTimeout = .infinity
        defer { context.watchdogTimeout = limit }
        return try body()
    }
    public func verifyIdentical(_ values: Tensor, what: String) throws { try context.verifyIdentical(values, what: what) }
    public func verifyIdentical(_ text: String, what: String) throws { try context.verifyIdentical(text, what: what) }
}
