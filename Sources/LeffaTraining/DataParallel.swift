// The data-parallel engine the trainer calls, split as PyTorch's DistributedDataParallel is:
// the transport (Collective: MPI, or one process) moves bytes; this engine decides what each rank
// computes and when gradients move. It owns
//  - the split of a global batch into this rank's micro-batches and their loss weights,
//  - the gradient hooks that hand each finished gradient to the reduction while backward runs,
//  - the fixed-order reduction (per-sample gradients folded in global sample order),
//  - the optimizer step, sharded where the ranks of a node share one copy of the state.
// So a training step reads: for each micro-batch, `loss = objective(model, batch);
// ddp.backward(loss, mb)`; then `ddp.finishGradients()`; `ddp.step(optimizer, …)`.
import Foundation
import LeffaTensor
import LeffaLayers
import LeffaData

public final class DataParallel {
    public let collective: Collective
    public let parameters: ParameterSet
    /// Reduce per-sample gradients in a fixed global order (`--fixed-order`): bit-identical
    /// results for any rank count dividing the batch, for one reduction per sample.
    public let fixedOrder: Bool
    /// The running sum of the fixed-order reduction (rank 0), made on first use.
    var foldAccumulator: Tensor?
    /// Seconds this rank waited for gradients in the current step.
    public private(set) var waited = 0.0

    public init(collective: Collective, parameters: ParameterSet, fixedOrder: Bool) {
        self.collective = collective; self.parameters = parameters; self.fixedOrder = fixedOrder
    }

    /// One backward pass of a step: the global positions it covers, its place in the step and
    /// `share`, its part of this rank's samples (what its loss counts for in the step's mean).
    public struct MicroBatch {
        public let positions: [Int]
        public let index: Int, count: Int
        public let share: Float
        /// The loss is scaled by this before backward, so the reduced gradient is the global mean.
        let weight: Float
        public var isFirst: Bool { index == 0 }
        public var isLast: Bool { index == count - 1 }
    }

    /// This rank's micro-batches of a global batch: an interleaved share of the positions (rank r
    /// takes r, r + N, …), in `accumulation` chunks, or one sample each in the fixed order. Every
    /// rank gets as many micro-batches (the trainer refuses batches the rank count does not divide).
    public func microBatches(of positions: [Int], accumulation: Int) -> [MicroBatch] {
        let mine = shard(positions, rank: collective.rank, worldSize: collective.size)
        let parts = fixedOrder ? mine.map { [$0] } : Self.chunks(mine, accumulation)
        return parts.enumerated().map { k, p in
            let share = Float(p.count) / Float(mine.count)
            // Fixed order: per-sample gradients of loss/B, summed over ranks. Otherwise each rank
            // averages its own samples and the reduction averages over ranks.
            return MicroBatch(
                positions: p, index: k, count: parts.count, share: share,
                weight: fixedOrder ? 1 / Float(positions.count) : share)
        }
    }

    static func chunks(_ xs: [Int], _ n: Int) -> [[Int]] {
        let k = max(1, n)
        return (0..<k).map { i in Array(xs[(xs.count * i / k)..<(xs.count * (i + 1) / k)]) }
    }

    /// Starts a step: zero gradients, no wait yet.
    public func zeroGrad() {
        parameters.zeroGrads()
        waited = 0
    }

    /// Drops a partial step's gradients (a stop between micro-batches).
    public func discardGradients() { parameters.zeroGrads() }

    /// Backward of micro-batch `mb`'s loss. The last one of a step hands each gradient to the
    /// reduction as soon as backward finishes it (those it will not reach — frozen ones, the
    /// reference UNet's layers after its last attention — right away), overlapping the two.
    public func backward(_ loss: Tensor, _ mb: MicroBatch) {
        if fixedOrder {
            if !mb.isFirst { parameters.zeroGrads() }
            (loss * mb.weight).backward()
            waited += foldInGlobalOrder(first: mb.isFirst, last: mb.isLast)
            return
        }
        if mb.isLast {
            let c = collective
            parameters.handOverGradients(of: loss) { c.gradientReady($0) }
        }
        (loss * mb.weight).backward()
    }

    /// After the step's last backward: the gradient block holds the mean over the global batch
    /// (with a shared state, in this rank's shard).
    public func finishGradients() {
        guard !fixedOrder else { return }
        parameters.removeGradientHooks()
        waited += collective.finishGradients()
    }

    /// The fixed-order reduction: the step's gradient is the left fold, in global sample order, of
    /// per-sample gradients each computed alone (into a zeroed block, loss scaled by 1/batch):
    /// ((g₀ + g₁) + g₂) + … . Ranks take positions r, r + N, …, so the k-th samples of all ranks
    /// are positions kN … kN + N − 1: rank 0 adds the running sum to its own, and the ordered sum
    /// over ranks adds the rest in rank order. Any rank count dividing the batch performs the same
    /// additions in the same order: the same bits. Costs one reduction per sample and one extra
    /// gradient-sized block, on rank 0 only.
    func foldInGlobalOrder(first: Bool, last: Bool) -> Double {
        let g = parameters.grads!
        if !first && collective.rank == 0 {
            let a = foldAccumulator!.data, d = g.data
            Parallel.for(g.count, grain: 1 << 15) { r in for i in r { d[i] = a[i] + d[i] } }
        }
        let waited = collective.sumGradientsInRankOrder()
        if !last && collective.rank == 0 {
            if foldAccumulator == nil { foldAccumulator = Tensor(zeros: [g.count]) }
            foldAccumulator!.data.update(from: g.data, count: g.count)
        }
        return waited
    }

    /// Clipping, the update and the average in one pass over the block (AdamW.update). With a
    /// shared state each rank takes it over its shard only (the norm's chunk sums added over the
    /// shards, the same bits as over the whole block), then waits until every shard is written.
    /// Returns the gradient norm before clipping and the seconds spent waiting for the other shards.
    @discardableResult
    public func step(
        _ optimizer: AdamW, lr: Float, maxNorm: Float, ema: Tensor? = nil,
        emaDecay: Float? = nil
    ) -> (gradNorm: Float, publishSeconds: Double) {
        let c = collective, shard = c.sharedState?.shard
        let (norm, scale) = optimizer.clipScale(
            parameters: parameters, maxNorm: maxNorm, only: shard, combine: c.sumOverShards)
        optimizer.update(
            parameters: parameters, lr: lr, only: shard, gradientScale: scale, ema: ema, emaDecay: emaDecay ?? 0)
        return (norm, c.publishState())
    }
}
