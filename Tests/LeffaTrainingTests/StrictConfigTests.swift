// Strict run configs: a key no parser reads is an error that names its full path, the file, the
// section's valid keys and the key it was probably meant to be; a section of the wrong type is an
// error, not an empty section. Also the new keys: training.checkpoint_every_minutes and
// data.synthesize (made by `leffa-coord init`), and the one parser of gradient reduction names.
import XCTest
import Foundation
import LeffaData
import LeffaModels
import LeffaTraining
import LeffaRunFormat
import TestSupport
import RunTestSupport

final class StrictConfigTests: XCTestCase {
    /// `tinyConfig()` with `from` replaced by `to` (which must occur), parsed; the error's message.
    func failure(_ from: String, _ to: String, in text: String = tinyConfig(), file: StaticString = #filePath, line: UInt = #line) -> String {
        XCTAssertTrue(text.contains(from), "bad test case: \(from)", file: file, line: line)
        return errorMessage({ _ = try RunConfig.parse(text.replacingOccurrences(of: from, with: to), source: "t.yaml") }, file: file, line: line)
    }

    func expect(_ msg: String, _ parts: [String], file: StaticString = #filePath, line: UInt = #line) {
        for p in parts { XCTAssertTrue(msg.contains(p), "'\(p)' not in: \(msg)", file: file, line: line) }
    }

    /// The misspellings, each once: refused with the full path and the intended key.
    func testMisspellingsAreRefusedWithASuggestion() {
        let cases: [(String, String, field: String, key: String, meant: String)] = [
            ("training:\n", "trainng:\n", "trainng", "trainng", "training"),
            ("checkpoint_every: 2", "checkpoint_evry: 2", "training.checkpoint_evry", "checkpoint_evry", "checkpoint_every"),
            ("grad_clip: 1.0", "gradclip: 1.0", "training.gradclip", "gradclip", "grad_clip"),
            ("lr: 1.0e-3}", "lr: 1.0e-3, leffa: {wieght: 0.1}}", "stages[0].leffa.wieght", "wieght", "weight"),
            ("lr: 1.0e-3}", "lr: 1.0e-3, warmup: 10}", "stages[0].warmup", "warmup", "warmup_steps"),
            ("reference_dropout: 0.25", "referenceDropout: 0.25", "training.referenceDropout", "referenceDropout", "reference_dropout"),
            ("keep_checkpoints: 10", "keep_checkpionts: 10", "training.keep_checkpionts", "keep_checkpionts", "keep_checkpoints"),
            ("seed: 0}", "sed: 0}", "run.sed", "sed", "seed"),
        ]
        for c in cases {
            let msg = failure(c.0, c.1)
            expect(msg, ["t.yaml: field \(c.field): unknown key \(c.key) (did you mean \(c.meant)?); expected one of the keys ", c.meant])
        }
        // The whole message, once: file, path, the intended key, then every valid key of training.
        XCTAssertEqual(failure("checkpoint_every: 2", "checkpoint_evry: 2"),
                       "t.yaml: field training.checkpoint_evry: unknown key checkpoint_evry (did you mean checkpoint_every?); expected one of the keys "
                       + "optimizer, train, grad_clip, ema_decay, ema_min_decay, ema_warmup, ema_inv_gamma, ema_power, ema_start, reference_dropout, checkpoint_every, checkpoint_every_minutes, keep_checkpoints, "
                       + "snapshot_every, snapshot_samples, snapshot_layers, log_every, prediction_type, activation_checkpointing, validation")
    }

    /// An unknown key in every section is refused, with that section's path and valid keys.
    func testUnknownKeysInEverySection() {
        let synth = tinyConfig().replacingOccurrences(of: "root: data, space: pixel}", with: "root: data, space: pixel, synthesize: {count: 2, size: 16x16}}")
        let cases: [(String, String, String, field: String, valid: String)] = [
            (tinyConfig(), "run: {", "zzz_extra: 1\nrun: {", "zzz_extra", "run, model, data, training, stages"),
            (tinyConfig(), "seed: 0}", "seed: 0, zzz_extra: 1}", "run.zzz_extra", "one of the keys name, seed"),
            (tinyConfig(), "preset: tiny}", "preset: tiny, zzz_extra: 1}", "model.zzz_extra", "preset, unet, vae, init"),
            (tinyConfig(), "preset: tiny}", "preset: tiny, unet: {zzz_extra: 1}}", "model.unet.zzz_extra", UNetConfig.keys.joined(separator: ", ")),
            (tinyConfig(), "preset: tiny}", "preset: tiny, vae: {zzz_extra: 1}}", "model.vae.zzz_extra", VAEConfig.keys.joined(separator: ", ")),
            (tinyConfig(), "preset: tiny}", "preset: tiny, init: {leffa: w.safetensors, zzz_extra: 1}}", "model.init.zzz_extra", "leffa, diffusers"),
            (tinyConfig(), "space: pixel}", "space: pixel, zzz_extra: 1}", "data.zzz_extra", "space, kind, root, split, synthesize"),
            (synth, "size: 16x16}", "size: 16x16, zzz_extra: 1}", "data.synthesize.zzz_extra", "count, test_count, size, seed, texture"),
            (tinyConfig(), "grad_clip: 1.0", "grad_clip: 1.0\n  zzz_extra: 1", "training.zzz_extra", "train, grad_clip"),
            (tinyConfig(), "grad_clip: 1.0", "grad_clip: 1.0\n  optimizer: {zzz_extra: 1}", "training.optimizer.zzz_extra", "beta1, beta2, eps, weight_decay"),
            (tinyConfig(), "grad_clip: 1.0", "grad_clip: 1.0\n  validation: {zzz_extra: 1}", "training.validation.zzz_extra", "every, count, steps"),
            (tinyConfig(), "lr: 1.0e-3}", "lr: 1.0e-3, zzz_extra: 1}", "stages[0].zzz_extra", "name, resolution, steps, batch, grad_accum, lr, warmup_steps, schedule, leffa"),
            (tinyConfig(), "lr: 1.0e-3}", "lr: 1.0e-3, leffa: {zzz_extra: 1}}", "stages[0].leffa.zzz_extra", "tau, weight, timestep_threshold, min_resolution_fraction, layers"),
        ]
        for c in cases {
            let msg = failure(c.1, c.2, in: c.0)
            expect(msg, ["t.yaml: field \(c.field): unknown key zzz_extra; expected one of the keys", c.valid])
        }
        // The second stage is checked too.
        let two = tinyConfig(stages: "  - {name: a, resolution: 16x16, steps: 1, batch: 2, lr: 1.0e-3}\n  - {name: b, resolution: 16x16, steps: 1, batch: 2, lr: 1.0e-3, bach: 2}")
        expect(errorMessage { _ = try RunConfig.parse(two, source: "t.yaml") }, ["field stages[1].bach", "did you mean batch?"])
    }

    /// A section that is not a mapping is an error naming it and what was found.
    func testSectionsOfTheWrongType() {
        let cases: [(String, String, [String])] = [
            ("run: {name: test, seed: 0}", "run: [test, 0]", ["field run: expected a mapping, got a list"]),
            ("model: {preset: tiny}", "model: tiny", ["field model: expected a mapping with preset, unet, vae and init, got tiny"]),
            ("data: {kind: synthetic, root: data, space: pixel}", "data: synthetic", ["field data: expected a mapping, got synthetic"]),
            ("grad_clip: 1.0", "grad_clip: 1.0\n  optimizer: 0.1", ["field training.optimizer: expected a mapping, got 0.1"]),
            ("grad_clip: 1.0", "grad_clip: 1.0\n  validation: [1]", ["field training.validation: expected a mapping like {every: 1000", "got a list"]),
            ("preset: tiny}", "preset: tiny, init: w.safetensors}", ["field model.init: expected leffa: FILE.safetensors or diffusers: FOLDER, got w.safetensors"]),
            ("preset: tiny}", "preset: tiny, unet: 3}", ["field model.unet: expected a mapping of sizes, got 3"]),
            ("space: pixel}", "space: pixel, synthesize: 512}", ["field data.synthesize: expected a mapping like {count: 512", "got 512"]),
            ("lr: 1.0e-3}", "lr: 1.0e-3, leffa: true}", ["field stages[0].leffa: expected a mapping of Leffa loss settings", "got true"]),
            ("  - {name: s0, resolution: 16x16, steps: 6, batch: 2, lr: 1.0e-3}", "  - 5", ["field stages[0]: expected a mapping, got 5"]),
            ("stages:\n  - {name: s0, resolution: 16x16, steps: 6, batch: 2, lr: 1.0e-3}", "stages: {name: s0}", ["field stages: expected a non-empty list", "got a mapping"]),
        ]
        for (from, to, parts) in cases { expect(failure(from, to), ["t.yaml"] + parts) }
        // A top-level section.
        let flat = "run: {name: t}\nmodel: {preset: tiny}\ndata: {kind: synthetic, root: d, space: pixel}\ntraining: 5\nstages:\n  - {name: a, resolution: 16x16, steps: 1, batch: 1, lr: 1.0e-3}\n"
        XCTAssertEqual(errorMessage { _ = try RunConfig.parse(flat, source: "t.yaml") }, "t.yaml: field training: expected a mapping, got 5")
        // Null sections are absent ones: every default.
        let null = flat.replacingOccurrences(of: "training: 5", with: "training:")
        XCTAssertEqual(try RunConfig.parse(null, source: "t.yaml").checkpointEvery, 100)
    }

    /// A misspelt key is reported before the error it causes: without `space: pixel` the run is in
    /// latent space, where 16x16 is no valid stage size for the tiny model.
    func testMisspellingComesBeforeTheErrorItCauses() {
        expect(failure("space: pixel", "spce: pixel"), ["field data.spce: unknown key spce (did you mean space?)"])
        expect(failure("preset: tiny}", "preset: tiny, unet: {layers_per_blok: 1}}"),
               ["field model.unet.layers_per_blok: unknown key layers_per_blok (did you mean layers_per_block?)", "cross_attention_dim"])
    }

    /// A required key that is missing points at the key that may be its misspelling; a key of
    /// another section says where it belongs.
    func testMissingAndMisplacedKeys() {
        expect(failure("name: s0,", "nme: s0,"), ["field stages[0].name: expected a string (required; is nme a misspelling of it?)"])
        expect(failure("root: data,", "rot: data,"), ["field data.root: expected a string (required; is rot a misspelling of it?)"])
        expect(failure("lr: 1.0e-3}", "LR: 1.0e-3}"), ["field stages[0].lr: expected a number in 0.0…1.0 (required; is LR a misspelling of it?)"])
        // An unknown key of a section already read wins over the missing one it stands for.
        expect(failure("stages:\n", "stagse:\n"), ["field stagse: unknown key stagse (did you mean stages?)"])
        expect(failure("run: {", "checkpoint_every: 5\nrun: {"), ["field checkpoint_every: unknown key checkpoint_every (checkpoint_every is a key of training)"])
        expect(failure("grad_clip: 1.0", "grad_clip: 1.0\n  warmup_steps: 3"), ["field training.warmup_steps: unknown key warmup_steps (warmup_steps is a key of stages[i])"])
        expect(failure("preset: tiny}", "preset: tiny, init: {leffa: a.safetensors, diffusers: b}}"), ["field model.init: expected exactly one of leffa"])
    }

    func testClosestKey() {
        let training = ["train", "grad_clip", "ema_decay", "checkpoint_every", "checkpoint_every_minutes", "keep_checkpoints"]
        XCTAssertEqual(ConfigKeys.closest(to: "gradClip", among: training), "grad_clip")
        XCTAssertEqual(ConfigKeys.closest(to: "grad-clip", among: training), "grad_clip")
        XCTAssertEqual(ConfigKeys.closest(to: "checkpoint_evry", among: training), "checkpoint_every")
        XCTAssertEqual(ConfigKeys.closest(to: "checkpoint_every_minute", among: training), "checkpoint_every_minutes")
        XCTAssertEqual(ConfigKeys.closest(to: "trian", among: training), "train")
        XCTAssertNil(ConfigKeys.closest(to: "lr", among: training))
        XCTAssertNil(ConfigKeys.closest(to: "checkpoint", among: training), "two keys extend it: no guess")
        XCTAssertEqual(ConfigKeys.closest(to: "warmup", among: ["lr", "warmup_steps"]), "warmup_steps")
        XCTAssertEqual(ConfigKeys.closest(to: "l", among: ["lr", "tau"]), "lr")
        XCTAssertEqual(ConfigKeys.editDistance("wieght", "weight"), 1, "a swapped pair is one edit")
        XCTAssertEqual(ConfigKeys.editDistance("", "abc"), 3)
        XCTAssertEqual(ConfigKeys.editDistance("kitten", "sitting"), 3)
    }

    func testCheckpointEveryMinutes() throws {
        XCTAssertNil(try RunConfig.parse(tinyConfig(), source: "t.yaml").checkpointEveryMinutes, "off by default")
        for (value, want) in [("30", 30.0), ("0.5", 0.5), ("1.0e+3", 1000.0)] {
            XCTAssertEqual(try RunConfig.parse(tinyConfig(training: "  checkpoint_every_minutes: \(value)"), source: "t.yaml").checkpointEveryMinutes, want)
        }
        XCTAssertNil(try RunConfig.parse(tinyConfig(training: "  checkpoint_every_minutes:"), source: "t.yaml").checkpointEveryMinutes, "null is off")
        for bad in ["0", "-5", "soon", ".inf", "[1]"] {
            let msg = errorMessage { _ = try RunConfig.parse(tinyConfig(training: "  checkpoint_every_minutes: \(bad)"), source: "t.yaml") }
            expect(msg, ["t.yaml: field training.checkpoint_every_minutes: expected a number of minutes > 0, got"])
        }
        expect(errorMessage { _ = try RunConfig.parse(tinyConfig(training: "  checkpoint_minutes: 5"), source: "t.yaml") },
               ["field training.checkpoint_minutes: unknown key checkpoint_minutes"])
    }

    // MARK: data.synthesize

    func synthConfig(_ block: String, root: String = "data", seed: Int = 9, kind: String = "synthetic", split: String = "") -> String {
        tinyConfig(seed: seed).replacingOccurrences(of: "data: {kind: synthetic, root: data, space: pixel}",
                                                    with: "data: {kind: \(kind), root: \(root), space: pixel\(split), synthesize: \(block)}")
    }

    func testSynthesizeBlock() throws {
        let full = try RunConfig.parse(synthConfig("{count: 5, test_count: 2, size: 32x24, seed: 3, texture: ramp}"), source: "t.yaml").synthesize
        XCTAssertEqual(full, SyntheticDataConfig(count: 5, testCount: 2, height: 32, width: 24, seed: 3, texture: .ramp))
        let short = try RunConfig.parse(synthConfig("{count: 5, size: 16x12}"), source: "t.yaml").synthesize
        XCTAssertEqual(short, SyntheticDataConfig(count: 5, testCount: 0, height: 16, width: 12, seed: 9, texture: .pattern), "the run seed by default")
        XCTAssertNil(try RunConfig.parse(tinyConfig(), source: "t.yaml").synthesize)
        let cases: [(String, [String])] = [
            (synthConfig("{size: 16x16}"), ["field data.synthesize.count: expected an integer ≥ 1 (required)"]),
            (synthConfig("{count: 0, size: 16x16}"), ["field data.synthesize.count: expected an integer ≥ 1, got 0"]),
            (synthConfig("{count: 2}"), ["field data.synthesize.size: expected HEIGHTxWIDTH like 512x384 (required)"]),
            (synthConfig("{count: 2, size: 8x8}"), ["field data.synthesize.size: expected HEIGHTxWIDTH of at least 16x12, got 8x8"]),
            (synthConfig("{count: 2, size: 16x16, test_count: -1}"), ["field data.synthesize.test_count: expected an integer ≥ 0"]),
            (synthConfig("{count: 2, size: 16x16, seed: -1}"), ["field data.synthesize.seed: expected an integer ≥ 0"]),
            (synthConfig("{count: 2, size: 16x16, texture: plaid}"), ["field data.synthesize.texture: expected pattern or ramp, got plaid"]),
            (synthConfig("{count: 2, size: 16x16}", kind: "vitonhd"), ["field data.synthesize: expected no synthesize block unless kind is synthetic", "vitonhd"]),
            (synthConfig("{count: 2, size: 16x16}", split: ", split: test"), ["field data.synthesize.test_count: expected at least 1 when data.split is test"]),
            (synthConfig("{count: 2, size: 16x16}", split: ", split: val"), ["field data.split: expected train or test for a synthesized set, got val"]),
            (synthConfig("{count: 2, size: 16x16, testcount: 3}"), ["field data.synthesize.testcount: unknown key testcount (did you mean test_count?)"]),
        ]
        for (text, parts) in cases { expect(errorMessage { _ = try RunConfig.parse(text, source: "t.yaml") }, ["t.yaml"] + parts) }
    }

    /// Config text → what `leffa-coord init` does (create the run, make its data) → files on disk
    /// → the dataset opens with the configured counts; a second time the data is left untouched.
    func testInitMakesTheSyntheticSet() throws {
        let root = try tempFolder(self, "synth-init")
        let cfgURL = root.appendingPathComponent("c.yaml")
        try synthConfig("{count: 3, test_count: 2, size: 16x16}").write(to: cfgURL, atomically: true, encoding: .utf8)
        let config = try RunConfig.load(path: cfgURL.path)
        let run = try RunDirectory.create(at: root.appendingPathComponent("run").path, config: config)
        let data = run.url.appendingPathComponent("data")
        XCTAssertEqual(try run.makeSyntheticData(config), .generated(root: data.path, count: 3, testCount: 2))
        for f in ["train_pairs.txt", "test_pairs.txt", "synthetic.json", "train/flow/000002_00.safetensors", "test/image/000001_00.png"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: data.appendingPathComponent(f).path), f)
        }
        XCTAssertEqual(openDataset(.synthetic, root: data).count, 3)
        XCTAssertEqual(openDataset(.synthetic, root: data, split: "test").count, 2)
        XCTAssertTrue(openDataset(.synthetic, root: data).check(CheckOptions(decodeImages: true)).isEmpty)
        // The run seed (9): the same bytes as `leffa-coord synth --seed 9`.
        let direct = root.appendingPathComponent("direct")
        try generateSynthetic(out: direct, count: 3, testCount: 2, height: 16, width: 16, seed: 9)
        XCTAssertEqual(folderBytes(data), folderBytes(direct))
        // The trainer reads it from the same place.
        XCTAssertEqual(try quietTrainer(run).train(untilStep: 1), .stopped(atStep: 1))

        // Again: a pairs file is there, so nothing is touched.
        let before = folderBytes(data)
        let again = try run.makeSyntheticData(config)
        XCTAssertEqual(again, .kept(root: data.path, pairsFile: "train_pairs.txt", differs: nil))
        XCTAssertTrue("\(again!)".contains("already holds data") && "\(again!)".contains("left untouched"), "\(again!)")
        // A different recipe is pointed out, and still nothing is touched.
        let bigger = try RunConfig.parse(synthConfig("{count: 4, test_count: 2, size: 16x16, texture: ramp}"), source: "c.yaml")
        guard case .kept(_, _, let differs?) = try run.makeSyntheticData(bigger) else { return XCTFail("expected kept with a difference") }
        XCTAssertEqual(differs, "count 3 (config: 4), texture pattern (config: ramp)")
        XCTAssertEqual(folderBytes(data), before)
        // No synthesize block: nothing to do.
        XCTAssertNil(try run.makeSyntheticData(try RunConfig.parse(tinyConfig(), source: "t.yaml")))
    }

    /// An absolute data root is used as it is, not under the run folder.
    func testAbsoluteDataRoot() throws {
        let root = try tempFolder(self, "synth-abs")
        let elsewhere = root.appendingPathComponent("shared-data")
        let config = try RunConfig.parse(synthConfig("{count: 2, size: 16x12}", root: elsewhere.path), source: "c.yaml")
        let run = try RunDirectory.create(at: root.appendingPathComponent("run").path, config: config)
        XCTAssertEqual(try run.makeSyntheticData(config), .generated(root: elsewhere.path, count: 2, testCount: 0))
        XCTAssertEqual(openDataset(.synthetic, root: elsewhere).count, 2)
        XCTAssertFalse(FileManager.default.fileExists(atPath: run.url.appendingPathComponent("shared-data").path))
    }

    // MARK: Gradient reduction names

    /// One parser for LEFFA_REDUCTION, `leffa-worker --reduction` and `leffa-bench ddp --reduction`.
    func testReductionParser() throws {
        for (text, want) in [("auto", GradientReduction.auto), ("Shared", .shared), ("BUCKETS", .buckets), ("buckets", .buckets)] {
            XCTAssertEqual(try GradientReduction.parse(text, source: "--reduction"), want, text)
        }
        XCTAssertThrowsError(try GradientReduction.parse("nccl", source: "--reduction")) { e in
            XCTAssertEqual("\(e)", "--reduction=\"nccl\": expected auto, shared or buckets")
        }
        XCTAssertThrowsError(try GradientReduction.parse("", source: "LEFFA_REDUCTION")) { e in
            XCTAssertEqual("\(e)", "LEFFA_REDUCTION=\"\": expected auto, shared or buckets")
        }
        XCTAssertEqual(try GradientReduction.fromEnvironment(["LEFFA_REDUCTION": "SHARED"]), .shared)
    }
}
