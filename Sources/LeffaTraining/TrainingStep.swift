// The loss of one training batch: noise the target latent at each sample's timestep, predict the
// noise from it and the reference, and add λ·Leffa when the stage enables it.
import LeffaTensor
import LeffaRunFormat
import LeffaLayers
import LeffaModels
import LeffaDiffusion

/// One batch, already in latent space (B samples, latent h×w, image H×W = 8h×8w).
public struct TrainBatch {
    public var latent: Tensor          // (B, 4, h, w) clean target latent, scaled
    public var maskLatent: Tensor      // (B, 1, h, w) inpainting mask, nearest-resized
    public var maskedLatent: Tensor    // (B, 4, h, w) latent of the masked person image
    public var denseposeLatent: Tensor // (B, 3, h, w) densepose, nearest-resized, in [−1, 1]
    public var refLatent: Tensor       // (B, 4, h, w) reference latent (zero where dropped)
    public var imgRef: Tensor          // (B, 3, H, W) reference image in [−1, 1]
    public var imgTgt: Tensor          // (B, 3, H, W) target image in [−1, 1]
    public var lossMask: Tensor        // (B, 1, H, W) Leffa loss mask
    public var timesteps: [Int]
    public var noise: Tensor           // (B, 4, h, w)
    /// False for samples whose reference was dropped for classifier-free guidance: the Leffa term
    /// is skipped for them (there is nothing to attend to).
    public var referenceKept: [Bool]

    public init(latent: Tensor, maskLatent: Tensor, maskedLatent: Tensor, denseposeLatent: Tensor, refLatent: Tensor,
                imgRef: Tensor, imgTgt: Tensor, lossMask: Tensor, timesteps: [Int], noise: Tensor, referenceKept: [Bool]) {
        self.latent = latent; self.maskLatent = maskLatent; self.maskedLatent = maskedLatent
        self.denseposeLatent = denseposeLatent; self.refLatent = refLatent; self.imgRef = imgRef; self.imgTgt = imgTgt
        self.lossMask = lossMask; self.timesteps = timesteps; self.noise = noise; self.referenceKept = referenceKept
    }
    public var size: Int { latent.shape[0] }
}

extension TrainBatch {
    /// The generative UNet's input: the target latent noised at each sample's timestep, then the
    /// mask, the masked-image latent and the densepose, along channels (B, 12, h, w).
    public func generativeInput(_ schedule: NoiseSchedule) -> Tensor {
        concat([schedule.addNoise(latent, noise: noise, timesteps: timesteps), maskLatent, maskedLatent, denseposeLatent], dim: 1)
    }
}

extension TrainBatch {
    /// A batch of random values with the right shapes and ranges, deterministic in `seed`: for
    /// benchmarks and tests of the step itself. Timesteps 100, 400, … (below the Leffa threshold).
    public static func random(_ b: Int, height h: Int, width w: Int, seed: UInt64) -> TrainBatch {
        let H = 8 * h, W = 8 * w
        let mask = Tensor.uniform([b, 1, H, W], seed: seed + 7).scalars.map { $0 > 0.5 ? Float(1) : 0 }
        return TrainBatch(
            latent: Tensor.randn([b, 4, h, w], seed: seed), maskLatent: Tensor.uniform([b, 1, h, w], seed: seed + 1),
            maskedLatent: Tensor.randn([b, 4, h, w], seed: seed + 2), denseposeLatent: Tensor.uniform([b, 3, h, w], seed: seed + 3, in: -1...1),
            refLatent: Tensor.randn([b, 4, h, w], seed: seed + 4), imgRef: Tensor.uniform([b, 3, H, W], seed: seed + 5, in: -1...1),
            imgTgt: Tensor.uniform([b, 3, H, W], seed: seed + 6, in: -1...1), lossMask: Tensor(mask, shape: [b, 1, H, W]),
            timesteps: (0..<b).map { 100 + 300 * $0 % 499 }, noise: Tensor.randn([b, 4, h, w], seed: seed + 8),
            referenceKept: Array(repeating: true, count: b))
    }
}

public struct StepLosses {
    public var total: Tensor
    public var diffusion: Float
    public var leffa: Float?
    public var probes: [AttentionProbe]
}

public struct TrainingObjective {
    public var schedule = NoiseSchedule()
    public var leffa: LeffaLossConfig? = nil
    /// What the generative UNet outputs (the diffusion MSE's target).
    public var prediction: Prediction = .epsilon
    /// Recompute each UNet block's activations in backward instead of keeping them
    /// (`training.activation_checkpointing`): the same gradients in less memory, for one more forward.
    public var activationCheckpointing = false
    public init(schedule: NoiseSchedule = NoiseSchedule(), leffa: LeffaLossConfig? = nil, prediction: Prediction = .epsilon,
                activationCheckpointing: Bool = false) {
        self.schedule = schedule; self.leffa = leffa; self.prediction = prediction; self.activationCheckpointing = activationCheckpointing
    }

    /// Builds the graph of the batch's loss (call `backward()` on `total`).
    public func loss(_ model: LeffaModel, _ b: TrainBatch) throws -> StepLosses {
        let x = b.generativeInput(schedule)
        var layers: Set<String> = []
        if let leffa {
            layers = Set(leffa.selectLayers(UNet2DConditionModel.attentionLayers(model.config.unet),
                                            latentHeight: b.latent.shape[2], imageHeight: b.imgTgt.shape[2]))
        }
        let (eps, ctx) = try model.denoise(x: x, refLatent: b.refLatent, timesteps: b.timesteps.map(Float.init), probes: FlowProbes(layers: layers, tau: leffa?.tau ?? 1),
                                        checkpointing: activationCheckpointing)
        let target = prediction == .epsilon ? b.noise : prediction.target(b.latent, noise: b.noise, timesteps: b.timesteps, schedule: schedule)
        let diffusion = mse(eps, target)
        guard let leffa else { return StepLosses(total: diffusion, diffusion: diffusion.item, leffa: nil, probes: []) }
        // Dropped references count as gated out: their timesteps are moved past the threshold.
        let gated = zip(b.timesteps, b.referenceKept).map { $1 ? $0 : Int.max }
        let l = leffaLoss(ctx.probes, refImage: b.imgRef, tgtImage: b.imgTgt, mask: b.lossMask, timesteps: gated, config: leffa)
        return StepLosses(total: diffusion + l.loss * leffa.weight, diffusion: diffusion.item, leffa: l.loss.item, probes: ctx.probes)
    }
}
