// A catalogue of bad inputs: each stops training with an error that names the file, the field and
// what was expected, and leaves every existing checkpoint byte-for-byte as it was (no new one).
import XCTest
import Foundation
import LeffaTensor
import LeffaData
import LeffaTraining
import LeffaRunFormat
import TestSupport
import RunTestSupport

final class BadInputTests: XCTestCase {
    /// A run trained to step 2 (one valid checkpoint), then `damage`d; training on must fail with
    /// a message containing every string of `expect` and leave the checkpoints untouched.
    func check(_ tag: String, expect: [String], damage: (RunDirectory) throws -> Void,
               file: StaticString = #filePath, line: UInt = #line) throws {
        let run = try makeRun(self, config: tinyConfig(), tag: tag)
        _ = try quietTrainer(run).train(untilStep: 2)
        let ckpts = run.checkpointsURL("s0")
        let before = folderBytes(ckpts)
        XCTAssertEqual(before.keys.sorted(), ["/step-00000002.h5"], file: file, line: line)
        try damage(run)
        let msg = errorMessage({ _ = try quietTrainer(run).train() }, file: file, line: line)
        for s in expect { XCTAssertTrue(msg.contains(s), "'\(s)' not in: \(msg)", file: file, line: line) }
        XCTAssertEqual(folderBytes(ckpts), before, "checkpoints changed", file: file, line: line)
    }

    func image(_ run: RunDirectory, _ folder: String, _ name: String) -> URL {
        run.url.appendingPathComponent("data/train").appendingPathComponent(folder).appendingPathComponent(name)
    }

    /// LEFFA_REDUCTION: the three names (any case), else an error naming the variable and the choices.
    func testReductionSetting() throws {
        XCTAssertEqual(try GradientReduction.fromEnvironment([:]), .auto)
        XCTAssertEqual(try GradientReduction.fromEnvironment(["LEFFA_REDUCTION": "Buckets"]), .buckets)
        XCTAssertEqual(try GradientReduction.fromEnvironment(["LEFFA_REDUCTION": "shared"]), .shared)
        XCTAssertThrowsError(try GradientReduction.fromEnvironment(["LEFFA_REDUCTION": "nccl"])) { e in
            XCTAssertEqual("\(e)", "LEFFA_REDUCTION=\"nccl\": expected auto, shared or buckets")
        }
    }

    func testMissingImageFile() throws {
        try check("missing", expect: ["000001_00.png", "person image", "missing", "line 2 of train_pairs.txt"]) { run in
            try FileManager.default.removeItem(at: image(run, "image", "000001_00.png"))
        }
    }

    /// Garbage after a valid PNG signature: the header check may pass, decoding fails when the
    /// sample is loaded (steps 3–4 visit every sample).
    func testUnreadableImage() throws {
        try check("corrupt", expect: ["000002_00.png", "reference image", "corrupt"]) { run in
            let u = image(run, "cloth", "000002_00.png")
            let good = try Data(contentsOf: u)
            try (good.prefix(40) + Data(repeating: 0x17, count: 200)).write(to: u)
        }
    }

    func testTruncatedImage() throws {
        try check("truncated", expect: ["000003_00.png", "person image"]) { run in
            let u = image(run, "image", "000003_00.png")
            let good = try Data(contentsOf: u)
            try good.prefix(good.count * 2 / 3).write(to: u)
        }
    }

    func testWrongImageSize() throws {
        try check("size", expect: ["000000_00_mask.png", "wrong size", "expected 16×16", "person image"]) { run in
            let small = Image(height: 8, width: 8, channels: 1, pixels: [UInt8](repeating: 255, count: 64))
            try ImageIO.write(small, to: image(run, "agnostic-mask", "000000_00_mask.png"), format: .png)
        }
    }

    func testMalformedPairLine() throws {
        try check("pairs", expect: ["train_pairs.txt", "line 3", "malformed", "expected"]) { run in
            let u = run.url.appendingPathComponent("data/train_pairs.txt")
            var lines = try String(contentsOf: u, encoding: .utf8).split(separator: "\n").map(String.init)
            lines.insert("000001_00.png 000001_00.png extra-column", at: 2)
            try (lines.joined(separator: "\n") + "\n").write(to: u, atomically: true, encoding: .utf8)
        }
    }

    /// A run whose config was edited into something invalid refuses to start.
    func testBadConfigInARun() throws {
        try check("config", expect: ["config.yaml", "stages[0].lr", "a number in 0.0…1.0"]) { run in
            let text = try String(contentsOf: run.configURL, encoding: .utf8).replacingOccurrences(of: "lr: 1.0e-3", with: "lr: 1.0e+30")
            try text.write(to: run.configURL, atomically: true, encoding: .utf8)
        }
    }

    /// A poisoned weight makes the loss NaN: training stops before the update, says so, and writes
    /// no checkpoint (the step-2 one stays the newest and intact).
    func testNaNLossStopsWithoutSaving() throws {
        let run = try makeRun(self, config: tinyConfig(), tag: "nan")
        _ = try quietTrainer(run).train(untilStep: 2)
        let before = folderBytes(run.checkpointsURL("s0"))
        let t = try quietTrainer(run)
        let p = t.model.parameters["unet.conv_in.weight"]!
        (t.model.parameters.values!.data + p.offset).update(repeating: .nan, count: p.count)
        let msg = errorMessage { _ = try t.train() }
        XCTAssertTrue(msg.contains("step 3") && msg.contains("loss is nan") && msg.contains("last checkpoint is intact"), msg)
        XCTAssertEqual(folderBytes(run.checkpointsURL("s0")), before)
        let state = try run.readState()
        XCTAssertEqual(state.status, .failed, "a NaN loss leaves the run failed, not running")
        XCTAssertTrue(state.history.last?.reason.contains("loss is nan") == true, "\(state.history.last as Any)")
        XCTAssertEqual(try quietTrainer(run).step, 2)
    }

    /// Config values, one mistake at a time: the error names the field and the expected form.
    func testBadConfigValues() throws {
        let good = tinyConfig()
        XCTAssertNoThrow(try RunConfig.parse(good, source: "t.yaml"))
        let cases: [(String, String, [String])] = [
            ("lr: 1.0e-3", "lr: -1", ["t.yaml", "stages[0].lr", "a number in 0.0…1.0", "-1"]),
            ("lr: 1.0e-3", "lr: fast", ["stages[0].lr", "a number"]),
            ("resolution: 16x16", "resolution: 0x16", ["stages[0].resolution", "HEIGHTxWIDTH", "0x16"]),
            // Latent space: whole latents (the UNet itself takes any size, odd ones included).
            ("resolution: 16x16", "resolution: big", ["stages[0].resolution", "HEIGHTxWIDTH"]),
            ("batch: 2", "batch: 0", ["stages[0].batch", "an integer ≥ 1"]),
            ("batch: 2", "batch: 2, grad_accum: 3", ["stages[0].grad_accum", "a divisor of batch 2"]),
            ("steps: 6", "steps: -3", ["stages[0].steps", "an integer ≥ 1"]),
            ("space: pixel", "space: voxel", ["data.space", "latent or pixel"]),
            ("kind: synthetic", "kind: imagenet", ["data.kind", "synthetic, vitonhd, dresscode or deepfashion", "imagenet"]),
            ("grad_clip: 1.0", "grad_clip: lots", ["training.grad_clip", "a number"]),
            ("ema_decay: 0.9", "ema_decay: 1.5", ["training.ema_decay", "a number in [0.0, 1.0)"]),
            ("reference_dropout: 0.25", "reference_dropout: 2", ["training.reference_dropout", "0.0…1.0"]),
            ("keep_checkpoints: 10", "keep_checkpoints: -1", ["training.keep_checkpoints", "an integer ≥ 0"]),
            ("lr: 1.0e-3}", "lr: \"1.0e-3\"}", ["stages[0].lr", "the string \"1.0e-3\" (remove the quotes)"]),
            ("train: [unet, unet_encoder]", "train: [unet, vae]", ["training.train", "unet and/or unet_encoder", "vae"]),
            ("name: s0,", "name: s0, schedule: linear,", ["stages[0].schedule", "constant or cosine", "linear"]),
            ("preset: tiny", "preset: huge", ["model", "huge"]),
            ("lr: 1.0e-3}", "lr: 1.0e-3, leffa: {tau: 0}}", ["stages[0].leffa.tau", "a number"]),
            ("lr: 1.0e-3}", "lr: 1.0e-3, leffa: {layers: [nope]}}", ["stages[0].leffa.layers", "attention layer names", "nope"]),
            ("stages:\n  - {name: s0, resolution: 16x16, steps: 6, batch: 2, lr: 1.0e-3}", "stages: []", ["stages", "a non-empty list"]),
            ("data: {kind: synthetic, root: data, space: pixel}", "data: {kind: synthetic, space: pixel}", ["data.root", "a string (required)"]),
            ("run: {name: test, seed: 0}", "run: {name: test, seed: [1]}", ["run.seed", "an integer"]),
        ]
        for (from, to, expect) in cases {
            XCTAssertTrue(good.contains(from), "bad test case: \(from)")
            let text = good.replacingOccurrences(of: from, with: to)
            let msg = errorMessage { _ = try RunConfig.parse(text, source: "t.yaml") }
            for s in expect { XCTAssertTrue(msg.contains(s), "\(to): '\(s)' not in: \(msg)") }
        }
        // Latent space wants whole latents (the UNet itself takes any size, odd ones included).
        let latent = good.replacingOccurrences(of: "space: pixel", with: "space: latent")
        XCTAssertNoThrow(try RunConfig.parse(latent.replacingOccurrences(of: "16x16", with: "24x16"), source: "t.yaml"))
        let msg = errorMessage { _ = try RunConfig.parse(latent.replacingOccurrences(of: "16x16", with: "20x16"), source: "t.yaml") }
        for s in ["t.yaml", "stages[0].resolution", "multiples of 8", "20x16"] { XCTAssertTrue(msg.contains(s), "'\(s)' not in: \(msg)") }
        XCTAssertNoThrow(try RunConfig.parse(good.replacingOccurrences(of: "16x16", with: "20x11"), source: "t.yaml"))
        // A stage name used twice.
        let twice = good.replacingOccurrences(of: "stages:\n", with: "stages:\n  - {name: s0, resolution: 16x16, steps: 1, batch: 2, lr: 1.0e-3}\n")
        XCTAssertTrue(errorMessage { _ = try RunConfig.parse(twice, source: "t.yaml") }.contains("unique stage names"))
    }
}
