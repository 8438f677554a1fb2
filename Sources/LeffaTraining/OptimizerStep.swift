// One optimizer step over the ranks a collective joins, as the trainer takes it (and the DDP
// bench measures it): clip, update, and the exponential moving average of the weights.
import Foundation
import LeffaRunFormat
import LeffaTensor
import LeffaLayers

extension Collective {
    /// Clipping, the update and the average in one pass over the block (AdamW.update). With a
    /// shared state each rank takes it over its shard only (the norm's chunk sums added over the
    /// shards, the same bits as over the whole block), then waits until every shard is written.
    /// Returns the gradient norm before clipping and the seconds spent waiting for the other shards.
    public func optimizerStep(_ optimizer: AdamW, _ parameters: ParameterSet, lr: Float, maxNorm: Float,
                              ema: Tensor? = nil, emaDecay: Float? = nil) -> (gradNorm: Float, publishSeconds: Double) {
        let shard = sharedState?.shard
        let (norm, scale) = optimizer.clipScale(parameters: parameters, maxNorm: maxNorm, only: shard, combine: { self.sumOverShards($0) })
        optimizer.update(parameters: parameters, lr: lr, only: shard, gradientScale: scale, ema: ema, emaDecay: emaDecay ?? 0)
        return (norm, publishState())
    }
}
