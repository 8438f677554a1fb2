// Every config in Configs/ parses and validates: the paper's settings are what they say.
import XCTest
import Foundation
import LeffaData
import LeffaTraining
import LeffaRunFormat
import TestSupport

final class ShippedConfigsTests: XCTestCase {
    func testRunConfigsValidate() throws {
        let dir = Fixtures.packageRoot.appendingPathComponent("Configs")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".yaml") }
        XCTAssertGreaterThanOrEqual(files.count, 4)
        for f in files {
            let c = try RunConfig.load(path: dir.appendingPathComponent(f).path)
            XCTAssertEqual(c.stages.map(\.name), ["lowres", "highres", "leffa"], f)
            XCTAssertNil(c.stages[0].leffa, f); XCTAssertNil(c.stages[1].leffa, f); XCTAssertNotNil(c.stages[2].leffa, f)
        }
        let v = try RunConfig.load(path: dir.appendingPathComponent("sd15-vitonhd.yaml").path)
        XCTAssertEqual(v.stages.map { [$0.height, $0.width, $0.steps, $0.batch] }, [[512, 384, 10000, 256], [1024, 768, 36000, 64], [1024, 768, 10000, 64]])
        XCTAssertEqual(v.stages.map(\.lr), [1e-5, 1e-5, 1e-5])
        XCTAssertEqual(v.train, ["unet", "unet_encoder"])
        XCTAssertEqual(v.initFrom?.kind, "diffusers")
        XCTAssertNil(v.synthesize)
        XCTAssertNil(v.checkpointEveryMinutes)
        // The main job's data: what `leffa-coord synth --count 512 --test-count 32 --size 32x24` made before init did.
        let t = try RunConfig.load(path: dir.appendingPathComponent("tiny-synthetic.yaml").path)
        XCTAssertEqual(t.synthesize, SyntheticDataConfig(count: 512, testCount: 32, height: 32, width: 24, seed: 0, texture: .pattern))
    }

    func testBadRunConfigValuesNameTheField() {
        let base = "data: {kind: synthetic, root: d, space: pixel}\nmodel: {preset: tiny}\n"
        let cases: [(String, String)] = [
            (base.replacingOccurrences(of: "pixel", with: "latent") + "stages:\n  - {name: a, resolution: 30x24, steps: 1, batch: 1, lr: 1.0e-3}\n",
             "stages[0].resolution"),
            (base + "stages:\n  - {name: a, resolution: 64x48, steps: 0, batch: 1, lr: 1.0e-3}\n", "stages[0].steps"),
            (base + "stages:\n  - {name: a, resolution: 64x48, steps: 1, batch: 3, grad_accum: 2, lr: 1.0e-3}\n", "stages[0].grad_accum"),
            (base + "stages:\n  - {name: a, resolution: 64x48, steps: 1, batch: 1, lr: fast}\n", "stages[0].lr"),
            (base + "training: {train: [vae]}\nstages:\n  - {name: a, resolution: 64x48, steps: 1, batch: 1, lr: 1.0e-3}\n", "training.train"),
            ("data: {kind: imagenet, root: d}\nstages:\n  - {name: a, resolution: 64x48, steps: 1, batch: 1, lr: 1.0e-3}\n", "data.kind"),
            (base, "stages"),
            (base + "training: {prediction_type: x0}\nstages:\n  - {name: a, resolution: 64x48, steps: 1, batch: 1, lr: 1.0e-3}\n", "training.prediction_type"),
        ]
        for (text, field) in cases {
            XCTAssertThrowsError(try RunConfig.parse(text, source: "bad.yaml"), field) { e in
                XCTAssertTrue("\(e)".contains("bad.yaml") && "\(e)".contains(field), "\(field): \(e)")
            }
        }
    }
}
