// What the denoiser predicts (training.prediction_type): the training target and the sampler's
// reading of an output agree for every type, the sampler's DDIM step gives the same next latent
// whichever type produced the (exact) output.
import XCTest
import LeffaTensor
import LeffaDiffusion

final class PredictionTests: XCTestCase {
    func testTargetAndSplitAgree() {
        let schedule = NoiseSchedule()
        let x0 = Tensor.randn([3, 2, 4, 4], seed: 1), eps = Tensor.randn([3, 2, 4, 4], seed: 2)
        let t = [1, 480, 999]
        let xt = schedule.addNoise(x0, noise: eps, timesteps: t)
        for p in Prediction.allCases {
            let target = p.target(x0, noise: eps, timesteps: t, schedule: schedule)
            let per = x0.count / 3
            for s in 0..<3 {
                let a = schedule.alphasCumprod[t[s]]
                let sa = Float(a.squareRoot()), sb = Float((1 - a).squareRoot())
                for i in 0..<per {
                    let k = s * per + i
                    let (x, e) = p.split(output: target.data[k], x: xt.data[k], sqrtAlpha: sa, sqrtOneMinusAlpha: sb)
                    // x̂₀ from noise at t = 999 divides by √ᾱ ≈ 0.068: allow the float error that grows.
                    XCTAssertEqual(x, x0.data[k], accuracy: 2e-4 / sa, "\(p) t=\(t[s]) x0")
                    XCTAssertEqual(e, eps.data[k], accuracy: 2e-4 / sb, "\(p) t=\(t[s]) eps")
                }
            }
        }
    }

    func testSchedulerStepIsTheSameForEveryExactPrediction() {
        let schedule = NoiseSchedule()
        let x0 = Tensor.randn([1, 3, 4, 4], seed: 3), eps = Tensor.randn([1, 3, 4, 4], seed: 4), z = Tensor.randn([1, 3, 4, 4], seed: 5)
        let xt = schedule.addNoise(x0, noise: eps, timesteps: [301])
        for kind in SchedulerKind.allCases {
            var out: [[Float]] = []
            for p in Prediction.allCases {
                let rule = DiffusionScheduler(kind: kind, steps: 10, prediction: p)
                let o = p.target(x0, noise: eps, timesteps: [301], schedule: schedule)
                out.append(rule.step(xt, output: o, t: 301, noise: z).scalars)
            }
            for k in 1..<out.count { for i in 0..<out[0].count { XCTAssertEqual(out[k][i], out[0][i], accuracy: 1e-4, "\(kind)") } }
        }
    }
}
