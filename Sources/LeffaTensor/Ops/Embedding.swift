// Sinusoidal timestep embedding (diffusers `get_timestep_embedding`), the input of the UNet's
// time MLP. Timesteps are integers, so there is no gradient and no autograd node.
// The arithmetic follows diffusers' float32 tensor ops step by step (frequency, then t·frequency
// rounded to float, then sin/cos): at t ≈ 1000 the float rounding of the argument alone moves the
// result by up to ~6e-5, so the same rounding points matter for matching the published model.
// Not here: the Linear–SiLU–Linear MLP that follows (a layer), learned embeddings.
import Foundation

/// (B, dim) embedding of timesteps t (B): half = dim/2 frequencies
/// f_i = exp(−ln(maxPeriod)·i / (half − downscaleFreqShift)), rows [sin(t·f), cos(t·f)], or
/// [cos, sin] when `flipSinToCos` (SD1.5's setting), then a zero column when dim is odd.
public func timestepEmbedding(
    _ t: [Float], dim: Int, flipSinToCos: Bool = true,
    downscaleFreqShift: Float = 0, maxPeriod: Float = 10000
) -> Tensor {
    precondition(dim >= 2, "timestepEmbedding: dim must be at least 2, got \(dim)")
    let half = dim / 2
    precondition(
        Float(half) - downscaleFreqShift != 0,
        "timestepEmbedding: half − downscaleFreqShift is 0 (dim \(dim), shift \(downscaleFreqShift))")
    // exponent = (−ln(maxPeriod) · arange(half)) / (half − shift), each step in float like torch.
    let negLog = Float(-log(Double(maxPeriod)))
    let denominator = Float(half) - downscaleFreqShift
    let freq = (0..<half).map { exp((negLog * Float($0)) / denominator) }
    let out = Tensor(zeros: [t.count, dim])
    let p = out.data
    let (sinAt, cosAt) = flipSinToCos ? (half, 0) : (0, half)
    for (b, tb) in t.enumerated() {
        let row = p + b * dim
        for i in 0..<half {
            let arg = tb * freq[i]
            row[sinAt + i] = sin(arg)
            row[cosAt + i] = cos(arg)
        }
        // An odd dim keeps its last column at zero (diffusers pads with F.pad).
    }
    return out
}
