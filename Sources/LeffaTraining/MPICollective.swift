// The trainer's collectives over MPI. Gradients are averaged in one of two ways (LeffaDistributed):
//  - `shared`: every rank's gradient block lives in one shared-memory window and ranks reduce it
//    in place, each its own slice (SharedBlocks.swift). For ranks on one node. Unless the fixed
//    reduction order is asked for, the optimizer step is sharded too: each rank updates its slice
//    of the values and Adam moments (which then live in the window as well) and copies the
//    other slices of the values from their owners.
//  - `buckets`: a communication thread all-reduces each bucket as soon as backward has finished
//    its parameters, overlapped with the rest of backward (GradientReducer.swift). Works across
//    nodes.
// `auto` (the default) picks shared memory when every rank is on this node and the backing
// directory has room, else buckets. Everything else goes through the context's blocking collectives.
import Foundation
import LeffaTensor
import LeffaDistributed
import LeffaLayers

/// How gradients are averaged over ranks.
public enum GradientReduction: String, CaseIterable, Sendable {
    case auto, shared, buckets

    public static let environmentKey = "LEFFA_REDUCTION"

    /// The one parser of a reduction name, for the environment and every command line alike: any
    /// case (`Buckets`, `SHARED`); anything else is an error naming `source` (the variable or
    /// option it came from) and the valid names.
    public static func parse(_ text: String, source: String) throws -> GradientReduction {
        guard let r = GradientReduction(rawValue: text.lowercased()) else {
            let names = allCases.map(\.rawValue)
            throw DistributedError.setting(name: source, value: text, expected: names.dropLast().joined(separator: ", ") + " or " + names.last!)
        }
        return r
    }

    /// `LEFFA_REDUCTION`, else auto.
    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) throws -> GradientReduction {
        guard let s = env[environmentKey] else { return .auto }
        return try parse(s, source: environmentKey)
    }
}

public final class MPICollective: Collective {
    public let context: MPIContext
    /// What this collective uses: `.shared` or `.buckets`, never `.auto`.
    public let reduction: GradientReduction
    /// Why `auto` did not pick shared memory (nil when it did, or when asked for buckets).
    public let sharedUnavailable: String?
    /// The bucketed reducer (nil with shared memory).
    public let bucketReducer: GradientReducer?
    let shared: SharedBlocks?
    /// This rank's slice of the reduced elements when the optimizer step is sharded.
    public let optimizerShard: Range<Int>?
    /// Seconds waited for gradients in the last step.
    public private(set) var lastWait = 0.0

    /// Parameter indices the reducer covers (those that train); gradientReady(i) maps i into it.
    let reduced: Range<Int>
    /// The same parameters' elements in the flat gradient block.
    let reducedElements: Range<Int>
    public let fixedOrder: Bool

    /// Reduces the gradients of the parameters that require them (frozen ones have none to
    /// average: the VAE, a reference UNet that does not train), as one contiguous range of the flat
    /// block; all parameters when the trained ones are not contiguous. With shared memory the
    /// parameters' gradient block moves into the window, and with `optimizer` (and no fixed order)
    /// so do the values and the moments, for a sharded step. Collective.
    public init(context: MPIContext, parameters: ParameterSet, optimizer: AdamW? = nil, fixedOrder: Bool, bucketBytes: Int? = nil,
                reduction asked: GradientReduction = .auto, segments: Bool = true) throws {
        self.context = context
        self.fixedOrder = fixedOrder
        let all = parameters.all
        reduced = parameters.trainedRange ?? 0..<all.count
        let view = parameters.gradients(of: reduced)
        let lo = reduced.isEmpty ? 0 : all[reduced.lowerBound].offset
        reducedElements = lo..<(lo + view.count)
        var why: String? = nil
        let sharded = optimizer != nil && !fixedOrder
        if asked != .buckets {
            // Across nodes only when asked for, and not for the fixed order (the hierarchical sum
            // is not in rank order).
            why = SharedBlocks.unavailableReason(context: context, count: parameters.count, blocks: sharded ? 4 : 1,
                                                 acrossNodes: asked == .shared && !fixedOrder)
            if asked == .shared, let why, context.size > 1 {
                throw DistributedError.setting(name: "reduction", value: "shared", expected: "ranks that can share memory, but \(why); use auto or buckets"
                                               + (fixedOrder ? " (across nodes, the fixed order needs buckets)" : ""))
            }
        }
        if asked != .buckets && why == nil {
            let blocks = try SharedBlocks(context: context, count: parameters.count, blocks: sharded ? 4 : 1)
            parameters.moveGradients(into: blocks.storage[0])
            if sharded, let optimizer {
                parameters.moveValues(into: blocks.storage[1])
                optimizer.moveMoments(into: blocks.storage[2], blocks.storage[3])
            }
            optimizerShard = sharded ? blocks.mySlice(of: reducedElements) : nil
            shared = blocks
            bucketReducer = nil
            reduction = .shared
        } else {
            optimizerShard = nil
            shared = nil
            bucketReducer = try GradientReducer(context: context, gradients: view, parameterSizes: all[reduced].map(\.count), capBytes: bucketBytes,
                                                segments: segments ? Self.partSegments(all[reduced].map(\.name)) : nil, fixedOrder: fixedOrder)
            reduction = .buckets
        }
        sharedUnavailable = asked == .auto ? why : nil
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
    deinit { bucketReducer?.close() }

    /// One line for the log: how gradients are averaged, and why.
    public var summary: String {
        if context.size == 1 { return "one rank: no gradients to average" }
        switch reduction {
        case .shared:
            let b = shared!, mb = Double(b.count * MemoryLayout<Float>.stride) / 1e6
            let layout = b.nodes == 1 ? "all \(context.size) ranks on one node" : "\(b.nodes) nodes of \(b.nodeSize) ranks, then MPI across nodes"
            return "gradients averaged in shared memory (\(layout); \(b.blocks) × \(Int(mb.rounded())) MB per rank)"
                + (optimizerShard != nil ? ", optimizer step sharded over the ranks" : "")
        default:
            let n = bucketReducer?.buckets.count ?? 0
            return "gradients averaged in \(n) overlapped MPI buckets" + (sharedUnavailable.map { " (not shared memory: \($0))" } ?? "")
        }
    }

    public var rank: Int { context.rank }
    public var size: Int { context.size }
    public func gradientReady(_ index: Int) {
        if let bucketReducer, reduced.contains(index) { bucketReducer.markReady(index - reduced.lowerBound) }
    }
    public func finishGradients() -> Double {
        lastWait = shared?.reduce(reducedElements, gather: optimizerShard == nil).waitSeconds ?? bucketReducer!.finish().waitSeconds
        return lastWait
    }
    public func sumOverShards(_ value: Double) -> Double {
        // Across nodes, the ranks holding the same slice on other nodes contribute nothing.
        let mine = shared?.countsItsSlice == false ? 0 : value
        return context.allgather([mine]).reduce(0, +)   // left to right from rank 0 on every rank
    }
    public func gatherShards(moments: Bool) {
        guard let shared, optimizerShard != nil else { return }
        for b in moments ? [1, 2, 3] : [1] { shared.gather(block: b, reducedElements) }
    }
    /// The shared-memory reduction adds in rank order on one node; the bucketed one needs fixedOrder.
    public func sumGradientsInRankOrder() -> Double {
        if let shared {
            precondition(shared.nodes == 1, "the rank-order sum through shared memory needs one node (MPICollective picks buckets for the fixed order across nodes)")
            return shared.reduce(reducedElements, average: false).waitSeconds
        }
        precondition(fixedOrder, "sumGradientsInRankOrder needs a collective made with fixedOrder")
        return bucketReducer!.reduceAll(average: false).waitSeconds
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
