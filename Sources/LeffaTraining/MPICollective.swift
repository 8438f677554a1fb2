// The trainer's collectives over MPI. Gradients are averaged in one of two ways (LeffaDistributed):
//  - `shared`: every rank's gradient block lives in one shared-memory window and ranks reduce it
//    in place, each its own slice (SharedBlocks.swift). For ranks on one node (across nodes only
//    when asked: hierarchical).
//  - `buckets`: a communication thread all-reduces each bucket as soon as backward has finished
//    its parameters, overlapped with the rest of backward (GradientReducer.swift). Works across
//    nodes.
// `auto` (the default) picks shared memory when every rank is on this node and the backing
// directory has room, else buckets.
// Either way, when asked (`shareState`) and there is room, the ranks of each node keep one copy of
// the training state — weights, Adam moments, EMA — in shared memory (SharedState.swift), and
// each rank updates its shard of it: node memory is the ranks' gradient blocks plus the state
// once, instead of the state once per rank. With shared-memory gradients the shard is the slice
// a rank reduces, so the reduction stops after the reduce-scatter. Shards are cut where the
// gradient norm's chunks end (AdamW.shardGrain), so the step is the same bits as one rank's
// whole step, the fixed order included.
// Everything else goes through the context's blocking collectives.
import Foundation
import LeffaRunFormat
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
            throw DistributedError.setting(
                name: source, value: text, expected: names.dropLast().joined(separator: ", ") + " or " + names.last!)
        }
        return r
    }

    /// `LEFFA_REDUCTION`, else auto.
    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) throws
        -> GradientReduction
    {
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
    /// The node's one copy of the training state (nil: every rank holds its own).
    let state: SharedState?
    public let sharedState: SharedTrainingState?
    /// Why the state was asked to be shared and is not (nil when it is, or was not asked).
    public let stateUnshared: String?

    /// Parameter indices the reducer covers (those that train); gradientReady(i) maps i into it.
    let reduced: Range<Int>
    /// The same parameters' elements in the flat gradient block.
    let reducedElements: Range<Int>
    public let fixedOrder: Bool

    /// Reduces the gradients of the parameters that require them (frozen ones have none to
    /// average: the VAE, a reference UNet that does not train), as one contiguous range of the flat
    /// block; all parameters when the trained ones are not contiguous. With `shareState` the
    /// weights move into the node's shared copy of the state (with room for the moments, and for
    /// an EMA with `ema`: see `sharedState`); with shared memory the gradient block moves into the
    /// window. Call it before the gradients and moments exist, so no rank ever holds private
    /// copies of them. Collective.
    public init(
        context: MPIContext, parameters: ParameterSet, shareState: Bool = false, ema: Bool = false, fixedOrder: Bool,
        bucketBytes: Int? = nil, reduction asked: GradientReduction = .auto, segments: Bool = true
    ) throws {
        self.context = context
        self.fixedOrder = fixedOrder
        let all = parameters.all, count = parameters.count
        reduced = parameters.trainedRange ?? 0..<all.count
        let lo = reduced.isEmpty ? 0 : all[reduced.lowerBound].offset
        reducedElements =
            lo..<(reduced.isEmpty ? 0 : all[reduced.upperBound - 1].offset + all[reduced.upperBound - 1].count)
        // Shards are cut at the norm's chunks of the trained range: the trained parameters must be
        // one run of the block (Leffa's parts always are: the UNets are registered one after the other).
        let contiguous = parameters.trainedRange != nil
        let stateBlocks = shareState && contiguous ? (ema ? 4 : 3) : 0
        var why: String? = nil
        if asked != .buckets {
            // Across nodes only when asked for, and not for the fixed order (the hierarchical sum
            // is not in rank order).
            why = SharedBlocks.unavailableReason(
                context: context, count: count, stateBlocks: stateBlocks,
                acrossNodes: asked == .shared && !fixedOrder)
            if asked == .shared, let why, context.size > 1 {
                throw DistributedError.setting(
                    name: "reduction", value: "shared",
                    expected: "ranks that can share memory, but \(why); use auto or buckets"
                        + (fixedOrder ? " (across nodes, the fixed order needs buckets)" : ""))
            }
        }
        let sharedGradients = asked != .buckets && why == nil
        var stateWhy: String? = nil
        if shareState && !contiguous {
            stateWhy = "the trained parameters are not one run of the flat block"
        } else if stateBlocks > 0 && !sharedGradients {
            stateWhy = SharedState.unavailableReason(context: context, count: count, blocks: stateBlocks)
        }
        // The state first: each rank copies its shard of the weights into it and frees its own
        // copy before any gradient block is touched.
        if stateBlocks > 0 && stateWhy == nil {
            let s = try SharedState(context: context, count: count, blocks: stateBlocks)
            let shard = s.shard(of: reducedElements, grain: AdamW.shardGrain)
            parameters.moveValues(into: s.storage(0), copying: shard)
            for b in 1..<stateBlocks { (s.storage(b).base + shard.lowerBound).update(repeating: 0, count: shard.count) }
            s.publish("weights copied")
            state = s
            sharedState = SharedTrainingState(
                m: s.storage(1), v: s.storage(2), ema: ema ? s.storage(3) : nil, shard: shard, loads: s.loads)
        } else {
            state = nil
            sharedState = nil
        }
        stateUnshared = stateWhy
        if sharedGradients {
            // With a shared state, the slices each rank reduces are its shards.
            let blocks = try SharedBlocks(
                context: context, count: count, grain: state == nil ? 16 : AdamW.shardGrain, keepingAlive: state)
            parameters.moveGradients(into: blocks.block)
            shared = blocks
            bucketReducer = nil
            reduction = .shared
        } else {
            shared = nil
            bucketReducer = try GradientReducer(
                context: context, gradients: parameters.gradients(of: reduced),
                parameterSizes: all[reduced].map(\.count), capBytes: bucketBytes,
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

    /// One line for the log: how gradients are averaged and where the state lives, and why.
    public var summary: String {
        if context.size == 1 { return "one rank: no gradients to average" }
        let mb = Int((Double(reducedElements.isEmpty ? 0 : (shared?.count ?? state?.count ?? 0)) * 4 / 1e6).rounded())
        var line: String
        switch reduction {
        case .shared:
            let b = shared!
            let layout =
                b.nodes == 1
                ? "all \(context.size) ranks on one node"
                : "\(b.nodes) nodes of \(b.nodeSize) ranks, then MPI across nodes"
            line = "gradients averaged in shared memory (\(layout); \(mb) MB per rank)"
        default:
            let n = bucketReducer?.buckets.count ?? 0
            line =
                "gradients averaged in \(n) overlapped MPI buckets"
                + (sharedUnavailable.map { " (not shared memory: \($0))" } ?? "")
        }
        if let state {
            let what = state.blocks == 4 ? "weights, Adam moments and EMA" : "weights and Adam moments"
            line +=
                "; one copy per node of the \(what) (\(state.blocks) × \(mb) MB), the optimizer step sharded over its \(state.nodeSize) ranks"
        } else if let stateUnshared {
            line += "; every rank holds the whole training state (not shared: \(stateUnshared))"
        }
        return line
    }

    public var rank: Int { context.rank }
    public var size: Int { context.size }
    public func gradientReady(_ index: Int) {
        if let bucketReducer, reduced.contains(index) { bucketReducer.markReady(index - reduced.lowerBound) }
    }
    public func finishGradients() -> Double {
        shared?.reduce(reducedElements, gather: state == nil).waitSeconds ?? bucketReducer!.finish().waitSeconds
    }
    public func sumOverShards(_ values: [Double]) -> [Double] {
        // Every node holds every shard (and the same gradients): its own ranks' sum is the whole.
        state?.sumOverNode(values) ?? values
    }
    public func publishState() -> Double {
        guard let state else { return 0 }
        let t0 = Date()
        state.publish()
        return Date().timeIntervalSince(t0)
    }
    public func broadcast(_ values: [Int64]) -> [Int64] {
        var v = values
        context.broadcast(&v)
        return v
    }
    /// The shared-memory reduction adds in rank order on one node; the bucketed one needs fixedOrder.
    public func sumGradientsInRankOrder() -> Double {
        if let shared {
            precondition(
                shared.nodes == 1,
                "the rank-order sum through shared memory needs one node (MPICollective picks buckets for the fixed order across nodes)"
            )
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
    public func verifyIdentical(_ values: Tensor, what: String) throws {
        try context.verifyIdentical(values, what: what)
    }
    public func verifyIdentical(_ text: String, what: String) throws { try context.verifyIdentical(text, what: what) }
}
