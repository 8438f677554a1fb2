// Classifier-free guidance and its rescaling (Guidance.swift) worked by hand: g = u + s·(c − u),
// then φ·g·σ(c)/σ(g) + (1 − φ)·g per sample with the sample standard deviation. Against diffusers'
// rescale_noise_cfg inside whole sampling steps: LeffaTrainingTests' SchedulerFixtureTests.
import XCTest
import LeffaTensor
import LeffaDiffusion

final class GuidanceTests: XCTestCase {
    /// φ·g·σ(c)/σ(g) + (1 − φ)·g with the sample standard deviation, worked by hand.
    func testGuidanceRescaleByHand() {
        // c = [1, 3] (σ = √2), u = [0, 0]: g = 2c = [2, 6] (σ = 2√2); rescaled g·σ(c)/σ(g) = [1, 3].
        let c = Tensor([1, 3], shape: [1, 2]), u = Tensor([0, 0], shape: [1, 2])
        XCTAssertEqual(Guidance(scale: 2).combine(conditional: c, unconditional: u).scalars, [2, 6])
        XCTAssertEqual(Guidance(scale: 2, rescale: 1).combine(conditional: c, unconditional: u).scalars, [1, 3])
        // φ = 2.5 (the published φ = s): 2.5·[1, 3] − 1.5·[2, 6] = [−0.5, −1.5].
        let g = Guidance(scale: 2, rescale: 2.5).combine(conditional: c, unconditional: u).scalars
        XCTAssertEqual(g[0], -0.5, accuracy: 1e-6); XCTAssertEqual(g[1], -1.5, accuracy: 1e-6)
        // Per sample: a second sample with its own deviations; a constant output is left alone.
        let c2 = Tensor([1, 3, 5, 5], shape: [2, 2]), u2 = Tensor([0, 0, 5, 5], shape: [2, 2])
        XCTAssertEqual(Guidance(scale: 2, rescale: 1).combine(conditional: c2, unconditional: u2).scalars, [1, 3, 5, 5])
    }
}
