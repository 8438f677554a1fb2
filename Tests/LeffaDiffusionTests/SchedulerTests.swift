// The sampler's update rules at their edges, where the scheduler fixture (LeffaTrainingTests'
// SchedulerFixtureTests: diffusers' steps at 7 to 30 inference steps) does not reach: the
// timesteps of 1, 3 and 999/1000 steps (diffusers' values from Scripts/make_schedule_values.py),
// which steps need noise, a DDIM step from the true noise lands on the forward process, and the
// last steps' ᾱ_prev (DDIM: ᾱ_0, set_alpha_to_one false; DDPM: 1, so it returns x̂₀).
import XCTest
import LeffaTensor
import LeffaDiffusion
import TestSupport

final class SchedulerTests: XCTestCase {
    /// x̂₀ recovered from x_t in float32 divides by √ᾱ_t (≈ 0.1 at t = 901): errors of 1e-7 grow.
    static let recovered = Tolerance(rtol: 1e-5, atol: 1e-5, why: "x̂₀ recovered from x_t in float32")

    func testTimesteps() {
        XCTAssertEqual(DiffusionScheduler(kind: .ddpm, steps: 1).timesteps(), [1])
        XCTAssertEqual(DiffusionScheduler(kind: .ddim, steps: 3).timesteps(), [667, 334, 1])
        let all = DiffusionScheduler(kind: .ddim, steps: 999).timesteps()
        XCTAssertEqual(all, Array((1...999).reversed()))
        // diffusers' 1000 steps reach t = 1000, which has no ᾱ: left out, the other 999 as above.
        XCTAssertEqual(DiffusionScheduler(kind: .ddim, steps: 1000).timesteps(), all)
        let rule = DiffusionScheduler(kind: .ddpm, steps: 10)
        XCTAssertEqual(rule.stride, 100)
        XCTAssertEqual(rule.previous(901), 801)
        XCTAssertLessThan(rule.previous(1), 0)
    }

    func testOnlyDDPMStepsFromPositiveTimestepsNeedNoise() {
        let ddpm = DiffusionScheduler(kind: .ddpm, steps: 10), ddim = DiffusionScheduler(kind: .ddim, steps: 10)
        for t in [1, 101, 901] {
            XCTAssertTrue(ddpm.needsNoise(at: t), "DDPM from t = \(t)")
            XCTAssertFalse(ddim.needsNoise(at: t), "DDIM from t = \(t)")
        }
        XCTAssertFalse(ddpm.needsNoise(at: 0))
    }

    /// Given the true ε of x_t = addNoise(x₀, ε, t), a DDIM step (η = 0) gives addNoise(x₀, ε, t_prev)
    /// for every prediction type's exact output; from the last timestep it uses ᾱ_0.
    func testDDIMStepFromTheTrueNoiseLandsOnTheForwardProcess() {
        let s = NoiseSchedule()
        let x0 = Tensor.randn([1, 2, 3, 4], seed: 21), eps = Tensor.randn([1, 2, 3, 4], seed: 22)
        for p in Prediction.allCases {
            let rule = DiffusionScheduler(kind: .ddim, steps: 10, prediction: p)
            for t in [901, 501, 101, 1] {
                let xt = s.addNoise(x0, noise: eps, timesteps: [t])
                let output = p.target(x0, noise: eps, timesteps: [t], schedule: s)
                let got = rule.step(xt, output: output, t: t).scalars
                let prev = t == 1 ? 0 : t - 100   // past the end: ᾱ_0 (set_alpha_to_one false)
                let want = s.addNoise(x0, noise: eps, timesteps: [prev]).scalars
                let (ratio, at) = worstError(got, want, Self.recovered)
                XCTAssertLessThanOrEqual(ratio, 1, "\(p) t = \(t): element \(at): \(got[at]) vs \(want[at])")
            }
        }
    }

    /// The last DDPM step (ᾱ_prev = 1) returns x̂₀: the posterior mean is x̂₀ and its variance
    /// is floored at 1e-20 (σ = 1e-10), so the noise barely counts.
    func testLastDDPMStepReturnsThePredictedSample() {
        let s = NoiseSchedule()
        let x0 = Tensor.randn([1, 2, 3, 4], seed: 31), eps = Tensor.randn([1, 2, 3, 4], seed: 32)
        let z = Tensor.randn([1, 2, 3, 4], seed: 33)
        let xt = s.addNoise(x0, noise: eps, timesteps: [1])
        let got = DiffusionScheduler(kind: .ddpm, steps: 10).step(xt, output: eps, t: 1, noise: z).scalars
        let (ratio, at) = worstError(got, x0.scalars, Self.recovered)
        XCTAssertLessThanOrEqual(ratio, 1, "element \(at): \(got[at]) vs x₀ \(x0[at])")
    }
}
