// Turns positions of a stage's sample order into model inputs: loads the samples at the stage
// resolution, augments them (`data.augment`), encodes them with the VAE (latent space) or uses the
// pixels (pixel space), and adds the keyed randomness (timesteps, noise, reference dropout).
import Foundation
import LeffaRunFormat
import LeffaTensor
import LeffaModels
import LeffaData

public final class BatchBuilder {
    public let dataset: any PairedImageDataset
    public let config: RunConfig
    let model: LeffaModel
    let random: SampleRandomness
    private var cachedEpoch: (Int, [Int])? = nil
    /// RUN/cache, when `leffa-coord prepare` may have filled it.
    public let cacheRoot: URL?
    private var caches: [String: SampleCache?] = [:]

    public init(dataset: any PairedImageDataset, config: RunConfig, model: LeffaModel, cacheRoot: URL? = nil) {
        self.dataset = dataset; self.config = config; self.model = model; self.cacheRoot = cacheRoot
        random = SampleRandomness(seed: config.seed)
    }

    /// The prepared cache of a resolution, nil when there is none.
    public func cache(height: Int, width: Int) -> SampleCache? {
        guard let cacheRoot else { return nil }
        let key = "\(height)x\(width)"
        if let c = caches[key] { return c }
        let c = SampleCache(root: cacheRoot, config: config, dataset: dataset, height: height, width: width)
        caches[key] = c
        return c
    }

    /// The dataset index at `position` of the stage's order (epochs of seeded permutations).
    public func sampleIndex(position: Int, stageIndex: Int) -> Int {
        let n = dataset.count, epoch = position / n
        if cachedEpoch?.0 != epoch {
            cachedEpoch = (
                epoch, epochPermutation(count: n, seed: CounterRNG.key(config.seed, UInt64(stageIndex)), epoch: epoch)
            )
        }
        return cachedEpoch!.1[position % n]
    }

    /// Loads samples (in the given order) at the stage's resolution.
    /// From the prepared cache when there is one for this resolution (the same tensors).
    public func load(indices: [Int], stage: StageConfig) throws -> ImageBatch {
        ImageBatch(try samples(indices: indices, stage: stage))
    }

    func samples(indices: [Int], stage: StageConfig) throws -> [TrainingSample] {
        if let c = cache(height: stage.height, width: stage.width) { return try indices.map { try c.sample($0) } }
        return try indices.map { try dataset.sample(at: $0, size: Size(height: stage.height, width: stage.width)) }
    }

    /// Model inputs for the samples at `positions` of optimizer step `step`, each augmented as its
    /// (step, position) key draws when `data.augment` is on.
    public func batch(step: Int, positions: [Int], stage: StageConfig, stageIndex: Int, timestepOverride: Int? = nil)
        throws -> (LatentBatch, ImageBatch)
    {
        let indices = positions.map { sampleIndex(position: $0, stageIndex: stageIndex) }
        var loaded = try samples(indices: indices, stage: stage)
        if let a = config.data.augment {
            loaded = zip(loaded, positions).map { augment($0, a.draw(key: random.augmentKey(step: step, sample: $1))) }
        }
        let data = ImageBatch(loaded)
        return (
            try inputs(
                data, step: step, positions: positions, timestepOverride: timestepOverride,
                cachedMoments: config.data.augment == nil), data
        )
    }

    /// The latents (or pixels) and randomness for a loaded batch. Randomness is keyed by the
    /// global position of each sample. `cachedMoments`: the prepared VAE moments may stand for the
    /// images (not when they were augmented after loading).
    public func inputs(
        _ d: ImageBatch, step: Int, positions: [Int], timestepOverride: Int? = nil, dropout: Bool = true,
        cachedMoments: Bool = true
    ) throws -> LatentBatch {
        let b = positions.count
        var latent: Tensor, masked: Tensor, ref: Tensor, maskL: Tensor, dense: Tensor
        switch config.space {
        case .pixel:
            latent = d.image; masked = d.maskedImage; ref = d.reference; maskL = d.inpaintMask; dense = d.densepose
        case .latent:
            let f = config.model.vae.downscale, h = d.image.shape[2] / f, w = d.image.shape[3] / f
            let c = config.model.vae.latentChannels, s = config.model.vae.scalingFactor
            // Prepared moments: the same draw, mean + exp(logvar/2)·ε, without the encoder pass.
            if cachedMoments, let cache = cache(height: d.image.shape[2], width: d.image.shape[3]) {
                func draw(_ meanName: String, _ logvarName: String, _ which: Int) throws -> Tensor {
                    let mean = try cache.stacked(d.indices, meanName), logvar = try cache.stacked(d.indices, logvarName)
                    let std = Tensor(zeros: logvar.shape)
                    for i in 0..<std.count { std[i] = Foundation.exp(0.5 * logvar[i]) }
                    let eps = concat(
                        positions.map {
                            random.posteriorNoise(step: step, sample: $0, which: which, shape: [1, c, h, w])
                        }, dim: 0)
                    return GradMode.withoutGrad { (mean + std * eps) * s }
                }
                latent = try draw(CacheFields.targetMean, CacheFields.targetLogvar, 0)
                masked = try draw(CacheFields.maskedMean, CacheFields.maskedLogvar, 1)
                ref = try draw(CacheFields.referenceMean, CacheFields.referenceLogvar, 2)
                maskL = try cache.stacked(d.indices, CacheFields.maskLatent);
                dense = try cache.stacked(d.indices, CacheFields.denseposeLatent)
                break
            }
            func encode(_ x: Tensor, _ which: Int) -> Tensor {
                GradMode.withoutGrad {
                    let post = model.vae.encode(x)
                    let eps = concat(
                        positions.map {
                            random.posteriorNoise(step: step, sample: $0, which: which, shape: [1, c, h, w])
                        }, dim: 0)
                    return post.sample(noise: eps) * s
                }
            }
            latent = encode(d.image, 0); masked = encode(d.maskedImage, 1); ref = encode(d.reference, 2)
            maskL = resizeNearest(d.inpaintMask, size: (h, w)); dense = resizeNearest(d.densepose, size: (h, w))
        }
        let per = [1] + Array(latent.shape.dropFirst())
        let noise = concat(positions.map { random.noise(step: step, sample: $0, shape: per) }, dim: 0)
        let timesteps = positions.map { timestepOverride ?? random.timestep(step: step, sample: $0) }
        let kept = positions.map {
            !(dropout && random.dropsReference(step: step, sample: $0, probability: config.referenceDropout))
        }
        if kept.contains(false) {
            let r = ref.copy(), n = r.count / b
            for (i, k) in kept.enumerated() where !k { (r.data + i * n).update(repeating: 0, count: n) }
            ref = r
        }
        return LatentBatch(
            latent: latent.detached(), maskLatent: maskL.detached(), maskedLatent: masked.detached(),
            denseposeLatent: dense.detached(),
            refLatent: ref.detached(), imgRef: d.reference, imgTgt: d.image, lossMask: d.lossMask,
            timesteps: timesteps, noise: noise, referenceKept: kept)
    }
}
