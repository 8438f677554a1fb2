// Inference: sampling with classifier-free guidance (the unconditional branch being a zero
// reference latent, SPEC §2), its optional rescaling, and a DDPM (ancestral, as the published
// pipeline) or DDIM (η = 0) scheduler. Latent space encodes the conditions with the VAE and decodes
// the result; pixel space denoises the image directly. Randomness is keyed by the seed alone: the
// starting noise is stream `seed`, DDPM step k's noise stream key(seed, "STEP", k), so the same
// seed gives the same bits whatever the rank, thread count or batch around it. Not the training
// objective, and not the repaint (Repaint.swift), which acts on the 8-bit image.
import Foundation
import LeffaRunFormat
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
    public static func load(
        person: URL, garment: URL, mask: URL, densepose: URL, denseposeEncoding: DenseposeEncoding = .rgb,
        height: Int, width: Int
    ) throws -> SampleConditions {
        let size = Size(height: height, width: width)
        func image(_ u: URL, _ mode: Interpolation) throws -> Tensor {
            let t = try ImageIO.read(u, channels: 3).tensor(.signed)
            return resize(t.reshaped([1] + t.shape), to: size, mode: mode)
        }
        let m = try ImageIO.read(mask, channels: 1).maskTensor()
        let d = try denseposeInput(
            ImageIO.read(densepose, channels: 0), encoding: denseposeEncoding, path: densepose.path
        ).input
        return SampleConditions(
            person: try image(person, .bilinear), garment: try image(garment, .bilinear),
            mask: resize(m.reshaped([1] + m.shape), to: size, mode: .nearest),
            densepose: resize(d.reshaped([1] + d.shape), to: size, mode: .nearest))
    }
}

public struct Sampler {
    public var scheduler: SchedulerKind = .ddim
    public var schedule = NoiseSchedule()
    public var steps = 30
    public var guidance: Float = 2.5
    /// φ of `rescale_noise_cfg` (0 = off); the published pipeline uses φ = guidance.
    public var guidanceRescale: Float = 0
    public var seed: UInt64 = 0
    /// Run the reference UNet once, at the middle timestep of the schedule, and reuse its features
    /// at every step, as the published pipeline does with `ref_acceleration=True` (its default is
    /// off: features at every step's timestep).
    public var refAcceleration = false
    /// What the model outputs (the run's `training.prediction_type`).
    public var prediction: Prediction = .epsilon
    public init(
        scheduler: SchedulerKind = .ddim, steps: Int = 30, guidance: Float = 2.5, guidanceRescale: Float = 0,
        seed: UInt64 = 0
    ) {
        self.scheduler = scheduler; self.steps = steps; self.guidance = guidance;
        self.guidanceRescale = guidanceRescale; self.seed = seed
    }

    /// The update rule with this sampler's settings.
    public var diffusion: DiffusionScheduler {
        DiffusionScheduler(kind: scheduler, steps: steps, prediction: prediction, schedule: schedule)
    }

    /// Newest first, diffusers' "leading" spacing with steps_offset 1 (SD1.5): t = k·(T/n) + 1.
    public func timesteps() -> [Int] { diffusion.timesteps() }

    /// The noise of DDPM step `k` (0 = the first step), standard normal of `shape`.
    public func stepNoise(_ k: Int, shape: [Int]) -> Tensor {
        Tensor.randn(shape, seed: CounterRNG.key(seed, Self.stepStream, UInt64(k)))
    }
    static let stepStream: UInt64 = 0x5354_4550 // "STEP"

    /// Samples one image (1, 3, H, W) in [−1, 1]. `progress` gets (done, total) after each step.
    public func sample(
        model: LeffaModel, space: Space, _ c: SampleConditions, progress: (Int, Int) -> Void = { _, _ in }
    ) throws -> Tensor {
        try GradMode.withoutGrad {
            let masked = maskedImage(
                c.person.reshaped(Array(c.person.shape.dropFirst())), c.mask.reshaped(Array(c.mask.shape.dropFirst())))
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
                cond = concat(
                    [
                        resizeNearest(c.mask, size: (h, w)), model.vae.encode(maskedB).mean * s,
                        resizeNearest(c.densepose, size: (h, w))
                    ], dim: 1)
                ref = model.vae.encode(c.garment).mean * s
            }
            let outC = model.config.unet.outChannels
            var x = Tensor.randn([1, outC, cond.shape[2], cond.shape[3]], seed: seed)
            let rule = diffusion, ts = rule.timesteps()
            let guided = guidance != 1
            let g = Guidance(scale: guidance, rescale: guidanceRescale)
            let zeroRef = Tensor(zeros: ref.shape)
            let refs = guided ? concat([ref, zeroRef], dim: 0) : ref
            let once =
                refAcceleration && !ts.isEmpty
                ? model.referenceFeatures(
                    refLatent: refs, timesteps: Array(repeating: Float(ts[ts.count / 2]), count: refs.shape[0])) : nil
            for (k, t) in ts.enumerated() {
                let input =
                    guided
                    ? concat([concat([x, cond], dim: 1), concat([x, cond], dim: 1)], dim: 0) : concat([x, cond], dim: 1)
                let times = Array(repeating: Float(t), count: refs.shape[0])
                let e =
                    try once.map { try model.denoise(x: input, features: $0, timesteps: times) }
                    ?? model.denoise(x: input, refLatent: refs, timesteps: times).eps
                // [conditional, unconditional] when guided.
                let out =
                    guided
                    ? g.combine(
                        conditional: slice(e, dim: 0, start: 0, length: 1),
                        unconditional: slice(e, dim: 0, start: 1, length: 1)) : e
                x = rule.step(x, output: out, t: t, noise: rule.needsNoise(at: t) ? stepNoise(k, shape: x.shape) : nil)
                progress(k + 1, ts.count)
            }
            switch space {
            case .pixel: return clamp(x)
            case .latent: return clamp(model.vae.decode(x * (1 / s)))
            }
        }
    }

    func clamp(_ x: Tensor) -> Tensor {
        let out = x.copy()
        for i in 0..<out.count { out.data[i] = min(1, max(-1, out.data[i])) }
        return out
    }
}
