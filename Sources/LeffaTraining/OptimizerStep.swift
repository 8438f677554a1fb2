// One optimizer step over the ranks a collective joins, as the trainer takes it (and the DDP
// bench measures it): clip, update, and the exponential moving average of the weights.
import Foundation
import LeffaTensor
import LeffaLayers

extension Collective {
    /// With a sharded step (shared memory) each rank clips and updates only its slice, the norm
    /// summed over the slices, then takes the other slices of the values from their owners, and the
    /// average is taken over the whole values once they are whole again. Otherwise clipping and
    /// the average happen inside the optimizer's single pass. Returns the gradient norm before
    /// clipping and the seconds spent taking the other slices.
    public func optimizerStep(_ optimizer: AdamW, _ parameters: ParameterSet, lr: Float, maxNorm: Float,
                              ema: Tensor? = nil, emaDecay: Float? = nil) -> (gradNorm: Float, gatherSeconds: Double) {
        let shard = optimizerShard
        let (norm, scale) = optimizer.clipScale(parameters: parameters, maxNorm: maxNorm, only: shard,
                                                combine: shard == nil ? { $0 } : { self.sumOverShards($0) })
        optimizer.update(parameters: parameters, lr: lr, only: shard, gradientScale: scale,
                         ema: shard == nil ? ema : nil, emaDecay: emaDecay ?? 0)
        let t0 = Date()
        gatherShards(moments: false)
        let gathered = Date().timeIntervalSince(t0)
        if shard != nil, let ema, let emaDecay { AdamW.average(ema, toward: parameters.values!, decay: emaDecay) }
        return (norm, gathered)
    }
}
