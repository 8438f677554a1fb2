// The update rules of the two samplers, as diffusers' DDPMScheduler (ancestral: what the published
// Leffa pipeline samples with) and DDIMScheduler with η = 0 (deterministic), configured as the
// SD1.5 inpainting model's scheduler config makes them: "leading" timesteps with steps_offset 1,
// clip_sample off, DDPM variance "fixed_small", and past the last step ᾱ_prev = 1 for DDPM and
// ᾱ_0 for DDIM (set_alpha_to_one false). A step maps x_t to x_prev given the model's (guided)
// output. The noise of an ancestral step is the caller's: randomness stays keyed where the caller
// keys it (Sampler), and a test can feed the noise diffusers drew.
// Not the sampling loop (LeffaTraining.Sampler) and not guidance (Guidance.swift).
import LeffaTensor

/// Which update rule a sampler uses (the CLI's and the config's `scheduler`).
public enum SchedulerKind: String, Sendable, CaseIterable {
    /// diffusers' DDPMScheduler: ancestral sampling, fresh noise at every step.
    case ddpm
    /// diffusers' DDIMScheduler with η = 0: no noise after the start.
    case ddim
}

public struct DiffusionScheduler: Sendable {
    public var kind: SchedulerKind
    public var schedule: NoiseSchedule
    /// Inference steps (1 … schedule.steps).
    public var steps: Int
    /// What the model outputs (`training.prediction_type`).
    public var prediction: Prediction

    public init(
        kind: SchedulerKind, steps: Int, prediction: Prediction = .epsilon, schedule: NoiseSchedule = NoiseSchedule()
    ) {
        precondition(
            (1...schedule.steps).contains(steps),
            "DiffusionScheduler: steps must be in 1…\(schedule.steps), got \(steps)")
        self.kind = kind; self.steps = steps; self.prediction = prediction; self.schedule = schedule
    }

    /// T / n, the distance between two timesteps.
    public var stride: Int { schedule.steps / max(1, steps) }

    /// "leading" spacing with steps_offset 1: t = k·(T/n) + 1, newest first (diffusers drops none;
    /// only n = T would reach t = T, which does not exist, and that one is left out).
    public func timesteps() -> [Int] {
        (0..<steps).map { $0 * stride + 1 }.filter { $0 < schedule.steps }.reversed()
    }

    /// The timestep a step from `t` lands on; negative past the end.
    public func previous(_ t: Int) -> Int { t - stride }

    /// Whether `step(from:)` needs a noise tensor: every DDPM step from t > 0.
    public func needsNoise(at t: Int) -> Bool { kind == .ddpm && t > 0 }

    /// x_prev from x_t (any shape) and the model's output there. `noise` (standard normal, x's
    /// shape) is read when `needsNoise(at: t)`.
    public func step(_ x: Tensor, output: Tensor, t: Int, noise: Tensor? = nil) -> Tensor {
        shapeCheck(x.shape == output.shape, "DiffusionScheduler.step", x.shape, output.shape)
        let a = schedule.alphasCumprod[t], prev = previous(t)
        switch kind {
        case .ddim:
            return ddim(
                x, output, alpha: a, alphaPrev: prev >= 0 ? schedule.alphasCumprod[prev] : schedule.alphasCumprod[0])
        case .ddpm:
            var z: Tensor? = nil
            if needsNoise(at: t) {
                guard let noise else {
                    preconditionFailure("DiffusionScheduler.step: a DDPM step from t = \(t) needs noise")
                }
                shapeCheck(noise.shape == x.shape, "DiffusionScheduler.step noise", x.shape, noise.shape)
                z = noise
            }
            return ddpm(x, output, alpha: a, alphaPrev: prev >= 0 ? schedule.alphasCumprod[prev] : 1, noise: z)
        }
    }

    /// x_prev = √ᾱ_prev · x̂₀ + √(1−ᾱ_prev) · ε̂ (η = 0), x̂₀ and ε̂ read from the output.
    func ddim(_ x: Tensor, _ output: Tensor, alpha: Double, alphaPrev: Double) -> Tensor {
        let out = Tensor(zeros: x.shape)
        let sa = Float(alpha.squareRoot()), sb = Float((1 - alpha).squareRoot())
        let pa = Float(alphaPrev.squareRoot()), pb = Float((1 - alphaPrev).squareRoot())
        let xp = x.data, ep = output.data, o = out.data, p = prediction
        for i in 0..<x.count {
            let (x0, e) = p.split(output: ep[i], x: xp[i], sqrtAlpha: sa, sqrtOneMinusAlpha: sb)
            o[i] = pa * x0 + pb * e
        }
        return out
    }

    /// The posterior mean of q(x_prev | x_t, x̂₀) plus σ·z (DDPM eq. 6–7), σ² the "fixed_small"
    /// variance (1−ᾱ_prev)/(1−ᾱ_t)·β_t, floored at 1e-20 as diffusers does (so the last step,
    /// where it is 0, still adds 1e-10·z).
    func ddpm(_ x: Tensor, _ output: Tensor, alpha: Double, alphaPrev: Double, noise: Tensor?) -> Tensor {
        let out = Tensor(zeros: x.shape)
        let alphaT = alpha / alphaPrev, betaT = 1 - alphaT
        let sa = Float(alpha.squareRoot()), sb = Float((1 - alpha).squareRoot())
        let c0 = Float(alphaPrev.squareRoot() * betaT / (1 - alpha))
        let c1 = Float(alphaT.squareRoot() * (1 - alphaPrev) / (1 - alpha))
        let sigma = Float(max((1 - alphaPrev) / (1 - alpha) * betaT, 1e-20).squareRoot())
        let xp = x.data, ep = output.data, o = out.data, p = prediction
        for i in 0..<x.count {
            let x0 = p.split(output: ep[i], x: xp[i], sqrtAlpha: sa, sqrtOneMinusAlpha: sb).x0
            o[i] = c0 * x0 + c1 * xp[i]
        }
        if let noise {
            let z = noise.data
            for i in 0..<x.count { o[i] += sigma * z[i] }
        }
        return out
    }
}
