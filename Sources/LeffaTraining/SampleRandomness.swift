// Every random choice of training is a pure function of (seed, step, global sample index): the
// timestep, the noise, the reference dropout, the VAE posterior draw and the augmentation of a sample do not depend
// on which rank handles it, on the rank count, or on whether the run was interrupted.
import LeffaTensor
import LeffaRunFormat

public struct SampleRandomness: Sendable {
    public let seed: UInt64
    public init(seed: UInt64) { self.seed = seed }

    enum Stream: UInt64 {
        case timestep = 1, noise = 2, dropout = 3, posterior = 4, order = 5, validation = 6, augment = 7
    }
    func key(_ s: Stream, step: Int, sample: Int) -> UInt64 {
        CounterRNG.key(seed, s.rawValue, UInt64(step), UInt64(sample))
    }

    /// Uniform timestep in 0..<steps.
    public func timestep(step: Int, sample: Int, steps: Int = 1000) -> Int {
        Int(CounterRNG.bits(key(.timestep, step: step, sample: sample), 0) % UInt64(steps))
    }
    /// Standard normal noise of `shape`.
    public func noise(step: Int, sample: Int, shape: [Int]) -> Tensor {
        Tensor.randn(shape, seed: key(.noise, step: step, sample: sample))
    }
    /// Whether the reference is dropped (replaced by zeros) for classifier-free guidance.
    public func dropsReference(step: Int, sample: Int, probability: Float) -> Bool {
        probability > 0 && CounterRNG.uniform(key(.dropout, step: step, sample: sample), 0) < probability
    }
    /// The sampling seed (starting noise, DDPM step noise) of validation pair `pair`: the same at every sampling of every
    /// stage (only the weights change between two samplings of a pair), same seed → same bits.
    public func validationNoiseSeed(pair: Int) -> UInt64 { key(.validation, step: 0, sample: pair) }
    /// The key of a sample's augmentation (`data.augment`; AugmentConfig.draw turns it into values).
    public func augmentKey(step: Int, sample: Int) -> UInt64 { key(.augment, step: step, sample: sample) }
    /// ε for sampling the VAE posterior of input `which` (0 target, 1 masked, 2 reference).
    public func posteriorNoise(step: Int, sample: Int, which: Int, shape: [Int]) -> Tensor {
        Tensor.randn(shape, seed: CounterRNG.key(key(.posterior, step: step, sample: sample), UInt64(which)))
    }
}
