// The sampler against diffusers and the published pipeline (Fixtures/scheduler.json, written by
// Scripts/make_scheduler_fixture.py): DDPMScheduler and DDIMScheduler steps with classifier-free
// guidance and rescale_noise_cfg on a fixed fake model, with diffusers' own step noise; the
// published repaint bit for bit (Pillow's blur). Also: repaint's known pixels, and DDPM sampling
// of a real (tiny) model giving the same bits for a seed. (The rescaling by hand:
// LeffaDiffusionTests/GuidanceTests.)
import XCTest
import Foundation
import LeffaTensor
import LeffaDiffusion
import LeffaData
import LeffaModels
import TestSupport
@testable import LeffaTraining
@testable import LeffaRunFormat
import RunTestSupport

final class SchedulerFixtureTests: XCTestCase {
    struct Fixture: Decodable {
        struct Case: Decodable {
            var name: String, scheduler: String, prediction_type: String
            var steps: Int, guidance: Float, guidance_rescale: Float
            var shape: [Int], timesteps: [Int]
            var x0: [Float], P: [Float], Q: [Float], noise: [[Float]], after: [[Float]]
        }
        struct RepaintCase: Decodable {
            var name: String, height: Int, width: Int, blur_radius: Int
            var person: String, mask: String, generated: String, result: String
        }
        var cases: [Case]
        var repaint: [RepaintCase]
    }

    /// Relative to the largest value of x: float32 against diffusers' float32 steps, our ᾱ computed
    /// in double (diffusers: a float32 cumulative product), and x̂₀ divides by √ᾱ ≈ 0.07 at the
    /// first steps. Measured worst: 3.9e-7 for one step, 7.0e-7 over a 30-step chain; a wrong
    /// variance ("fixed_large") is off by 4e-2 or more.
    static let stepTolerance: Float = 1e-5

    static func load() throws -> Fixture {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/scheduler.json")
        return try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
    }

    /// The fixture's fake model: c = (0.8 − 0.3 s) x + (0.5 + s) P, u = 0.6 x + 0.2 s Q − 0.1, s = t/1000.
    func fakeModel(_ x: Tensor, t: Int, P: Tensor, Q: Tensor) -> (c: Tensor, u: Tensor) {
        let s = Float(Double(t) / 1000)
        let c = Tensor(zeros: x.shape), u = Tensor(zeros: x.shape)
        let a = Float(0.8) - Float(0.3) * s, b = Float(0.5) + s, q = Float(0.2) * s
        for i in 0..<x.count {
            c.data[i] = a * x.data[i] + b * P.data[i]
            u.data[i] = Float(0.6) * x.data[i] + q * Q.data[i] - Float(0.1)
        }
        return (c, u)
    }

    /// max |a − b| / max(max |b|, 1).
    func error(_ a: Tensor, _ b: [Float]) -> Float {
        var worst: Float = 0, scale: Float = 1
        for i in 0..<b.count { worst = max(worst, abs(a.data[i] - b[i])); scale = max(scale, abs(b[i])) }
        return worst / scale
    }

    /// Every step of every case from diffusers' previous x (each step on its own), and the whole
    /// chain from the first x (errors carried along).
    func testStepsMatchDiffusers() throws {
        let f = try Self.load()
        XCTAssertEqual(f.cases.map(\.scheduler).filter { $0 == "ddpm" }.count, 3)
        var report: [String] = []
        for k in f.cases {
            let kind = try XCTUnwrap(SchedulerKind(rawValue: k.scheduler)), p = try XCTUnwrap(Prediction(rawValue: k.prediction_type))
            let rule = DiffusionScheduler(kind: kind, steps: k.steps, prediction: p)
            XCTAssertEqual(rule.timesteps(), k.timesteps, k.name)
            let guidance = Guidance(scale: k.guidance, rescale: k.guidance_rescale)
            let P = Tensor(k.P, shape: k.shape), Q = Tensor(k.Q, shape: k.shape)
            XCTAssertEqual(k.noise.count, kind == .ddpm ? k.timesteps.count : 0, "one noise tensor per DDPM step")
            var chain = Tensor(k.x0, shape: k.shape)
            var worstStep: Float = 0, worstChain: Float = 0
            for (i, t) in k.timesteps.enumerated() {
                let noise = kind == .ddpm ? Tensor(k.noise[i], shape: k.shape) : nil
                XCTAssertEqual(rule.needsNoise(at: t), kind == .ddpm)
                func step(_ x: Tensor) -> Tensor {
                    let (c, u) = fakeModel(x, t: t, P: P, Q: Q)
                    return rule.step(x, output: guidance.combine(conditional: c, unconditional: u), t: t, noise: noise)
                }
                let single = step(Tensor(i == 0 ? k.x0 : k.after[i - 1], shape: k.shape))
                worstStep = max(worstStep, error(single, k.after[i]))
                chain = step(chain)
                worstChain = max(worstChain, error(chain, k.after[i]))
            }
            report.append(String(format: "%@: worst step %.2e, chain %.2e", k.name, worstStep, worstChain))
            XCTAssertLessThanOrEqual(worstStep, Self.stepTolerance, k.name)
            XCTAssertLessThanOrEqual(worstChain, Self.stepTolerance, k.name)
        }
        print("scheduler fixture: " + report.joined(separator: "; "))
    }

    /// The published repaint on the fixture's images: every byte as Pillow and numpy wrote it.
    func testRepaintMatchesThePublishedCode() throws {
        let f = try Self.load()
        XCTAssertEqual(f.repaint.map(\.blur_radius), [1, 3])
        for r in f.repaint {
            func image(_ s: String, _ c: Int) throws -> Image {
                Image(height: r.height, width: r.width, channels: c, pixels: [UInt8](try XCTUnwrap(Data(base64Encoded: s))))
            }
            XCTAssertEqual(Repaint.blurRadius(height: r.height), r.blur_radius)
            let out = Repaint.apply(person: try image(r.person, 3), mask: try image(r.mask, 1), generated: try image(r.generated, 3))
            let want = try image(r.result, 3)
            let diff = zip(out.pixels, want.pixels).filter { $0 != $1 }.count
            XCTAssertEqual(diff, 0, "\(r.name): \(diff) of \(want.pixels.count) bytes differ")
        }
    }

    /// Known pixels: no mask gives the person, a full mask the generated image, and a box keeps
    /// the person beyond the blur's reach outside it and the generated image deep inside it.
    func testRepaintKnownPixels() {
        let h = 40, w = 30
        let person = Image(height: h, width: w, channels: 3, pixels: (0..<h * w * 3).map { UInt8($0 % 251) })
        let generated = Image(height: h, width: w, channels: 3, pixels: (0..<h * w * 3).map { UInt8(($0 * 7 + 3) % 256) })
        XCTAssertEqual(Repaint.apply(person: person, mask: Image(height: h, width: w, channels: 1, fill: 0), generated: generated), person)
        XCTAssertEqual(Repaint.apply(person: person, mask: Image(height: h, width: w, channels: 1, fill: 255), generated: generated), generated)
        var mask = Image(height: h, width: w, channels: 1, fill: 0)
        for y in 10..<30 { for x in 8..<22 { mask[y, x, 0] = 255 } }
        let out = Repaint.apply(person: person, mask: mask, generated: generated)
        // σ = 1: three passes of a box of radius 0.25 reach 3 pixels.
        for y in 0..<h {
            for x in 0..<w {
                let inside = (13..<27).contains(y) && (11..<19).contains(x)
                let outside = !(7..<33).contains(y) || !(5..<25).contains(x)
                for c in 0..<3 {
                    if inside { XCTAssertEqual(out[y, x, c], generated[y, x, c], "(\(y), \(x)) inside") }
                    if outside { XCTAssertEqual(out[y, x, c], person[y, x, c], "(\(y), \(x)) outside") }
                }
            }
        }
        // On the edge, a blend of the two.
        let e = (Int(out[20, 8, 0]), Int(person[20, 8, 0]), Int(generated[20, 8, 0]))
        XCTAssertTrue((min(e.1, e.2)...max(e.1, e.2)).contains(e.0) && e.0 != e.1 && e.0 != e.2, "\(e)")
    }

    /// DDPM sampling of a tiny model: the same seed gives the same bits (also with another thread
    /// count), another seed or DDIM differs, and the step noise is the seed's stream.
    func testDDPMSamplingIsBitDeterministicForASeed() throws {
        let cfg = try RunConfig.parse(tinyConfig(), source: "t.yaml")
        let m = try LeffaModel(config: cfg.model, seed: 3)
        let mask = Tensor(zeros: [1, 1, 16, 16])
        for y in 4..<12 { for x in 3..<13 { mask.data[y * 16 + x] = 1 } }
        let c = SampleConditions(person: Tensor.uniform([1, 3, 16, 16], seed: 1, in: -1...1), garment: Tensor.uniform([1, 3, 16, 16], seed: 2, in: -1...1),
                                 mask: mask, densepose: Tensor.uniform([1, 3, 16, 16], seed: 4, in: -1...1))
        func run(_ kind: SchedulerKind, seed: UInt64, threads: Int = Parallel.threads) throws -> [Float] {
            let saved = Parallel.threads
            Parallel.threads = threads
            defer { Parallel.threads = saved }
            var s = Sampler(scheduler: kind, steps: 4, guidance: 2.5, guidanceRescale: 2.5, seed: seed)
            s.prediction = cfg.prediction
            return try s.sample(model: m, space: cfg.space, c).scalars
        }
        let a = try run(.ddpm, seed: 9)
        XCTAssertEqual(a, try run(.ddpm, seed: 9), "same seed, same bits")
        XCTAssertEqual(a, try run(.ddpm, seed: 9, threads: 1), "same bits with one thread")
        XCTAssertEqual(a, try run(.ddpm, seed: 9, threads: 3), "same bits with three threads")
        XCTAssertNotEqual(a, try run(.ddpm, seed: 10))
        XCTAssertNotEqual(a, try run(.ddim, seed: 9))
        XCTAssertTrue(a.allSatisfy { $0.isFinite && $0 >= -1 && $0 <= 1 })

        // The step noise: stream key(seed, "STEP", k), independent of the starting noise and of k's neighbours.
        let s = Sampler(scheduler: .ddpm, seed: 9)
        XCTAssertEqual(s.stepNoise(2, shape: [1, 3, 4, 4]).scalars, s.stepNoise(2, shape: [1, 3, 4, 4]).scalars)
        XCTAssertNotEqual(s.stepNoise(2, shape: [1, 3, 4, 4]).scalars, s.stepNoise(3, shape: [1, 3, 4, 4]).scalars)
        XCTAssertNotEqual(s.stepNoise(0, shape: [1, 3, 4, 4]).scalars, Tensor.randn([1, 3, 4, 4], seed: 9).scalars)
    }
}
