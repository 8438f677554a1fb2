// The trainer on one process: the loss falls, an interrupted run resumes bit-identically, and a
// damaged newest checkpoint is skipped for the previous one.
import XCTest
import Foundation
import LeffaTensor
import LeffaData
import LeffaModels
import LeffaCheckpoint
import LeffaTraining
import LeffaRunFormat
import TestSupport
import RunTestSupport

final class TrainerTests: XCTestCase {
    /// 30 steps at a high learning rate: the mean loss of the last 5 steps is well under that of
    /// the first 5 (measured: ~1.0 → ~0.25), read back from metrics.jsonl.
    func testLossFallsOnSyntheticData() throws {
        let cfg = tinyConfig(stages: "  - {name: s0, resolution: 16x16, steps: 30, batch: 2, lr: 3.0e-3}",
                             training: "  checkpoint_every: 100")
            .replacingOccurrences(of: "  checkpoint_every: 2\n", with: "")
        let run = try makeRun(self, config: cfg, tag: "loss")
        let outcome = try quietTrainer(run).train()
        XCTAssertEqual(outcome, .stageFinished(next: nil))
        let m = try readMetrics(run, stage: "s0")
        XCTAssertEqual(m.map(\.step), Array(1...30))
        let first = m.prefix(5).map(\.loss).reduce(0, +) / 5, last = m.suffix(5).map(\.loss).reduce(0, +) / 5
        XCTAssertTrue(m.allSatisfy { $0.loss.isFinite && $0.gradNorm.isFinite && $0.lr == 3e-3.roundedToFloat })
        XCTAssertLessThan(last, 0.6 * first, "first 5 steps \(first), last 5 \(last)")
        XCTAssertTrue(FileManager.default.fileExists(atPath: run.finalWeightsURL("s0").path))
        XCTAssertEqual(try run.readState().status, .done)
    }

    /// `train: [unet]`: the reference UNet and the VAE are frozen — no gradients are computed for
    /// them (requiresGrad off, their gradient block stays zero) and their weights do not move — while
    /// the generative UNet trains, the Leffa loss included (its gradient reaches the generative
    /// UNet through the reference features without needing theirs).
    func testOnlyTheConfiguredUNetTrains() throws {
        let cfg = tinyConfig(stages: "  - {name: s0, resolution: 16x16, steps: 2, batch: 2, lr: 1.0e-3, leffa: {weight: 1.0, timestep_threshold: 1000, min_resolution_fraction: 0.0}}")
            .replacingOccurrences(of: "train: [unet, unet_encoder]", with: "train: [unet]")
        let run = try makeRun(self, config: cfg, tag: "frozen")
        let t = try quietTrainer(run)
        let before = t.model.parameters.values!.copy()
        let log = LogBox()
        _ = try Trainer(run: run, log: log.append).train()
        let after = try LeffaModel(config: t.config.model, seed: 99)
        try after.loadWeights(from: run.finalWeightsURL("s0").path)
        func changed(_ part: String) -> Int {
            after.parameters(of: part).filter { p in
                let q = t.model.parameters[p.name]!
                return (0..<p.count).contains { before.data[q.offset + $0].bitPattern != p.value.data[$0].bitPattern }
            }.count
        }
        XCTAssertEqual(changed("unet_encoder"), 0, "the frozen reference UNet moved")
        XCTAssertEqual(changed("vae"), 0)
        XCTAssertGreaterThan(changed("unet"), t.model.parameters(of: "unet").count / 2)
        XCTAssertTrue(t.model.parameters(of: "unet_encoder").allSatisfy { !$0.value.requiresGrad })
        XCTAssertTrue(t.model.parameters(of: "unet").allSatisfy { $0.value.requiresGrad })
        XCTAssertEqual(t.model.parameters.trainedRange, 0..<t.model.parameters(of: "unet").count)
        let m = try readMetrics(run, stage: "s0")
        XCTAssertTrue(m.contains { ($0.leffa ?? 0) > 0 }, "the Leffa term was on: \(m.map(\.leffa))")
    }

    /// Stop at step 2, resume in a new Trainer to step 6: parameters, AdamW moments and step, and
    /// the EMA are bit-identical to an uninterrupted run to step 6. Warmup, cosine decay, gradient
    /// accumulation and reference dropout are on, so anything step-dependent that a resume got
    /// wrong would show.
    func testResumeIsBitIdentical() throws {
        let cfg = tinyConfig(stages: "  - {name: s0, resolution: 16x16, steps: 8, batch: 4, grad_accum: 2, lr: 2.0e-3, warmup_steps: 3, schedule: cosine}")
        let a = try makeRun(self, config: cfg, tag: "resume-a")
        let b = try makeRun(self, config: cfg, tag: "resume-b")

        let straight = try quietTrainer(a)
        XCTAssertEqual(try straight.train(untilStep: 6), .stopped(atStep: 6))

        let first = try quietTrainer(b)
        XCTAssertEqual(try first.train(untilStep: 2), .stopped(atStep: 2))
        let log = LogBox()
        let resumed = try quietTrainer(b, log: log)
        XCTAssertEqual(resumed.step, 2)
        XCTAssertTrue(log.text.contains("resuming stage s0 at step 2 from step-00000002.h5"), log.text)
        XCTAssertEqual(try resumed.train(untilStep: 6), .stopped(atStep: 6))

        XCTAssertEqual(straight.optimizer.step, 6)
        XCTAssertEqual(resumed.optimizer.step, straight.optimizer.step)
        XCTAssertTrue(sameBits(resumed.model.parameters.values!, straight.model.parameters.values!), "parameters")
        XCTAssertTrue(sameBits(resumed.optimizer.m, straight.optimizer.m), "AdamW m")
        XCTAssertTrue(sameBits(resumed.optimizer.v, straight.optimizer.v), "AdamW v")
        XCTAssertTrue(sameBits(resumed.ema!, straight.ema!), "EMA")
        // The test can fail: the resumed run is not equal to the run stopped at step 2.
        XCTAssertFalse(sameBits(first.model.parameters.values!, straight.model.parameters.values!))
        // And what was saved at step 6 is what is in memory.
        let third = try quietTrainer(b)
        XCTAssertEqual(third.step, 6)
        XCTAssertTrue(sameBits(third.model.parameters.values!, straight.model.parameters.values!))
        XCTAssertTrue(sameBits(third.optimizer.v, straight.optimizer.v))
        XCTAssertTrue(sameBits(third.ema!, straight.ema!))
    }

    /// Flipped bytes and a truncated file: the newest checkpoint is skipped with a warning that
    /// names it, and training resumes from the previous one with its exact state.
    func testCorruptNewestCheckpointIsSkipped() throws {
        let cfg = tinyConfig(stages: "  - {name: s0, resolution: 16x16, steps: 8, batch: 2, lr: 1.0e-3}")
        let run = try makeRun(self, config: cfg, tag: "corrupt")
        let t = try quietTrainer(run)
        _ = try t.train(untilStep: 2)
        let atTwo = t.model.parameters.values!.copy(), vAtTwo = t.optimizer.v.copy()
        _ = try t.train(untilStep: 6)
        let dir = run.checkpointsURL("s0")
        let four = dir.appendingPathComponent("step-00000004.h5"), six = dir.appendingPathComponent("step-00000006.h5")

        // Step 6: flip bytes in the middle (tensor data); step 4: truncate to half.
        var bytes = try Data(contentsOf: six)
        for i in stride(from: bytes.count / 2, to: bytes.count / 2 + 64, by: 1) { bytes[i] ^= 0x5A }
        try bytes.write(to: six)
        let half = try Data(contentsOf: four)
        try half.prefix(half.count / 2).write(to: four)

        let log = LogBox()
        let r = try quietTrainer(run, log: log)
        XCTAssertEqual(r.step, 2, log.text)
        let warnings = log.lines.filter { $0.hasPrefix("warning:") }
        XCTAssertTrue(warnings.contains { $0.contains("step-00000006.h5") }, log.text)
        XCTAssertTrue(warnings.contains { $0.contains("step-00000004.h5") }, log.text)
        XCTAssertTrue(log.text.contains("from step-00000002.h5"), log.text)
        XCTAssertTrue(sameBits(r.model.parameters.values!, atTwo))
        XCTAssertTrue(sameBits(r.optimizer.v, vAtTwo))
        XCTAssertEqual(r.optimizer.step, 2)
    }

    /// When every checkpoint is damaged the stage starts from its initial weights — not from
    /// whatever part of a damaged file was read before the damage showed.
    func testAllCheckpointsDamagedFallsBackToInitialWeights() throws {
        let run = try makeRun(self, config: tinyConfig(), tag: "all-corrupt")
        let fresh = try quietTrainer(run)
        let initial = fresh.model.parameters.values!.copy()
        _ = try fresh.train(untilStep: 2)
        let ckpt = run.checkpointsURL("s0").appendingPathComponent("step-00000002.h5")
        var bytes = try Data(contentsOf: ckpt)
        // Damage the first tenth: groups are stored in name order (ema, optimizer/m, optimizer/v,
        // params) and read params first, so params and moments load before the damage shows.
        for i in (bytes.count / 10)..<(bytes.count / 10 + 100) { bytes[i] ^= 0xFF }
        try bytes.write(to: ckpt)
        let log = LogBox()
        let r = try quietTrainer(run, log: log)
        XCTAssertEqual(r.step, 0, log.text)
        XCTAssertTrue(log.text.contains("step-00000002.h5"), log.text)
        XCTAssertTrue(sameBits(r.model.parameters.values!, initial), "parameters are the initial ones")
        XCTAssertTrue(sameBits(r.ema!, initial), "EMA starts at the initial parameters")
        XCTAssertEqual(r.optimizer.step, 0)
        XCTAssertTrue(sameBits(r.optimizer.m, Tensor(zeros: [r.optimizer.m.count])), "AdamW m is zero")
        XCTAssertTrue(sameBits(r.optimizer.v, Tensor(zeros: [r.optimizer.v.count])), "AdamW v is zero")
    }
}

extension Double { var roundedToFloat: Double { Double(Float(self)) } }
