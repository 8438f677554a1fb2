// The DDPM noise schedule of SD1.5 against diffusers' DDPMScheduler: betas and alphas_cumprod at a
// few timesteps, add_noise and the v-prediction target (get_velocity) of a small batch, all pasted
// as literals from Scripts/make_schedule_values.py (diffusers 0.42.1). Also: add_noise is the
// formula per sample, and a schedule of other settings uses them.
import XCTest
import LeffaTensor
import LeffaDiffusion
import TestSupport

final class NoiseScheduleTests: XCTestCase {
    /// diffusers holds the schedule in float32 (a float32 linspace squared, a float32 cumulative
    /// product); ours is in double. Measured over all 1000 steps: betas within 2.2e-7 relative,
    /// alphas_cumprod within 9.3e-7 (worst at t = 513, hence that entry). beta_end 1 % off moves
    /// β_999 by 8e-3 and ᾱ_999 by 4e-2.
    static let scheduleRelative = 1e-6

    /// (t, β_t, ᾱ_t) from `Scripts/make_schedule_values.py`: the float32 values diffusers holds.
    static let diffusers: [(t: Int, beta: Double, alphaCumprod: Double)] = [
        (0, 0.0008499999530613422, 0.9991499781608582),
        (1, 0.0008546985918655992, 0.9982960224151611),
        (250, 0.0024277609772980213, 0.67379230260849),
        (499, 0.0048037925735116005, 0.27766942977905273),
        (500, 0.004814953543245792, 0.27633246779441833),
        (513, 0.0049612270668148994, 0.25926026701927185),
        (999, 0.011999999172985554, 0.00466009508818388),
    ]

    func testBetasAndAlphasCumprodMatchDiffusers() {
        let s = NoiseSchedule()
        XCTAssertEqual(s.steps, 1000)
        XCTAssertEqual(s.betas.count, 1000)
        XCTAssertEqual(s.alphasCumprod.count, 1000)
        for (t, beta, alpha) in Self.diffusers {
            let eb = abs(s.betas[t] - beta) / beta, ea = abs(s.alphasCumprod[t] - alpha) / alpha
            XCTAssertLessThanOrEqual(eb, Self.scheduleRelative, "β_\(t): \(s.betas[t]), diffusers \(beta)")
            XCTAssertLessThanOrEqual(ea, Self.scheduleRelative, "ᾱ_\(t): \(s.alphasCumprod[t]), diffusers \(alpha)")
        }
    }

    /// Other settings are used: two steps are the two ends, β = (√start)², (√end)².
    func testSettingsAreUsed() {
        let s = NoiseSchedule(steps: 2, betaStart: 0.01, betaEnd: 0.04)
        XCTAssertEqual(s.betas[0], 0.01, accuracy: 1e-15)
        XCTAssertEqual(s.betas[1], 0.04, accuracy: 1e-15)
        XCTAssertEqual(s.alphasCumprod[0], 0.99, accuracy: 1e-15)
        XCTAssertEqual(s.alphasCumprod[1], 0.99 * 0.96, accuracy: 1e-15)
    }

    /// The batch of the script: x0 and noise (2, 3), timesteps 10 and 700.
    static let x0: [Float] = [1.0, -0.5, 0.25, 2.0, 0.0, -1.5]
    static let noise: [Float] = [0.5, 2.0, -1.0, -0.75, 1.25, 0.125]
    static let timesteps = [10, 700]

    /// Float32 outputs of diffusers (its float32 ᾱ) and ours (double ᾱ, float32 coefficients).
    static let againstDiffusers = Tolerance(rtol: 2e-6, atol: 1e-6, why: "diffusers' float32 ᾱ vs our double ᾱ")

    func testAddNoiseMatchesDiffusers() {
        let want: [Float] = [1.0441139936447144, -0.3019627034664154, 0.1509813517332077,
                             -0.14385968446731567, 1.1973141431808472, -0.3111651539802551]
        let got = NoiseSchedule().addNoise(Tensor(Self.x0, shape: [2, 3]), noise: Tensor(Self.noise, shape: [2, 3]),
                                           timesteps: Self.timesteps)
        let (ratio, at) = worstError(got.scalars, want, Self.againstDiffusers)
        XCTAssertLessThanOrEqual(ratio, 1, "element \(at): \(got.scalars[at]), diffusers \(want[at])")
    }

    func testVelocityTargetMatchesDiffusers() {
        let want: [Float] = [0.3997823894023895, 2.039318084716797, -1.0196590423583984,
                             -2.131150960922241, 0.3590804636478424, 1.4726849794387817]
        let x0 = Tensor(Self.x0, shape: [2, 3]), noise = Tensor(Self.noise, shape: [2, 3])
        let got = Prediction.vPrediction.target(x0, noise: noise, timesteps: Self.timesteps, schedule: NoiseSchedule())
        let (ratio, at) = worstError(got.scalars, want, Self.againstDiffusers)
        XCTAssertLessThanOrEqual(ratio, 1, "element \(at): \(got.scalars[at]), diffusers \(want[at])")
    }

    /// x_t = √ᾱ_t · x₀ + √(1−ᾱ_t) · ε in double, each sample at its own timestep (both ends included).
    func testAddNoiseIsTheFormulaPerSample() {
        let s = NoiseSchedule(), t = [0, 999, 1, 500]
        let x0 = Tensor.randn([4, 2, 3, 5], seed: 11), eps = Tensor.randn([4, 2, 3, 5], seed: 12)
        let got = s.addNoise(x0, noise: eps, timesteps: t).scalars
        let per = x0.count / 4
        var want = [Float](repeating: 0, count: x0.count)
        for b in 0..<4 {
            let a = s.alphasCumprod[t[b]]
            for i in b * per..<(b + 1) * per {
                want[i] = Float(a.squareRoot() * Double(x0[i]) + (1 - a).squareRoot() * Double(eps[i]))
            }
        }
        let tolerance = Tolerance(rtol: 1e-6, atol: 1e-6, why: "float32 rounding of two products")
        let (ratio, at) = worstError(got, want, tolerance)
        XCTAssertLessThanOrEqual(ratio, 1, "element \(at) (sample \(at / per)): \(got[at]) vs \(want[at])")
    }
}
