// Classifier-free guidance and its rescaling, as the published Leffa pipeline applies them to the
// model's output at every sampling step:
//   g = u + s·(c − u)                                   (s the guidance scale)
//   g ← φ·g·σ(c)/σ(g) + (1 − φ)·g                        (φ the guidance rescale, when > 0)
// σ the standard deviation of one sample over all its elements, with Bessel's correction as
// torch.std (diffusers' `rescale_noise_cfg`; Lin et al. 2024, "Common Diffusion Noise Schedules
// and Sample Steps are Flawed", §3.4). The published pipeline passes φ = s (2.5), i.e. beyond the
// paper's 0…1 blend: g is pushed past the rescaled output, away from the unrescaled one.
// Not the scheduler step (Scheduler.swift).
import Foundation
import LeffaTensor

public struct Guidance: Sendable, Equatable {
    /// s: 1 is the conditional output alone (the sampler then runs no unconditional branch).
    public var scale: Float
    /// φ: 0 leaves g as it is.
    public var rescale: Float
    public init(scale: Float, rescale: Float = 0) { self.scale = scale; self.rescale = rescale }

    /// The guided output from the conditional and unconditional outputs, (B, …) each; the
    /// rescaling's deviations are per sample.
    public func combine(conditional c: Tensor, unconditional u: Tensor) -> Tensor {
        shapeCheck(c.shape == u.shape, "Guidance.combine", c.shape, u.shape)
        let out = Tensor(zeros: c.shape)
        let cp = c.data, up = u.data, o = out.data, s = scale
        for i in 0..<c.count { o[i] = up[i] + s * (cp[i] - up[i]) }
        return rescale > 0 ? Self.rescaled(out, toDeviationOf: c, by: rescale) : out
    }

    /// φ·g·σ(c)/σ(g) + (1 − φ)·g per sample. A sample with σ(g) = 0 (constant) is left as it is,
    /// where diffusers would divide by zero.
    public static func rescaled(_ g: Tensor, toDeviationOf c: Tensor, by phi: Float) -> Tensor {
        shapeCheck(g.shape == c.shape && g.rank >= 1, "Guidance.rescaled", g.shape, c.shape)
        let b = g.shape[0], per = g.count / max(b, 1)
        let out = g.copy()
        for s in 0..<b {
            let sc = standardDeviation(c.data + s * per, per), sg = standardDeviation(g.data + s * per, per)
            guard sg > 0 else { continue }
            let ratio = Float(sc / sg), keep = 1 - phi
            let o = out.data + s * per
            for i in 0..<per { o[i] = phi * (o[i] * ratio) + keep * o[i] }
        }
        return out
    }

    /// Sample standard deviation (n − 1 in the denominator), in double precision.
    static func standardDeviation(_ p: UnsafeMutablePointer<Float>, _ n: Int) -> Double {
        guard n > 1 else { return 0 }
        var sum = 0.0
        for i in 0..<n { sum += Double(p[i]) }
        let mean = sum / Double(n)
        var sq = 0.0
        for i in 0..<n { let d = Double(p[i]) - mean; sq += d * d }
        return (sq / Double(n - 1)).squareRoot()
    }
}
