// The data section's options end to end: densepose encoding, DressCode categories and pair lists,
// and augmentation, parsed strictly, choosing the samples, and augmenting each sample as its
// (seed, step, position) key says — the same in any batch (so on any rank) and after a resume.
import XCTest
import Foundation
import LeffaTensor
import LeffaData
import LeffaModels
@testable import LeffaTraining
@testable import LeffaRunFormat
import RunTestSupport

final class DataOptionsTests: XCTestCase {
    static let augment = "  augment: {hflip: 0.5, scale: 0.1, shift: 0.1, color_jitter: {brightness: 0.2, contrast: 0.2, saturation: 0.2, hue: 0.05}}\n"

    func config(data: String, kind: String = "synthetic") -> String {
        tinyConfig().replacingOccurrences(of: "data: {kind: synthetic, root: data, space: pixel}", with: "data:\n  kind: \(kind)\n  root: data\n  space: pixel\n" + data)
    }

    func testOptionsParse() throws {
        let d = try RunConfig.parse(config(data: "  densepose: iuv\n  category: [dresses, upper_body]\n  pairs: unpaired\n" + Self.augment, kind: "dresscode"), source: "r.yaml").data
        XCTAssertEqual(d.densepose, .iuv)
        XCTAssertEqual(d.categories, [.dresses, .upperBody])
        XCTAssertEqual(d.pairing, .unpaired)
        XCTAssertEqual(d.augment?.hflip, 0.5); XCTAssertEqual(d.augment?.hue, 0.05)
        XCTAssertEqual(try RunConfig.parse(config(data: "  category: lower_body\n", kind: "dresscode"), source: "r").data.categories, [.lowerBody])
        let defaults = try RunConfig.parse(config(data: ""), source: "r").data
        XCTAssertEqual(defaults, DataOptions())
        XCTAssertNil(try RunConfig.parse(config(data: "  augment: {hflip: 0}\n"), source: "r").data.augment, "all zero is off")
    }

    func testBadOptionsNameFileFieldAndExpectation() {
        let cases: [(String, String, [String])] = [
            ("  densepose: uv\n", "synthetic", ["data.densepose", "rgb", "iuv", "got uv"]),
            ("  category: shoes\n", "dresscode", ["data.category", "upper_body, lower_body, dresses", "got shoes"]),
            ("  category: []\n", "dresscode", ["data.category", "got an empty list"]),
            ("  category: [dresses, dresses]\n", "dresscode", ["data.category", "each category once"]),
            ("  category: dresses\n", "vitonhd", ["data.category", "only dresscode has categories"]),
            ("  pairs: mixed\n", "vitonhd", ["data.pairs", "paired or unpaired", "got mixed"]),
            ("  pairs: unpaired\n", "deepfashion", ["data.pairs", "deepfashion"]),
            ("  augment: {hflip: 2}\n", "synthetic", ["data.augment.hflip", "0.0…1.0", "got 2"]),
            ("  augment: {shift: 0.9}\n", "synthetic", ["data.augment.shift", "0.0…0.5"]),
            ("  augment: {color_jitter: {hue: 0.7}}\n", "synthetic", ["data.augment.color_jitter.hue", "0.0…0.5"]),
            ("  augment: {flip: 0.5}\n", "synthetic", ["data.augment.flip", "hflip"]),
            ("  augment: yes\n", "synthetic", ["data.augment", "hflip: 0.5"]),
        ]
        for (data, kind, parts) in cases {
            let message = errorMessage { _ = try RunConfig.parse(config(data: data, kind: kind), source: "run.yaml") }
            XCTAssertTrue(message.hasPrefix("run.yaml: field "), message)
            for p in parts { XCTAssertTrue(message.contains(p), "\(message) lacks \(p)") }
        }
    }

    /// data.category keeps only its folders' pairs; data.pairs picks DressCode's test list.
    func testCategoryAndPairsChooseTheSamples() throws {
        let root = try tempFolder(self, "dresscode")
        for (c, id) in [("upper_body", "1"), ("lower_body", "2"), ("dresses", "3")] {
            let dir = root.appendingPathComponent(c)
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            try "\(id)_0.jpg \(id)_1.jpg\n".write(to: dir.appendingPathComponent("train_pairs.txt"), atomically: true, encoding: .utf8)
            try "\(id)_0.jpg \(id)_1.jpg\n".write(to: dir.appendingPathComponent("test_pairs_paired.txt"), atomically: true, encoding: .utf8)
            try "\(id)_0.jpg 9\(id)_1.jpg\n\(id)0_0.jpg 9\(id)_1.jpg\n".write(to: dir.appendingPathComponent("test_pairs_unpaired.txt"), atomically: true, encoding: .utf8)
        }
        let all = try RunConfig.parse(config(data: "", kind: "dresscode"), source: "r").openDataset(root: root)
        XCTAssertEqual(all.count, 3)
        let cfg = try RunConfig.parse(config(data: "  category: [dresses]\n  pairs: unpaired\n", kind: "dresscode"), source: "r")
        let dresses = cfg.openDataset(root: root)
        XCTAssertEqual(dresses.count, 1)
        XCTAssertEqual(dresses.id(at: 0), "dresscode/dresses/train/3_0.jpg/3_1.jpg")
        let test = cfg.openDataset(root: root, split: "test")
        XCTAssertEqual(test.count, 2, "test_pairs_unpaired.txt")
        XCTAssertEqual(test.recipe(at: 0).reference.lastPathComponent, "93_1.jpg")
        XCTAssertEqual(cfg.openDataset(root: root, split: "test", pairing: .paired).count, 1, "validation reads the paired list")
    }

    /// The augmented sample at a position is the same whether built alone or in a batch with
    /// others (so whichever rank loads it), differs between steps, and differs from no augmentation.
    func testAugmentationIsKeyedBySeedStepAndPosition() throws {
        let run = try makeRun(self, config: config(data: Self.augment), count: 6)
        let cfg = try run.readConfig(), plain = try RunConfig.parse(config(data: ""), source: "r")
        let model = try LeffaModel(config: cfg.model, seed: 0)
        let root = run.url.appendingPathComponent("data"), stage = cfg.stages[0]
        let builder = BatchBuilder(dataset: cfg.openDataset(root: root), config: cfg, model: model)
        let (_, whole) = try builder.batch(step: 3, positions: [0, 1, 2, 3], stage: stage, stageIndex: 0)
        let (_, alone) = try builder.batch(step: 3, positions: [2], stage: stage, stageIndex: 0)
        let n = alone.image.count
        XCTAssertEqual(Array(whole.image.scalars[(2 * n)..<(3 * n)]), alone.image.scalars)
        XCTAssertEqual(Array(whole.densepose.scalars[(2 * n)..<(3 * n)]), alone.densepose.scalars)
        let (_, later) = try builder.batch(step: 4, positions: [2], stage: stage, stageIndex: 0)
        let (_, unaugmented) = try BatchBuilder(dataset: plain.openDataset(root: root), config: plain, model: model)
            .batch(step: 3, positions: [2], stage: stage, stageIndex: 0)
        XCTAssertEqual(later.indices, alone.indices)
        XCTAssertNotEqual(later.image.scalars, alone.image.scalars)
        XCTAssertNotEqual(unaugmented.image.scalars, alone.image.scalars)
    }

    /// Stopped at step 2 and resumed to 5 with augmentation on: the same weights and EMA bit for
    /// bit as an uninterrupted run (and not the weights of a run without augmentation).
    func testResumeWithAugmentationIsBitIdentical() throws {
        let stages = "  - {name: s0, resolution: 16x16, steps: 6, batch: 2, lr: 2.0e-3}"
        let text = tinyConfig(stages: stages).replacingOccurrences(of: "data: {kind: synthetic, root: data, space: pixel}",
                                                                    with: "data:\n  kind: synthetic\n  root: data\n  space: pixel\n" + Self.augment)
        let a = try makeRun(self, config: text, tag: "aug-a"), b = try makeRun(self, config: text, tag: "aug-b")
        let c = try makeRun(self, config: tinyConfig(stages: stages), tag: "aug-none")
        let straight = try quietTrainer(a)
        XCTAssertEqual(try straight.train(untilStep: 5), .stopped(atStep: 5))
        XCTAssertEqual(try quietTrainer(b).train(untilStep: 2), .stopped(atStep: 2))
        let resumed = try quietTrainer(b)
        XCTAssertEqual(try resumed.train(untilStep: 5), .stopped(atStep: 5))
        XCTAssertTrue(sameBits(resumed.model.parameters.values!, straight.model.parameters.values!), "parameters")
        XCTAssertTrue(sameBits(resumed.ema!, straight.ema!), "EMA")
        let none = try quietTrainer(c)
        XCTAssertEqual(try none.train(untilStep: 5), .stopped(atStep: 5))
        XCTAssertFalse(sameBits(none.model.parameters.values!, straight.model.parameters.values!), "augmentation changed nothing")
    }
}
