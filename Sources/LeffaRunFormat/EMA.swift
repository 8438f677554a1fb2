// The EMA's schedule (`training.ema_*`): the decay of each update as diffusers' EMAModel.get_decay
// computes it, and whether a stage starts its average afresh or carries on the previous stage's.
// The decay of the u-th update (1, 2, … as EMAModel's optimization_step) with k = u − 1:
//   k = 0: 0 (the first update copies the weights);
//   warm-up (use_ema_warmup): 1 − (1 + k / inv_gamma)^−power, else (1 + k) / (10 + k);
//   then clamped to [min_decay, decay].
// u counts from the stage's first step (fresh) or goes on from the previous stage's count (carry),
// and always comes from checkpointed counters, so a resumed run averages with the same decays.
// Not the update itself (AdamW.update, fused with the optimizer step, over each rank's shard).
import Foundation

public struct EMAConfig: Sendable, Equatable {
    /// What a new stage's average starts from.
    public enum Start: String, Sendable, CaseIterable {
        /// The stage's starting weights, the warm-up counting from the stage's first step (with
        /// the first update's decay 0, the previous stages leave nothing in it).
        case fresh
        /// The previous stage's final EMA, the update count going on from where it ended.
        case carry
    }
    /// `ema_decay`: the largest decay (diffusers' `decay`).
    public var decay: Double
    /// `ema_min_decay`: the smallest decay after the first update (diffusers' `min_decay`).
    public var minDecay: Double = 0
    /// `ema_warmup` (diffusers' `use_ema_warmup`), with `ema_inv_gamma` and `ema_power`.
    public var warmup = false
    public var invGamma: Double = 1
    public var power: Double = 2.0 / 3.0
    /// `ema_start`.
    public var start = Start.fresh
    public init(decay: Double) { self.decay = decay }

    /// The decay of update `update` (1-based), as a float for the update kernel.
    public func decay(update: Int) -> Float {
        let k = Double(max(0, update - 1))
        guard k > 0 else { return 0 }
        let d = warmup ? 1 - pow(1 + k / invGamma, -power) : (1 + k) / (10 + k)
        return Float(max(min(d, decay), minDecay))
    }

    /// The share of updates `first ... last` in the average after `last`: 1 − Π decay(u).
    public func share(updates: ClosedRange<Int>) -> Double {
        var logKept = 0.0
        for u in updates {
            let d = Double(decay(update: u))
            if d == 0 { return 1 }
            logKept += log(d)
        }
        return 1 - exp(logKept)
    }

    /// Reads the `ema_*` keys of `training`; nil without `ema_decay` (no EMA), when the others are
    /// refused as meaningless.
    static func parse(_ training: Reader) throws -> EMAConfig? {
        let decay = try training.optionalDouble("ema_decay", in: 0..<1)
        let keys = ["ema_min_decay", "ema_warmup", "ema_inv_gamma", "ema_power", "ema_start"]
        guard let decay else {
            if let k = keys.first(where: { training.value($0) != nil }) {
                throw training.fail(
                    k, "no \(k) without training.ema_decay, which turns the EMA on (e.g. ema_decay: 0.9999)")
            }
            return nil
        }
        var e = EMAConfig(decay: decay)
        e.minDecay = try training.double("ema_min_decay", default: 0, in: 0...e.decay)
        e.warmup = try training.bool("ema_warmup", default: false)
        e.invGamma = try training.double("ema_inv_gamma", default: 1, in: 1e-6...1e12)
        e.power = try training.double("ema_power", default: 2.0 / 3.0, in: 1e-6...1e3)
        let start = try training.string("ema_start", default: Start.fresh.rawValue)
        guard let s = Start(rawValue: start) else {
            throw training.fail(
                "ema_start",
                "fresh (each stage averages from its own starting weights) or carry (on from the previous stage's EMA), got \(start)"
            )
        }
        e.start = s
        return e
    }
}
