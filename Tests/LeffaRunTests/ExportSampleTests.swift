// export (leffa file, diffusers folders) and sampling on a tiny run.
import XCTest
import Foundation
import LeffaTensor
import LeffaModels
import LeffaDiffusion
import SafeTensors
@testable import LeffaTraining
@testable import LeffaRunFormat
import RunTestSupport

final class ExportSampleTests: XCTestCase {
    override func tearDown() { TinyRun.cleanUp(); super.tearDown() }
    func testExportsReloadWithEqualWeights() throws {
        let dir = try TinyRun.make(steps: [2, 2, 2])
        try TinyRun.train(dir)
        let cfg = try dir.readConfig()
        let (m, _) = try StageWeights.load(run: dir, config: cfg, stage: "lowres", step: nil, ema: false)
        let want = TinyRun.flat(m)

        let file = dir.url.appendingPathComponent("export/leffa.safetensors").path
        try m.export(format: .leffa, to: file, sampleSize: 16)
        XCTAssertEqual(try TinyRun.values(file, config: cfg), want)

        let folder = dir.url.appendingPathComponent("export/diffusers").path
        try m.export(format: .diffusers, to: folder, sampleSize: 16)
        let back = try LeffaModel(config: cfg.model, seed: 77)
        XCTAssertNotEqual(TinyRun.flat(back), want)
        try back.loadDiffusersExport(folder: folder)
        XCTAssertEqual(TinyRun.flat(back), want)

        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/unet/config.json"))) as! [String: Any]
        XCTAssertEqual(json["in_channels"] as? Int, cfg.model.unet.inChannels)
        XCTAssertEqual(json["block_out_channels"] as? [Int], cfg.model.unet.blockOutChannels)
        XCTAssertEqual((json["down_block_types"] as? [String])?.count, cfg.model.unet.levels)
        for key in ["out_channels", "layers_per_block", "attention_head_dim", "norm_num_groups", "cross_attention_dim", "up_block_types", "sample_size"] {
            XCTAssertNotNil(json[key], key)
        }
        let enc = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/unet_encoder/config.json"))) as! [String: Any]
        XCTAssertEqual(enc["in_channels"] as? Int, cfg.model.unet.referenceInChannels)

        // A config that contradicts the model is refused, naming the field.
        var bad = json; bad["layers_per_block"] = 7
        try JSONSerialization.data(withJSONObject: bad).write(to: URL(fileURLWithPath: folder + "/unet/config.json"))
        XCTAssertThrowsError(try back.loadDiffusersExport(folder: folder)) { XCTAssertTrue("\($0)".contains("layers_per_block"), "\($0)") }
    }

    /// Each dtype's overflow threshold is exactly where its conversion starts writing inf, and
    /// `checkRange` refuses from there on, not before.
    func testOverflowThresholdsAreWhereTheConversionsGiveInf() throws {
        let cases: [(ExportDType, (Float) -> UInt16, (UInt16) -> Float)] = [
            (.float16, floatToFloat16Bits, float16BitsToFloat), (.bfloat16, floatToBFloat16Bits, bfloat16BitsToFloat)
        ]
        let m = try LeffaModel(config: .tiny, seed: 0)
        let p = m.parameters.all[3]
        for (dtype, toBits, toFloat) in cases {
            let t = dtype.overflowThreshold!
            XCTAssertEqual(toFloat(toBits(t)), .infinity, "\(dtype)")
            XCTAssertEqual(toFloat(toBits(t.nextDown)), dtype.largestFinite, "\(dtype)")
            p.value.data[0] = -t.nextDown
            XCTAssertNoThrow(try m.checkRange(for: dtype))
            p.value.data[0] = -t
            XCTAssertThrowsError(try m.checkRange(for: dtype)) {
                XCTAssertTrue("\($0)".contains(p.name) && "\($0)".contains("1 value of"), "\($0)")
            }
            p.value.data[0] = .infinity // already inf in float32: not an overflow of the conversion
            XCTAssertNoThrow(try m.checkRange(for: dtype))
        }
        XCTAssertNil(ExportDType.float32.overflowThreshold)
        p.value.data[0] = .greatestFiniteMagnitude
        XCTAssertNoThrow(try m.checkRange(for: .float32))
    }

    /// `debug inputs --timestep`: every sample at that timestep (so a golden check can include
    /// the Leffa term, which needs t below its threshold); out of range is a clear error.
    func testDebugInputsAtAFixedTimestep() throws {
        let dir = try TinyRun.make()
        let out = dir.url.appendingPathComponent("inputs.safetensors")
        _ = try DebugForward.makeInputs(run: dir, stage: nil, count: 2, out: out.path, timestep: 250)
        let t = try SafeTensorsFile(path: out.path).tensor("in.t")
        XCTAssertEqual(t.scalars, [250, 250])
        XCTAssertThrowsError(try DebugForward.makeInputs(run: dir, stage: nil, count: 2, out: out.path + "2", timestep: 1000)) {
            XCTAssertTrue("\($0)".contains("--timestep") && "\($0)".contains("1000"), "\($0)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path + "2"))
    }

    func testDDIMStepIsExactForTheTrueNoise() {
        let s = Sampler(steps: 10)
        XCTAssertEqual(s.timesteps(), [901, 801, 701, 601, 501, 401, 301, 201, 101, 1])
        let x0 = Tensor.randn([1, 3, 4, 4], seed: 1), eps = Tensor.randn([1, 3, 4, 4], seed: 2)
        let xt = s.schedule.addNoise(x0, noise: eps, timesteps: [801])
        let prev = s.diffusion.step(xt, output: eps, t: 801)
        let want = s.schedule.addNoise(x0, noise: eps, timesteps: [701])
        for i in 0..<want.count { XCTAssertEqual(prev.data[i], want.data[i], accuracy: 1e-5) }
        // Guidance: ε_u + g (ε_c − ε_u).
        let g = Guidance(scale: 2.5).combine(conditional: Tensor([1, 2], shape: [1, 2, 1, 1]), unconditional: Tensor([10, 20], shape: [1, 2, 1, 1]))
        let expected: [Float] = [-12.5, -25]   // 10 + 2.5·(1 − 10), 20 + 2.5·(2 − 20)
        XCTAssertEqual(g.scalars, expected)
    }

    func testSampleOnATinyRunIsDeterministicAndUsesTheReference() throws {
        let dir = try TinyRun.make(steps: [2, 2, 2])
        try TinyRun.train(dir)
        let cfg = try dir.readConfig()
        let (m, _) = try StageWeights.load(run: dir, config: cfg, stage: "lowres", step: nil, ema: false)
        let data = dir.url.appendingPathComponent("data/train")
        func first(_ sub: String) throws -> URL {
            let d = data.appendingPathComponent(sub)
            return d.appendingPathComponent(try FileManager.default.contentsOfDirectory(atPath: d.path).sorted().first!)
        }
        let c = try SampleConditions.load(person: first("image"), garment: first("cloth"), mask: first("agnostic-mask"),
                                          densepose: first("image-densepose"), height: 16, width: 16)
        let a = try Sampler(steps: 3, guidance: 2.5, seed: 5).sample(model: m, space: cfg.space, c)
        let b = try Sampler(steps: 3, guidance: 2.5, seed: 5).sample(model: m, space: cfg.space, c)
        let u = try Sampler(steps: 3, guidance: 1, seed: 5).sample(model: m, space: cfg.space, c)
        XCTAssertEqual(a.shape, [1, 3, 16, 16])
        let av = Array(UnsafeBufferPointer(start: a.data, count: a.count))
        XCTAssertEqual(av, Array(UnsafeBufferPointer(start: b.data, count: b.count)))
        XCTAssertNotEqual(av, Array(UnsafeBufferPointer(start: u.data, count: u.count)))
        XCTAssertTrue(av.allSatisfy { $0.isFinite && $0 >= -1 && $0 <= 1 })

        // ref_acceleration: with one DDIM step the middle timestep is that step's, so the reused
        // features are the per-step ones and the result is the same bits; with more it differs.
        func sample(_ steps: Int, _ guidance: Float, accelerated: Bool) throws -> [Float] {
            var s = Sampler(steps: steps, guidance: guidance, seed: 5)
            s.refAcceleration = accelerated
            let t = try s.sample(model: m, space: cfg.space, c)
            return Array(UnsafeBufferPointer(start: t.data, count: t.count))
        }
        for g: Float in [1, 2.5] {
            XCTAssertEqual(try sample(1, g, accelerated: true), try sample(1, g, accelerated: false), "guidance \(g)")
        }
        let fast = try sample(3, 2.5, accelerated: true)
        XCTAssertNotEqual(fast, av)
        XCTAssertTrue(fast.allSatisfy { $0.isFinite && $0 >= -1 && $0 <= 1 })
    }
}
