// `prepare`: the cached samples give the same training inputs as loading on the fly — bitwise in
// pixel space, within float tolerance in latent space (the VAE runs per sample there, batched on
// the fly) — and a stale cache is reported rather than used.
import XCTest
import Foundation
import LeffaTensor
import LeffaData
import LeffaModels
import LeffaTraining
import LeffaRunFormat
import TestSupport
import RunTestSupport

final class PrepareTests: XCTestCase {
    func builders(_ run: RunDirectory) throws -> (RunConfig, BatchBuilder, BatchBuilder) {
        let cfg = try run.readConfig()
        let ds = openDataset(.synthetic, root: run.url.appendingPathComponent("data"))
        let model = try LeffaModel(config: cfg.model, seed: cfg.seed)
        return (cfg, BatchBuilder(dataset: ds, config: cfg, model: model),
                BatchBuilder(dataset: ds, config: cfg, model: model, cacheRoot: Prepare.cacheURL(run)))
    }

    func compare(_ a: LatentBatch, _ b: LatentBatch, tolerance: Float?, file: StaticString = #filePath, line: UInt = #line) {
        let pairs: [(String, Tensor, Tensor)] = [
            ("latent", a.latent, b.latent), ("maskLatent", a.maskLatent, b.maskLatent), ("maskedLatent", a.maskedLatent, b.maskedLatent),
            ("denseposeLatent", a.denseposeLatent, b.denseposeLatent), ("refLatent", a.refLatent, b.refLatent),
            ("imgRef", a.imgRef, b.imgRef), ("imgTgt", a.imgTgt, b.imgTgt), ("lossMask", a.lossMask, b.lossMask), ("noise", a.noise, b.noise),
        ]
        for (name, x, y) in pairs {
            XCTAssertEqual(x.shape, y.shape, name, file: file, line: line)
            if let tol = tolerance, !["imgRef", "imgTgt", "lossMask", "noise", "maskLatent", "denseposeLatent"].contains(name) {
                var worst: Float = 0
                for i in 0..<min(x.count, y.count) { worst = max(worst, abs(x[i] - y[i]) / max(1, abs(y[i]))) }
                XCTAssertLessThanOrEqual(worst, tol, name, file: file, line: line)
            } else {
                XCTAssertTrue(sameBits(x, y), "\(name) differs", file: file, line: line)
            }
        }
        XCTAssertEqual(a.timesteps, b.timesteps, file: file, line: line)
        XCTAssertEqual(a.referenceKept, b.referenceKept, file: file, line: line)
    }

    func testPixelCacheGivesBitIdenticalBatches() throws {
        let stages = "  - {name: s0, resolution: 16x16, steps: 2, batch: 3, lr: 1.0e-3}\n  - {name: s1, resolution: 24x16, steps: 2, batch: 3, lr: 1.0e-3}"
        let run = try makeRun(self, config: tinyConfig(stages: stages, training: "  reference_dropout: 0.5").replacingOccurrences(of: "  reference_dropout: 0.25\n", with: ""),
                              count: 5, size: (24, 16), tag: "prep-pixel")
        let (cfg, plain, cached) = try builders(run)
        XCTAssertNil(cached.cache(height: 16, width: 16), "no cache before prepare")
        let fresh = try builders(run).2
        var calls = 0
        let summary = try Prepare.run(run) { _, _, _ in calls += 1 }
        XCTAssertEqual(summary.written, 2)
        XCTAssertEqual(calls, 10)
        for res in ["16x16", "24x16"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: Prepare.cacheURL(run).appendingPathComponent(res).appendingPathComponent("shard-0000.h5").path))
        }
        for (si, stage) in cfg.stages.enumerated() {
            for step in 0..<2 {
                let pos = Array((step * 3)..<(step * 3 + 3))
                let (a, da) = try plain.batch(step: step, positions: pos, stage: stage, stageIndex: si)
                let (b, db) = try fresh.batch(step: step, positions: pos, stage: stage, stageIndex: si)
                XCTAssertNotNil(fresh.cache(height: stage.height, width: stage.width))
                compare(a, b, tolerance: nil)
                XCTAssertEqual(da.ids, db.ids)
                XCTAssertTrue(sameBits(da.flow!, db.flow!) && sameBits(da.flowValid!, db.flowValid!) && sameBits(da.maskedImage, db.maskedImage))
            }
        }
        // Run again: everything up to date.
        let again = try Prepare.run(run)
        XCTAssertEqual(again.written, 0)
        XCTAssertEqual(again.kept, 2)

        // A changed dataset: the cache is reported stale, not used.
        try FileManager.default.removeItem(at: run.url.appendingPathComponent("data"))
        try generateSynthetic(out: run.url.appendingPathComponent("data"), count: 6, height: 24, width: 16, seed: 7)
        let (_, _, stale) = try builders(run)
        let msg = errorMessage { _ = try stale.batch(step: 0, positions: [0, 1, 2], stage: cfg.stages[0], stageIndex: 0) }
        XCTAssertTrue(msg.contains("shard-0000.h5") && msg.contains("stale") && msg.contains("leffa-coord prepare"), msg)
    }

    /// Training reads the cache and ends bit-identical to training without it.
    func testTrainingFromCacheIsBitIdentical() throws {
        let a = try makeRun(self, config: tinyConfig(), tag: "prep-a"), b = try makeRun(self, config: tinyConfig(), tag: "prep-b")
        _ = try Prepare.run(b)
        let ta = try quietTrainer(a), tb = try quietTrainer(b)
        _ = try ta.train(untilStep: 3); _ = try tb.train(untilStep: 3)
        XCTAssertTrue(sameBits(ta.model.parameters.values!, tb.model.parameters.values!))
        // The cache was read: damage it and training notices.
        let shard = Prepare.cacheURL(b).appendingPathComponent("16x16/shard-0000.h5")
        var bytes = try Data(contentsOf: shard)
        for i in (bytes.count / 2)..<(bytes.count / 2 + 64) { bytes[i] ^= 0xFF }
        try bytes.write(to: shard)
        XCTAssertTrue(errorMessage { _ = try quietTrainer(b).train(untilStep: 5) }.contains("shard-0000.h5"))
    }

    func testLatentCacheMatchesOnTheFly() throws {
        let cfgText = tinyConfig(stages: "  - {name: s0, resolution: 64x64, steps: 2, batch: 2, lr: 1.0e-3}")
            .replacingOccurrences(of: "space: pixel", with: "space: latent")
        let run = try makeRun(self, config: cfgText, count: 2, size: (64, 64), tag: "prep-latent")
        let (cfg, plain, _) = try builders(run)
        _ = try Prepare.run(run)
        let (_, _, cached) = try builders(run)
        let (a, _) = try plain.batch(step: 1, positions: [2, 3], stage: cfg.stages[0], stageIndex: 0)
        let (b, _) = try cached.batch(step: 1, positions: [2, 3], stage: cfg.stages[0], stageIndex: 0)
        XCTAssertEqual(a.latent.shape, [2, 4, 8, 8])
        compare(a, b, tolerance: 1e-4)
    }
}
