// `leffa-coord eval` end to end, as a user runs it: weights and a config in, the generated and
// target folders (same names), the contact sheet and eval.json out, read back and re-scored from
// the PNGs; two MPI ranks write the same files and numbers as one process; bad input gets an error
// that names the file.
import XCTest
import Foundation
import TestSupport
import LeffaTensor
import LeffaData
import LeffaModels
import LeffaTraining
import LeffaRunFormat
import LeffaEval

final class EvalCommandTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("leffa-eval-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// `leffa-coord ARGS`, alone or under mpirun with `np` ranks: its status and all it printed.
    func coord(_ args: [String], np: Int? = nil, timeout: Double = 300) throws -> (Int32, String) {
        let r = try np.map { try Binaries.mpirun($0, "leffa-coord", args, timeout: timeout) }
            ?? Binaries.run("leffa-coord", args, timeout: timeout)
        return (r.status, r.output)
    }

    /// A config (tiny model, pixel space, 32×24), synthetic data with a 3-pair test split, and
    /// random weights of that model: (config path, weights path).
    func setUpModel(testCount: Int = 3) throws -> (String, String) {
        let cfg = dir.appendingPathComponent("eval.yaml")
        try """
        run: {name: eval-test, seed: 2}
        model: {preset: tiny}
        data: {kind: synthetic, root: data, space: pixel}
        training: {prediction_type: sample}
        stages:
          - {name: only, resolution: 32x24, steps: 1, batch: 1, lr: 1.0e-3, leffa: {tau: 2.0}}
        """.write(to: cfg, atomically: true, encoding: .utf8)
        try generateSynthetic(out: dir.appendingPathComponent("data"), count: 2, testCount: testCount, height: 32, width: 24, seed: 4)
        let config = try RunConfig.load(path: cfg.path)
        let model = try LeffaModel(config: config.model, seed: 1)
        let weights = dir.appendingPathComponent("w.safetensors").path
        try model.saveWeights(to: weights)
        return (cfg.path, weights)
    }

    func evalArgs(_ cfg: String, _ w: String, out: String) -> [String] {
        ["eval", "--weights", w, "--config", cfg, "--out", out, "--steps", "2", "--guidance", "2"]
    }

    func readReport(_ out: String) throws -> EvalReport {
        let d = JSONDecoder()
        d.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try d.decode(EvalReport.self, from: Data(contentsOf: URL(fileURLWithPath: out + "/eval.json")))
    }

    func files(_ folder: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
    }

    func testEvalWritesFoldersSheetAndScores() throws {
        let (cfg, w) = try setUpModel()
        let out = dir.appendingPathComponent("out").path
        let (status, text) = try coord(evalArgs(cfg, w, out: out))
        XCTAssertEqual(status, 0, text)
        XCTAssertTrue(text.contains("mean-colour baseline"), "prints the table: \(text)")
        XCTAssertTrue(text.contains("eval: 3/3 pairs"), "progress lines: \(text)")

        let names = try files(out + "/generated")
        XCTAssertEqual(names, ["00000-000000_00.png", "00001-000001_00.png", "00002-000002_00.png"])
        XCTAssertEqual(try files(out + "/target"), names, "the FID tools pair files by name")
        XCTAssertEqual(try files(out + "/baseline"), names)
        let sheet = try ImageIO.read(URL(fileURLWithPath: out + "/contact-sheet.png"))
        XCTAssertEqual(sheet.height, 3 * 32 + 2 * 2, "one row per pair")
        XCTAssertEqual(sheet.width, 4 * 24 + 3 * 2, "masked person | garment | generated | target")

        let r = try readReport(out)
        XCTAssertEqual(r.pairs, 3); XCTAssertEqual(r.split, "test"); XCTAssertTrue(r.paired)
        XCTAssertEqual(r.size, [32, 24]); XCTAssertEqual(r.perPair.count, 3)
        XCTAssertEqual(r.sampler.predictionType, "sample")
        // The targets are the held-out test persons, and the scores are those of the files on disk.
        let ds = openDataset(.synthetic, root: dir.appendingPathComponent("data"), split: "test")
        var recomputed: [ImageScores] = []
        for (i, name) in names.enumerated() {
            let s = try ds.sample(at: i, size: Size(height: 32, width: 24))
            let target = try ImageIO.read(URL(fileURLWithPath: out + "/target/" + name))
            XCTAssertEqual(target, Image(tensor: s.image), "target \(name) is the test person")
            let generated = try ImageIO.read(URL(fileURLWithPath: out + "/generated/" + name)).tensor(.signed)
            let scores = ImageScores.of(generated, target.tensor(.signed), garment: s.lossMask)
            XCTAssertEqual(r.perPair[i].model, scores, name)
            recomputed.append(scores)
            // The baseline keeps everything outside the mask and fills the mask with one colour.
            let base = try ImageIO.read(URL(fileURLWithPath: out + "/baseline/" + name)).tensor(.signed)
            let masked = Image(tensor: s.maskedImage).tensor(.signed)
            let n = 32 * 24
            var fill = Set<[Float]>()
            for p in 0..<n {
                let v = (0..<3).map { base.data[$0 * n + p] }
                if s.inpaintMask.data[p] < 0.5 { XCTAssertEqual(v, (0..<3).map { masked.data[$0 * n + p] }) } else { fill.insert(v) }
            }
            XCTAssertEqual(fill.count, 1, "one colour in the mask")
            XCTAssertNotNil(r.perPair[i].flowEPE, "synthetic data has ground-truth flow")
        }
        XCTAssertEqual(r.model!.ssimGarment, ImageScores.mean(recomputed).ssimGarment, accuracy: 1e-12)
        XCTAssertEqual(r.model!.psnr, ImageScores.mean(recomputed).psnr, accuracy: 1e-12)
        let flow = try XCTUnwrap(r.flow)
        XCTAssertTrue(flow.mean.isFinite && flow.mean > 0, "endpoint error \(flow.mean)")
        XCTAssertFalse(flow.layers.isEmpty)
    }

    /// The published pipeline's sampler from the command line: DDPM, guidance rescaled by the
    /// guidance scale, repaint. eval.json records it; each generated image is what the Sampler
    /// with those settings gives for the pair's seed, repainted into the test person, so away
    /// from the mask it is the target's pixels. A bad value names the option.
    func testPublishedSamplerOptions() throws {
        let (cfgPath, w) = try setUpModel()
        let out = dir.appendingPathComponent("published").path
        let (status, text) = try coord(["eval", "--weights", w, "--config", cfgPath, "--out", out, "--limit", "2", "--seed", "3",
                                        "--scheduler", "ddpm", "--steps", "3", "--guidance", "2.5", "--guidance-rescale", "2.5", "--repaint"])
        XCTAssertEqual(status, 0, text)
        XCTAssertTrue(text.contains("3 DDPM steps, guidance 2.5 rescaled by 2.5, repainted"), text)
        let r = try readReport(out)
        XCTAssertEqual(r.sampler.scheduler, "ddpm"); XCTAssertEqual(r.sampler.guidanceRescale, 2.5); XCTAssertTrue(r.sampler.repaint)

        let config = try RunConfig.load(path: cfgPath)
        let model = try LeffaModel(config: config.model, seed: 5)
        try model.loadWeights(from: w)
        let ds = openDataset(.synthetic, root: dir.appendingPathComponent("data"), split: "test")
        for (i, name) in try files(out + "/generated").enumerated() {
            let s = try ds.sample(at: i, size: Size(height: 32, width: 24))
            var sampler = Sampler(scheduler: .ddpm, steps: 3, guidance: 2.5, guidanceRescale: 2.5, seed: SampleRandomness(seed: 3).validationNoiseSeed(pair: i))
            sampler.prediction = config.prediction
            func one(_ t: Tensor) -> Tensor { t.reshaped([1] + t.shape) }
            let c = SampleConditions(person: one(s.image), garment: one(s.reference), mask: one(s.inpaintMask), densepose: one(s.densepose))
            let want = c.repainted(Image(tensor: try sampler.sample(model: model, space: config.space, c)))
            let generated = try ImageIO.read(URL(fileURLWithPath: out + "/generated/" + name))
            XCTAssertEqual(generated, want, name)
            let target = Image(tensor: s.image)
            var kept = 0
            for y in 0..<32 {
                for x in 0..<24 {
                    var near = false
                    for yy in max(0, y - 3)...min(31, y + 3) { for xx in max(0, x - 3)...min(23, x + 3) where s.inpaintMask.data[yy * 24 + xx] > 0.5 { near = true } }
                    if !near { kept += 1; for ch in 0..<3 { XCTAssertEqual(generated[y, x, ch], target[y, x, ch], "\(name) (\(y), \(x))") } }
                }
            }
            XCTAssertGreaterThan(kept, 0, name)
        }

        for (args, expect) in [(["--scheduler", "euler"], ["--scheduler", "euler", "ddpm", "ddim"]),
                               (["--guidance-rescale=-1"], ["--guidance-rescale", "-1"]),
                               (["--steps", "2000"], ["--steps", "1…1000", "2000"])] {
            let bad = dir.appendingPathComponent("bad").path
            let (st, msg) = try coord(["eval", "--weights", w, "--config", cfgPath, "--out", bad] + args)
            XCTAssertNotEqual(st, 0, msg)
            for e in expect { XCTAssertTrue(msg.contains(e), "\(args): '\(e)' not in \(msg)") }
            XCTAssertFalse(FileManager.default.fileExists(atPath: bad), "\(args): nothing written")
        }
    }

    func testTwoRanksWriteTheSameFilesAndNumbersAsOne() throws {
        let (cfg, w) = try setUpModel()
        let one = dir.appendingPathComponent("one").path, two = dir.appendingPathComponent("two").path
        // A target the scores meet: every rank exits 0 (only rank 0 holds the scores).
        let (s1, t1) = try coord(evalArgs(cfg, w, out: one) + ["--min-psnr", "1"])
        XCTAssertEqual(s1, 0, t1)
        let (s2, t2) = try coord(evalArgs(cfg, w, out: two) + ["--min-psnr", "1"], np: 2)
        XCTAssertEqual(s2, 0, t2)
        XCTAssertTrue(t2.contains("targets met"), t2)
        for f in ["generated", "target", "baseline"] {
            let names = try files(one + "/" + f)
            XCTAssertEqual(names.count, 3)
            XCTAssertEqual(try files(two + "/" + f), names)
            for n in names {
                XCTAssertEqual(FileManager.default.contents(atPath: "\(one)/\(f)/\(n)"), FileManager.default.contents(atPath: "\(two)/\(f)/\(n)"), "\(f)/\(n)")
            }
        }
        XCTAssertEqual(FileManager.default.contents(atPath: one + "/contact-sheet.png"), FileManager.default.contents(atPath: two + "/contact-sheet.png"))
        var (a, b) = (try readReport(one), try readReport(two))
        XCTAssertEqual([a.ranks, b.ranks], [1, 2])
        (a.ranks, b.ranks, a.seconds, b.seconds) = (0, 0, 0, 0)
        a.source = ""; b.source = ""
        let enc = JSONEncoder(); enc.outputFormatting = .sortedKeys
        enc.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        XCTAssertEqual(String(decoding: try enc.encode(a), as: UTF8.self), String(decoding: try enc.encode(b), as: UTF8.self))
    }

    func testMissedTargetsFailAfterWritingEverything() throws {
        let (cfg, w) = try setUpModel()
        let out = dir.appendingPathComponent("targets").path
        let (status, text) = try coord(evalArgs(cfg, w, out: out) + ["--min-psnr", "40", "--min-garment-ssim-gain", "0.5"])
        XCTAssertEqual(status, 1, text)
        XCTAssertTrue(text.contains("targets missed") && text.contains("below the target 40.00 dB") && text.contains("less than the target 0.50"), text)
        XCTAssertEqual(try readReport(out).pairs, 3, "the evaluation is written before the verdict")
    }

    func testUnpairedWritesImagesWithoutScores() throws {
        let (cfg, w) = try setUpModel()
        let out = dir.appendingPathComponent("unpaired").path
        let (status, text) = try coord(evalArgs(cfg, w, out: out) + ["--unpaired", "--limit", "2"])
        XCTAssertEqual(status, 0, text)
        XCTAssertEqual(try files(out + "/generated"), ["00000-000000_00-000001_00.png", "00001-000001_00-000002_00.png"])
        let r = try readReport(out)
        XCTAssertFalse(r.paired); XCTAssertNil(r.model); XCTAssertNil(r.baseline); XCTAssertNil(r.flow)
    }

    func testBadInputGetsAnErrorNamingTheFile() throws {
        let (cfg, w) = try setUpModel()
        let out = dir.appendingPathComponent("bad").path
        // A test person image that is missing.
        let missing = dir.appendingPathComponent("data/test/image/000001_00.png")
        let saved = try Data(contentsOf: missing)
        try FileManager.default.removeItem(at: missing)
        var (status, text) = try coord(evalArgs(cfg, w, out: out))
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(text.contains(missing.path), "names the missing file: \(text)")
        try saved.write(to: missing)
        // The same under mpirun: the rank that finds it stops the job, nothing hangs.
        try FileManager.default.removeItem(at: missing)
        (status, text) = try coord(evalArgs(cfg, w, out: out), np: 2, timeout: 120)
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(text.contains(missing.path), "names the missing file: \(text)")
        try saved.write(to: missing)

        // A split with no pairs.
        let pairs = dir.appendingPathComponent("data/test_pairs.txt")
        let list = try Data(contentsOf: pairs)
        try Data().write(to: pairs)
        (status, text) = try coord(evalArgs(cfg, w, out: out))
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(text.contains(pairs.path) && text.contains("no pairs"), text)
        try list.write(to: pairs)
        // A pairs file that does not exist.
        let nowhere = dir.appendingPathComponent("nowhere.txt").path
        (status, text) = try coord(evalArgs(cfg, w, out: out) + ["--pairs", nowhere])
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(text.contains(nowhere), text)

        // Weights of another model size.
        var other = ModelConfig.tiny
        other.unet.blockOutChannels = [32, 64, 64]
        let wrong = dir.appendingPathComponent("other.safetensors").path
        try LeffaModel(config: other, seed: 1).saveWeights(to: wrong)
        (status, text) = try coord(evalArgs(cfg, wrong, out: out))
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(text.contains(wrong), "names the weights file: \(text)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/eval.json"), "nothing written on failure")
    }
}
