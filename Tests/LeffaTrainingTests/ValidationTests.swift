// Validation sampling during training: PNG rows at the due steps (and each stage's last step) that
// read back at the expected size, byte-identical across identical runs, sampled with the EMA
// weights, without changing training; latent space decodes through the VAE; bad `validation`
// fields give errors that name the field.
import XCTest
import Foundation
import LeffaTensor
import LeffaData
import LeffaModels
import LeffaDiffusion
import LeffaTraining
import LeffaRunFormat
import TestSupport
import RunTestSupport

final class ValidationTests: XCTestCase {
    static let block = "  validation: {every: 2, count: 2, steps: 2, guidance: 2.0}"

    /// The validation records of a stage.
    func records(_ run: RunDirectory, _ stage: String) throws -> [ValidationRecord] {
        let text = try String(contentsOf: run.validationLogURL(stage), encoding: .utf8)
        return try text.split(separator: "\n").map { try JSONDecoder().decode(ValidationRecord.self, from: Data($0.utf8)) }
    }

    /// Two stages (3 steps and 1), validation every 2 steps: samples at steps 2 and 3 (the last) of
    /// s0 and 1 (the last) of s1; each PNG is a row of 4 panels 16×16 with 2-pixel gaps; one JSON line per
    /// sampling names the files; metrics.jsonl still holds only step lines.
    func testSamplesAtDueStepsAndStageEnds() throws {
        let stages = "  - {name: s0, resolution: 16x16, steps: 3, batch: 2, lr: 1.0e-3}\n  - {name: s1, resolution: 16x16, steps: 1, batch: 2, lr: 1.0e-3}"
        let run = try makeRun(self, config: tinyConfig(stages: stages, training: Self.block), tag: "val-steps")
        let log = LogBox()
        XCTAssertEqual(try quietTrainer(run, log: log).train(), .stageFinished(next: "s1"))
        XCTAssertEqual(try quietTrainer(run, log: log).train(), .stageFinished(next: nil))
        XCTAssertTrue(log.text.contains("first 2 pair(s) of the train split"), log.text)   // no test split: falls back

        for (stage, steps) in [("s0", [2, 3]), ("s1", [1])] {
            let dir = run.samplesURL(stage)
            let folders = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
            XCTAssertEqual(folders, steps.map { String(format: "step-%08d", $0) })
            let recs = try records(run, stage)
            XCTAssertEqual(recs.map(\.step), steps)
            for r in recs {
                XCTAssertEqual(r.files, ["0-000000_00.png", "1-000001_00.png"].map { "stages/\(stage)/samples/" + String(format: "step-%08d/", r.step) + $0 })
                XCTAssertTrue(r.ema && r.split == "train" && r.scheduler == "ddim" && r.steps == 2 && r.seconds > 0)
                XCTAssertTrue(r.guidanceRescale == 0 && !r.repaint)
                for f in r.files {
                    let img = try ImageIO.read(run.url.appendingPathComponent(f), channels: 3)
                    XCTAssertEqual(img.size, Size(height: 16, width: 4 * 16 + 3 * 2), f)
                }
            }
            XCTAssertEqual(try readMetrics(run, stage: stage).count, stage == "s0" ? 3 : 1)
        }
    }

    /// Two identical runs write byte-identical PNGs. Validation leaves training untouched: the
    /// weights and EMA at the end equal those of a run without it. The sample panel is what the
    /// DDIM sampler gives with the EMA weights (final-ema.safetensors) and the pair's fixed noise
    /// seed, and not what it gives with the trained weights (so the test can fail).
    func testDeterministicWithEMAWeightsAndTrainingUnchanged() throws {
        let stage = "  - {name: s0, resolution: 16x16, steps: 2, batch: 2, lr: 3.0e-3}"
        let cfg = tinyConfig(stages: stage, training: Self.block)
        let a = try makeRun(self, config: cfg, tag: "val-a"), b = try makeRun(self, config: cfg, tag: "val-b")
        let plain = try makeRun(self, config: tinyConfig(stages: stage), tag: "val-off")
        let ta = try quietTrainer(a), tPlain = try quietTrainer(plain)
        _ = try ta.train(); _ = try quietTrainer(b).train(); _ = try tPlain.train()

        let pa = folderBytes(a.samplesURL("s0"))
        XCTAssertEqual(pa.keys.sorted(), ["/step-00000002/0-000000_00.png", "/step-00000002/1-000001_00.png"])
        XCTAssertEqual(pa, folderBytes(b.samplesURL("s0")))
        XCTAssertFalse(FileManager.default.fileExists(atPath: plain.samplesURL("s0").path))

        XCTAssertTrue(sameBits(ta.model.parameters.values!, tPlain.model.parameters.values!), "validation changed the trained weights")
        XCTAssertTrue(sameBits(ta.ema!, tPlain.ema!), "validation changed the EMA")

        // Re-sample pair 1 at the last step outside the trainer, with each set of final weights.
        let config = try a.readConfig()
        let set = try ValidationSet.open(config: config, root: a.url.appendingPathComponent("data"), stage: config.stages[0])
        let png = try ImageIO.read(a.samplesURL("s0").appendingPathComponent("step-00000002/1-000001_00.png"), channels: 3)
        /// Panel `k` (16×16, 2-pixel gaps) of a row, RGB.
        func panel(_ img: Image, _ k: Int) -> [UInt8] {
            var out: [UInt8] = []
            for y in 0..<16 {
                let start: Int = (y * img.width + k * 18) * 3
                out += img.pixels[start..<(start + 48)]
            }
            return out
        }
        func resample(_ weights: String) throws -> [UInt8] {
            let m = try LeffaModel(config: config.model, seed: 99)
            try m.loadWeights(from: a.stageURL("s0").appendingPathComponent(weights).path)
            let sampler = Sampler(steps: 2, guidance: 2.0, seed: SampleRandomness(seed: 0).validationNoiseSeed(pair: 1))
            return Image(tensor: try sampler.sample(model: m, space: .pixel, set.conditions(1))).pixels
        }
        XCTAssertEqual(panel(png, 2), try resample("final-ema.safetensors"))
        XCTAssertNotEqual(panel(png, 2), try resample("final.safetensors"))
        XCTAssertEqual(panel(png, 3), Image(tensor: set.samples[1].image).pixels, "the last panel is the target")
    }

    /// The published pipeline's sampler in the config (scheduler ddpm, guidance_rescale, repaint):
    /// the record says so, the sample panel is what a DDPM Sampler with rescaling gives with the EMA
    /// weights, repainted into the person, so away from the mask it is the target's pixels.
    func testDDPMRescaledRepaintedSamples() throws {
        let block = "  validation: {every: 2, count: 2, steps: 3, guidance: 2.0, scheduler: ddpm, guidance_rescale: 2.0, repaint: true}"
        let run = try makeRun(self, config: tinyConfig(stages: "  - {name: s0, resolution: 16x16, steps: 2, batch: 2, lr: 3.0e-3}", training: block), tag: "val-ddpm")
        _ = try quietTrainer(run).train()
        let r = try XCTUnwrap(try records(run, "s0").first)
        XCTAssertEqual(r.scheduler, "ddpm"); XCTAssertEqual(r.steps, 3); XCTAssertEqual(r.guidanceRescale, 2); XCTAssertTrue(r.repaint)

        let config = try run.readConfig()
        XCTAssertEqual(config.validation.scheduler, .ddpm)
        let set = try ValidationSet.open(config: config, root: run.url.appendingPathComponent("data"), stage: config.stages[0])
        let m = try LeffaModel(config: config.model, seed: 99)
        try m.loadWeights(from: run.stageURL("s0").appendingPathComponent("final-ema.safetensors").path)
        for pair in 0..<2 {
            let png = try ImageIO.read(run.url.appendingPathComponent(r.files[pair]), channels: 3)
            func panel(_ k: Int) -> Image {
                var out = Image(height: 16, width: 16, channels: 3)
                for y in 0..<16 { for x in 0..<16 { for c in 0..<3 { out[y, x, c] = png[y, k * 18 + x, c] } } }
                return out
            }
            let sampler = Sampler(scheduler: .ddpm, steps: 3, guidance: 2.0, guidanceRescale: 2.0, seed: SampleRandomness(seed: 0).validationNoiseSeed(pair: pair))
            let plain = Image(tensor: try sampler.sample(model: m, space: .pixel, set.conditions(pair)))
            XCTAssertEqual(panel(2), set.conditions(pair).repainted(plain), "pair \(pair)")
            XCTAssertNotEqual(panel(2), plain, "pair \(pair): repainted")
            // Beyond the blur's reach (σ = 1: 3 pixels) of the mask, the person: the target panel.
            let mask = set.samples[pair].inpaintMask
            var checked = 0
            for y in 0..<16 {
                for x in 0..<16 {
                    var near = false
                    for dy in -3...3 { for dx in -3...3 {
                        let yy = min(max(y + dy, 0), 15), xx = min(max(x + dx, 0), 15)
                        if mask.data[yy * 16 + xx] > 0.5 { near = true }
                    } }
                    if !near { checked += 1; for c in 0..<3 { XCTAssertEqual(panel(2)[y, x, c], panel(3)[y, x, c]) } }
                }
            }
            XCTAssertGreaterThan(checked, 0, "pair \(pair): some pixels away from the mask")
        }
    }

    /// Latent space: conditions go through the VAE encoder and the sample through its decoder; the
    /// row is at image size (64×64 panels, 8×8 latents).
    func testLatentSpaceDecodesThroughTheVAE() throws {
        let cfg = tinyConfig(stages: "  - {name: s0, resolution: 64x64, steps: 1, batch: 2, lr: 1.0e-3}",
                             training: "  validation: {every: 5, count: 1, steps: 2}")
            .replacingOccurrences(of: "space: pixel", with: "space: latent")
        let run = try makeRun(self, config: cfg, count: 2, size: (64, 64), tag: "val-latent")
        _ = try quietTrainer(run).train()
        let recs = try records(run, "s0")
        XCTAssertEqual(recs.map(\.step), [1])   // not due by `every`, but the stage's last step
        let img = try ImageIO.read(run.url.appendingPathComponent(recs[0].files[0]), channels: 3)
        XCTAssertEqual(img.size, Size(height: 64, width: 4 * 64 + 3 * 2))
    }

    /// Each mistake in the block names the field and the expected form; a test split asked for
    /// but absent is refused when the stage starts, before any step.
    func testBadValidationFields() throws {
        let good = tinyConfig(training: Self.block)
        let parsed = try RunConfig.parse(good, source: "t.yaml").validation
        XCTAssertEqual(parsed.every, 2); XCTAssertEqual(parsed.count, 2); XCTAssertEqual(parsed.steps, 2)
        XCTAssertEqual(parsed.guidance, 2.0); XCTAssertNil(parsed.split); XCTAssertFalse(parsed.refAcceleration)
        XCTAssertEqual(parsed.scheduler, .ddim); XCTAssertEqual(parsed.guidanceRescale, 0); XCTAssertFalse(parsed.repaint)
        XCTAssertTrue(try RunConfig.parse(good.replacingOccurrences(of: "guidance: 2.0}", with: "guidance: 2.0, ref_acceleration: true}"),
                                          source: "t.yaml").validation.refAcceleration)
        XCTAssertFalse(try RunConfig.parse(tinyConfig(), source: "t.yaml").validation.enabled)
        let block = "validation: {every: 2, count: 2, steps: 2, guidance: 2.0}"
        let cases: [(String, [String])] = [
            ("validation: {every: -1}", ["t.yaml", "field training.validation.every", "an integer ≥ 0", "-1"]),
            ("validation: {every: 2, count: 0}", ["training.validation.count", "an integer ≥ 1", "0"]),
            ("validation: {every: 2, steps: 0}", ["training.validation.steps", "an integer ≥ 1"]),
            ("validation: {every: 2, steps: 5000}", ["training.validation.steps", "an integer in 1…1000", "5000"]),
            ("validation: {every: 2, guidance: strong}", ["training.validation.guidance", "a number in 0.0…100.0", "strong"]),
            ("validation: {every: 2, split: val}", ["training.validation.split", "test or train", "val"]),
            ("validation: {every: 2, ref_acceleration: maybe}", ["training.validation.ref_acceleration", "true or false", "maybe"]),
            ("validation: {every: 2, scheduler: euler}", ["training.validation.scheduler", "ddpm or ddim", "euler"]),
            ("validation: {every: 2, guidance_rescale: -1}", ["training.validation.guidance_rescale", "a number in 0.0…100.0", "-1"]),
            ("validation: {every: 2, repaint: yes please}", ["training.validation.repaint", "true or false", "yes please"]),
            ("validation: {every: 2, guidance_rescal: 2.5}", ["training.validation.guidance_rescal", "did you mean guidance_rescale"]),
            ("validation: {evry: 2}", ["training.validation.evry", "unknown key evry", "every, count, steps, guidance, split"]),
            ("validation: 20", ["training.validation", "a mapping like {every: 1000", "20"]),
        ]
        for (to, expect) in cases {
            let msg = errorMessage { _ = try RunConfig.parse(good.replacingOccurrences(of: block, with: to), source: "t.yaml") }
            for s in expect { XCTAssertTrue(msg.contains(s), "\(to): '\(s)' not in: \(msg)") }
        }
        let run = try makeRun(self, config: good.replacingOccurrences(of: "guidance: 2.0}", with: "guidance: 2.0, split: test}"), tag: "val-split")
        let msg = errorMessage { _ = try quietTrainer(run).train() }
        XCTAssertTrue(msg.contains("training.validation.split is test") && msg.contains("no usable test split"), msg)
        XCTAssertFalse(FileManager.default.fileExists(atPath: run.checkpointsURL("s0").appendingPathComponent("step-00000002.h5").path))
    }
}
