// The DDPM noise schedule of SD1.5: 1000 steps, "scaled_linear" betas from 0.00085 to 0.012,
// epsilon prediction. Computed in double precision (diffusers computes in float32: the two agree
// to within 1e-6 relative, LeffaDiffusionTests.NoiseScheduleTests).
import Foundation
import LeffaTensor

public struct NoiseSchedule: Sendable {
    public let steps: Int
    public let betas: [Double]
    public let alphasCumprod: [Double]

    public init(steps: Int = 1000, betaStart: Double = 0.00085, betaEnd: Double = 0.012) {
        precondition(steps >= 2, "NoiseSchedule: need at least 2 steps, got \(steps)")
        let a = betaStart.squareRoot(), b = betaEnd.squareRoot()
        betas = (0..<steps).map { i in
            let r = a + (b - a) * Double(i) / Double(steps - 1); return r * r
        }
        var acc = 1.0
        alphasCumprod = betas.map {
            acc *= 1 - $0; return acc
        }
        self.steps = steps
    }

    /// x_t = √ᾱ_t · x₀ + √(1−ᾱ_t) · ε, per sample (x₀ and ε (B, …), one timestep per sample).
    public func addNoise(_ x0: Tensor, noise: Tensor, timesteps: [Int]) -> Tensor {
        shapeCheck(
            x0.shape == noise.shape && timesteps.count == x0.shape[0], "NoiseSchedule.addNoise", x0.shape, noise.shape)
        let b = x0.shape[0], per = x0.count / max(b, 1)
        let out = Tensor(zeros: x0.shape)
        for s in 0..<b {
            let ac = alphasCumprod[timesteps[s]]
            let ca = Float(ac.squareRoot()), cn = Float((1 - ac).squareRoot())
            let p = x0.data + s * per, q = noise.data + s * per, o = out.data + s * per
            for i in 0..<per { o[i] = ca * p[i] + cn * q[i] }
        }
        return out
    }
}

/// What the denoiser predicts, with diffusers' names (`prediction_type` of its schedulers). SD1.5
/// and the published Leffa model predict the noise. `sample` (the clean image) suits small models
/// trained from scratch in pixel space: the known part of an inpainting target is then a copy of
/// an input, where predicting the noise needs a timestep-dependent rescaling the network must
/// learn first (the tiny synthetic run's samples stay noise after hundreds of steps with it).
public enum Prediction: String, Sendable, CaseIterable {
    case epsilon
    case vPrediction = "v_prediction"
    case sample

    /// What the model is trained to output for clean x₀, noise ε at timestep t (per sample).
    public func target(_ x0: Tensor, noise: Tensor, timesteps: [Int], schedule: NoiseSchedule) -> Tensor {
        switch self {
        case .epsilon: return noise
        case .sample: return x0
        case .vPrediction:
            // v = √ᾱ·ε − √(1−ᾱ)·x₀
            let b = x0.shape[0], per = x0.count / max(b, 1)
            let out = Tensor(zeros: x0.shape)
            for s in 0..<b {
                let ac = schedule.alphasCumprod[timesteps[s]]
                let ca = Float(ac.squareRoot()), cn = Float((1 - ac).squareRoot())
                let p = x0.data + s * per, q = noise.data + s * per, o = out.data + s * per
                for i in 0..<per { o[i] = ca * q[i] - cn * p[i] }
            }
            return out
        }
    }

    /// (x̂₀, ε̂) from the model's output at x_t with ᾱ_t = `alpha` (elementwise, in place of two
    /// buffers the caller owns).
    @inline(__always)
    public func split(output o: Float, x: Float, sqrtAlpha sa: Float, sqrtOneMinusAlpha sb: Float) -> (
        x0: Float, eps: Float
    ) {
        switch self {
        case .epsilon: return ((x - sb * o) / sa, o)
        case .sample: return (o, (x - sa * o) / sb)
        case .vPrediction: return (sa * x - sb * o, sa * o + sb * x)
        }
    }
}
