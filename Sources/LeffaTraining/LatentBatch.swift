// A training batch in latent space, as the objective reads it: the clean target latent and its
// noise, the inpainting conditions, the reference, and the images the Leffa loss warps.
import LeffaTensor
import LeffaDiffusion

/// One batch, already in latent space (B samples, latent h×w, image H×W = 8h×8w).
public struct LatentBatch {
    public var latent: Tensor // (B, 4, h, w) clean target latent, scaled
    public var maskLatent: Tensor // (B, 1, h, w) inpainting mask, nearest-resized
    public var maskedLatent: Tensor // (B, 4, h, w) latent of the masked person image
    public var denseposeLatent: Tensor // (B, 3, h, w) densepose, nearest-resized, in [−1, 1]
    public var refLatent: Tensor // (B, 4, h, w) reference latent (zero where dropped)
    public var imgRef: Tensor // (B, 3, H, W) reference image in [−1, 1]
    public var imgTgt: Tensor // (B, 3, H, W) target image in [−1, 1]
    public var lossMask: Tensor // (B, 1, H, W) Leffa loss mask
    public var timesteps: [Int]
    public var noise: Tensor // (B, 4, h, w)
    /// False for samples whose reference was dropped for classifier-free guidance: the Leffa term
    /// is skipped for them (there is nothing to attend to).
    public var referenceKept: [Bool]

    public init(
        latent: Tensor, maskLatent: Tensor, maskedLatent: Tensor, denseposeLatent: Tensor, refLatent: Tensor,
        imgRef: Tensor, imgTgt: Tensor, lossMask: Tensor, timesteps: [Int], noise: Tensor, referenceKept: [Bool]
    ) {
        self.latent = latent; self.maskLatent = maskLatent; self.maskedLatent = maskedLatent
        self.denseposeLatent = denseposeLatent; self.refLatent = refLatent; self.imgRef = imgRef; self.imgTgt = imgTgt
        self.lossMask = lossMask; self.timesteps = timesteps; self.noise = noise; self.referenceKept = referenceKept
    }
    public var size: Int { latent.shape[0] }
}

extension LatentBatch {
    /// The generative UNet's input: the target latent noised at each sample's timestep, then the
    /// mask, the masked-image latent and the densepose, along channels (B, 12, h, w).
    public func generativeInput(_ schedule: NoiseSchedule) -> Tensor {
        concat(
            [schedule.addNoise(latent, noise: noise, timesteps: timesteps), maskLatent, maskedLatent, denseposeLatent],
            dim: 1)
    }
}

extension LatentBatch {
    /// A batch of random values with the right shapes and ranges, deterministic in `seed`: for
    /// benchmarks and tests of the step itself. Timesteps 100, 400, … (below the Leffa threshold).
    public static func random(_ b: Int, height h: Int, width w: Int, seed: UInt64) -> LatentBatch {
        let H = 8 * h, W = 8 * w
        let mask = Tensor.uniform([b, 1, H, W], seed: seed + 7).scalars.map { $0 > 0.5 ? Float(1) : 0 }
        return LatentBatch(
            latent: Tensor.randn([b, 4, h, w], seed: seed), maskLatent: Tensor.uniform([b, 1, h, w], seed: seed + 1),
            maskedLatent: Tensor.randn([b, 4, h, w], seed: seed + 2),
            denseposeLatent: Tensor.uniform([b, 3, h, w], seed: seed + 3, in: -1...1),
            refLatent: Tensor.randn([b, 4, h, w], seed: seed + 4),
            imgRef: Tensor.uniform([b, 3, H, W], seed: seed + 5, in: -1...1),
            imgTgt: Tensor.uniform([b, 3, H, W], seed: seed + 6, in: -1...1),
            lossMask: Tensor(mask, shape: [b, 1, H, W]),
            timesteps: (0..<b).map { 100 + 300 * $0 % 499 }, noise: Tensor.randn([b, 4, h, w], seed: seed + 8),
            referenceKept: Array(repeating: true, count: b))
    }
}
