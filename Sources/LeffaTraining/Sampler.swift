// Inference: DDIM sampling (η = 0) with classifier-free guidance, the unconditional branch being
// a zero reference latent (SPEC §2). Latent space encodes the conditions with the VAE and decodes
// the result; pixel space denoises the image directly. Not the training objective.
import Foundation
import LeffaTensor
import LeffaModels
import LeffaDiffusion
import LeffaData

/// The conditions of one try-on, at the model's resolution: (1, 3, H, W) images in [−1, 1] and a
/// (1, 1, H, W) mask (1 = region to generate).
public struct SampleConditions {
    public var person: Tensor, garment: Tensor, mask: Tensor, densepose: Tensor
    public init(person: Tensor, garment: Tensor, mask: Tensor, densepose: Tensor) {
        self.person = person; self.garment = garment; self.mask = mask; self.densepose = densepose
    }

    /// Reads the four images and resizes them to height × width (bilinear; nearest for the mask
    /// and densepose, whose values are labels); the densepose decoded as training reads it.
    public static func load(person: URL, garment: URL, mask: URL, densepose: URL, denseposeEncoding: DenseposeEncoding = .rgb,
                            height: Int, width: Int) throws -> SampleConditions {
        let size = Size(height: height, width: width)
        func image(_ u: URL, _ mode: Interpolation) throws -> Tensor {
            let t = try ImageIO.read(u, channels: 3).tensor(.signed)
            return resize(t.reshaped([1] + t.shape), to: size, mode: mode)
        }
        let m = try ImageIO.read(mask, channels: 1).maskTensor()
        let d = try denseposeInput(ImageIO.read(densepose, channels: 0), encoding: denseposeEncoding, path: densepose.path).input
        return SampleConditions(person: try image(person, .bilinear), garment: try image(garment, .bilinear),
                                mask: resize(m.reshaped([1] + m.shape), to: size, mode: .nearest),
                                densepose: resize(d.reshaped([1] + d.shape), to: size, mode: .nearest))
    }
}

public struct DDIMSampler {
    public var schedule = NoiseSchedule()
    public var steps = 30
    public var guidance: Float = 2.5
    public var seed: UInt64 = 0
    /// Run the reference UNet once, at the middle timestep of the schedule, and reuse its features
    /// at every step, as the published pipeline does with `ref_acceleration=True` (its default is
    /// off: features at every step's timestep).
    public var refAcceleration = false
    /// What the model outputs (the run's `training.prediction_type`).
    public var prediction: Prediction = .epsilon
    public init(steps: Int = 30, guidance: Float = 2.5, seed: UInt64 = 0) { self.steps = steps; self.guidance = guidance; self.seed = seed }

    /// diffusers' DDIMScheduler with "leading" spacing and steps_offset 1 (SD1.5): t = k·(T/n) + 1,
    /// newest first.
    public func timesteps() -> [Int] {
        let ratio = schedule.steps / max(1, steps)
        return (0..<steps).map { $0 * ratio + 1 }.filter { $0 < schedule.steps }.reversed()
    }

    /// Samples one image (1, 3, H, W) in [−1, 1]. `progress` gets (done, total) after each step.
    public func sample(model: LeffaModel, space: Space, _ c: SampleConditions, progress: (Int, Int) -> Void = { _, _ in }) throws -> Tensor {
        try GradMode.withoutGrad {
            let masked = maskedImage(c.person.reshaped(Array(c.person.shape.dropFirst())), c.mask.reshaped(Array(c.mask.shape.dropFirst())))
            let maskedB = masked.reshaped([1] + masked.shape)
            var cond: Tensor, ref: Tensor
            let s = model.config.vae.scalingFactor
            switch space {
            case .pixel:
                cond = concat([c.mask, maskedB, c.densepose], dim: 1)
                ref = c.garment
            case .latent:
                // The posterior mean: deterministic conditions for a given seed.
                let f = model.config.vae.downscale, h = c.person.shape[2] / f, w = c.person.shape[3] / f
                cond = concat([resizeNearest(c.mask, size: (h, w)), model.vae.encode(maskedB).mean * s,
                               resizeNearest(c.densepose, size: (h, w))], dim: 1)
                ref = model.vae.encode(c.garment).mean * s
            }
            let outC = model.config.unet.outChannels
            var x = Tensor.randn([1, outC, cond.shape[2], cond.shape[3]], seed: seed)
            let ts = timesteps(), ratio = schedule.steps / max(1, steps)
            let guided = guidance != 1
            let zeroRef = Tensor(zeros: ref.shape)
            let refs = guided ? concat([ref, zeroRef], dim: 0) : ref
            let once = refAcceleration && !ts.isEmpty
                ? model.referenceFeatures(refLatent: refs, timesteps: Array(repeating: Float(ts[ts.count / 2]), count: refs.shape[0])) : nil
            for (k, t) in ts.enumerated() {
                let eps: Tensor
                if let once {
                    let input = guided ? concat([concat([x, cond], dim: 1), concat([x, cond], dim: 1)], dim: 0) : concat([x, cond], dim: 1)
                    let e = try model.denoise(x: input, features: once, timesteps: Array(repeating: Float(t), count: refs.shape[0]))
                    eps = guided ? guide(e, guidance) : e
                } else if guided {
                    let input = concat([concat([x, cond], dim: 1), concat([x, cond], dim: 1)], dim: 0)
                    let (e, _) = try model.denoise(x: input, refLatent: concat([ref, zeroRef], dim: 0), timesteps: [Float(t), Float(t)])
                    eps = guide(e, guidance)
                } else {
                    eps = try model.denoise(x: concat([x, cond], dim: 1), refLatent: ref, timesteps: [Float(t)]).eps
                }
                let prev = t - ratio
                let a = schedule.alphasCumprod[t], ap = prev >= 0 ? schedule.alphasCumprod[prev] : schedule.alphasCumprod[0]
                x = ddimStep(x, eps: eps, alpha: a, alphaPrev: ap)
                progress(k + 1, ts.count)
            }
            switch space {
            case .pixel: return clamp(x)
            case .latent: return clamp(model.vae.decode(x * (1 / s)))
            }
        }
    }

    /// ε = ε_u + g·(ε_c − ε_u) from the stacked (2, C, h, w) prediction [conditional, unconditional].
    func guide(_ e: Tensor, _ g: Float) -> Tensor {
        let n = e.count / 2
        let out = Tensor(zeros: [1] + Array(e.shape.dropFirst()))
        let c = e.data, u = e.data + n, o = out.data
        for i in 0..<n { o[i] = u[i] + g * (c[i] - u[i]) }
        return out
    }

    /// x_{t−1} = √ᾱ_prev · x̂₀ + √(1−ᾱ_prev) · ε̂ (η = 0), x̂₀ and ε̂ from the model's output
    /// (for noise prediction x̂₀ = (x_t − √(1−ᾱ_t) ε) / √ᾱ_t).
    func ddimStep(_ x: Tensor, eps output: Tensor, alpha: Double, alphaPrev: Double) -> Tensor {
        let out = Tensor(zeros: x.shape)
        let sa = Float(alpha.squareRoot()), sb = Float((1 - alpha).squareRoot())
        let pa = Float(alphaPrev.squareRoot()), pb = Float((1 - alphaPrev).squareRoot())
        let xp = x.data, ep = output.data, o = out.data
        let p = prediction
        for i in 0..<x.count {
            let (x0, e) = p.split(output: ep[i], x: xp[i], sqrtAlpha: sa, sqrtOneMinusAlpha: sb)
            o[i] = pa * x0 + pb * e
        }
        return out
    }

    func clamp(_ x: Tensor) -> Tensor {
        let out = x.copy()
        for i in 0..<out.count { out.data[i] = min(1, max(-1, out.data[i])) }
        return out
    }
}
