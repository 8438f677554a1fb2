// The bad-input catalogue, through the built commands as a user meets them: configs, data, weights
// files, run folders and the command line. Every case must exit with a status (not a signal), print
// an error naming the file or field and what was expected, leave the run folder exactly as it was
// (every file's bytes; the lock files' holder notes aside) and write nothing half-done.
import XCTest
import Foundation
import LeffaData
import LeffaTraining
import LeffaRunFormat
import TestSupport
import RunTestSupport

final class BadInputCatalogueTests: XCTestCase {
    struct Case {
        var name: String
        /// Damage done to a fresh copy of the trained run (and files in the scratch folder) before
        /// the "before" snapshot.
        var prepare: (_ run: URL, _ scratch: URL) throws -> Void = { _, _ in }
        /// The command: a built command (or "mpirun") and its arguments.
        var command: (_ run: URL, _ scratch: URL) -> (String, [String])
        var expect: [String]
        /// Paths (relative to the scratch folder) that must not exist afterwards.
        var absent: [String] = []
    }

    /// Runs a built command (or mpirun); returns (status, how it ended, stderr).
    func execute(_ program: String, _ args: [String]) throws -> (Int32, Process.TerminationReason, String) {
        let r = try Binaries.run(program, args)
        return (r.status, r.reason, r.stderr)
    }

    /// Every file's bytes and every folder under `url`, lock files aside (a refused worker takes,
    /// then drops, the worker lock and notes its pid in it).
    func snapshot(_ url: URL) -> [String: Data] {
        var out: [String: Data] = [:]
        guard let e = FileManager.default.enumerator(at: url, includingPropertiesForKeys: nil) else { return out }
        for case let f as URL in e where !f.lastPathComponent.hasSuffix(".lock") {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: f.path, isDirectory: &isDir) else { continue }
            out[f.path.replacingOccurrences(of: url.path, with: "")] = isDir.boolValue ? Data("<dir>".utf8) : FileManager.default.contents(atPath: f.path)
        }
        return out
    }

    func testCatalogue() throws {
        // Both commands are built (else this fails here, before any work).
        _ = try Binaries.path("leffa-coord")
        let workerPath = try Binaries.path("leffa-worker")
        // One tiny run trained to step 2 (checkpoint at step 2) and its export: every case
        // damages a copy of it.
        let base = try makeRun(self, config: tinyConfig(), tag: "catalogue")
        _ = try quietTrainer(base).train(untilStep: 2)
        let root = try tempFolder(self, "catalogue-cases")
        let exported = root.appendingPathComponent("tiny.safetensors")
        let (ec, _, ee) = try execute("leffa-coord", ["export", "--run", base.url.path, "--stage", "s0", "--step", "2", "--format", "leffa", "--out", exported.path])
        XCTAssertEqual(ec, 0, ee)
        let img = { (run: URL, folder: String, name: String) in run.appendingPathComponent("data/train/\(folder)/\(name)") }
        func edit(_ file: URL, _ from: String, _ to: String) throws {
            let text = try String(contentsOf: file, encoding: .utf8)
            XCTAssertTrue(text.contains(from), "\(file.lastPathComponent) has no \(from)")
            try text.replacingOccurrences(of: from, with: to).write(to: file, atomically: true, encoding: .utf8)
        }
        func writeConfig(_ scratch: URL, _ text: String) throws { try text.write(to: scratch.appendingPathComponent("c.yaml"), atomically: true, encoding: .utf8) }
        func removeCheckpoints(_ run: URL) throws {
            let c = run.appendingPathComponent("stages/s0/checkpoints")
            for f in try FileManager.default.contentsOfDirectory(atPath: c.path) { try FileManager.default.removeItem(at: c.appendingPathComponent(f)) }
        }
        let initNew = { (_: URL, s: URL) in ("leffa-coord", ["init", "--config", s.appendingPathComponent("c.yaml").path, "--run", s.appendingPathComponent("new").path]) }
        let worker = { (r: URL, _: URL) in ("leffa-worker", ["--run", r.path]) }

        let cases: [Case] = [
            // Configs.
            Case(name: "config: YAML syntax", prepare: { _, s in try writeConfig(s, "run: {name: x\nstages: [") },
                 command: initNew, expect: ["c.yaml", "valid YAML"], absent: ["new"]),
            Case(name: "config: resolution not a multiple", prepare: { _, s in try writeConfig(s, tinyConfig().replacingOccurrences(of: "space: pixel", with: "space: latent").replacingOccurrences(of: "16x16", with: "20x16")) },
                 command: initNew, expect: ["c.yaml", "stages[0].resolution", "multiples of 8", "20x16"], absent: ["new"]),
            Case(name: "config: misspelt key", prepare: { _, s in try writeConfig(s, tinyConfig().replacingOccurrences(of: "checkpoint_every: 2", with: "checkpoint_evry: 2")) },
                 command: initNew, expect: ["c.yaml", "training.checkpoint_evry", "did you mean checkpoint_every?"], absent: ["new"]),
            Case(name: "config: misspelt section", prepare: { _, s in try writeConfig(s, tinyConfig().replacingOccurrences(of: "training:", with: "trainng:")) },
                 command: initNew, expect: ["c.yaml", "trainng", "did you mean training?"], absent: ["new"]),
            Case(name: "config: missing file", command: { _, s in ("leffa-coord", ["init", "--config", s.appendingPathComponent("nope.yaml").path, "--run", s.appendingPathComponent("new").path]) },
                 expect: ["nope.yaml", "readable"], absent: ["new"]),
            Case(name: "config: wrong value type", prepare: { _, s in try writeConfig(s, tinyConfig().replacingOccurrences(of: "grad_clip: 1.0", with: "grad_clip: [1]")) },
                 command: initNew, expect: ["c.yaml", "training.grad_clip", "a number"], absent: ["new"]),
            Case(name: "config: a run already there", prepare: { _, s in try writeConfig(s, tinyConfig()) },
                 command: { r, s in ("leffa-coord", ["init", "--config", s.appendingPathComponent("c.yaml").path, "--run", r.path]) },
                 expect: ["state.json", "a run already exists here"]),
            Case(name: "config: edited in the run", prepare: { r, _ in try edit(r.appendingPathComponent("config.yaml"), "ema_decay: 0.9", "ema_decay: 0.9\n  prediction_type: x0") },
                 command: worker, expect: ["config.yaml", "training.prediction_type", "epsilon, v_prediction or sample", "x0"]),
            // Data.
            Case(name: "data: missing image", prepare: { r, _ in try FileManager.default.removeItem(at: img(r, "image", "000001_00.png")) },
                 command: worker, expect: ["000001_00.png", "missing", "train_pairs.txt"]),
            Case(name: "data: not an image", prepare: { r, _ in try Data("this is no PNG".utf8).write(to: img(r, "cloth", "000002_00.png")) },
                 command: worker, expect: ["000002_00.png"]),
            Case(name: "data: malformed pairs line", prepare: { r, _ in
                    let u = r.appendingPathComponent("data/train_pairs.txt")
                    try (try String(contentsOf: u, encoding: .utf8) + "a.png b.png c.png d.png\n").write(to: u, atomically: true, encoding: .utf8) },
                 command: worker, expect: ["train_pairs.txt", "line 5", "expected"]),
            Case(name: "data: no data folder", prepare: { r, _ in try FileManager.default.moveItem(at: r.appendingPathComponent("data"), to: r.appendingPathComponent("data-moved")) },
                 command: worker, expect: ["data", "train_pairs.txt"]),
            Case(name: "data: mask of the wrong size", prepare: { r, _ in
                    try ImageIO.write(Image(height: 8, width: 8, channels: 1, pixels: [UInt8](repeating: 255, count: 64)), to: img(r, "agnostic-mask", "000000_00_mask.png"), format: .png) },
                 command: worker, expect: ["000000_00_mask.png", "wrong size"]),
            // Weights files.
            Case(name: "weights: truncated file for sample", prepare: { _, s in
                    try (try Data(contentsOf: exported)).prefix(5000).write(to: s.appendingPathComponent("cut.safetensors")) },
                 command: { r, s in ("leffa-coord", ["sample", "--weights", s.appendingPathComponent("cut.safetensors").path, "--config", r.appendingPathComponent("config.yaml").path,
                                                     "--person", img(r, "image", "000000_00.png").path, "--garment", img(r, "cloth", "000000_00.png").path,
                                                     "--mask", img(r, "agnostic-mask", "000000_00_mask.png").path, "--densepose", img(r, "image-densepose", "000000_00.png").path,
                                                     "--out", s.appendingPathComponent("samples").path, "--steps", "2"]) },
                 expect: ["cut.safetensors"], absent: ["samples"]),
            Case(name: "weights: not safetensors as initial weights", prepare: { r, s in
                    try removeCheckpoints(r)
                    try Data(repeating: 0x41, count: 100).write(to: s.appendingPathComponent("junk.safetensors"))
                    try edit(r.appendingPathComponent("config.yaml"), "model: {preset: tiny}", "model: {preset: tiny, init: {leffa: \(s.appendingPathComponent("junk.safetensors").path)}}")
                    try RunDirectory(r.path).acceptConfigEdit() },
                 command: worker, expect: ["junk.safetensors"]),
            Case(name: "weights: another model's initial weights", prepare: { r, s in
                    try removeCheckpoints(r)
                    try edit(r.appendingPathComponent("config.yaml"), "model: {preset: tiny}", "model: {preset: tiny, unet: {block_out_channels: [32, 64, 64], layers_per_block: 1}, init: {leffa: \(exported.path)}}")
                    try RunDirectory(r.path).acceptConfigEdit() },
                 command: worker, expect: ["tiny.safetensors"]),
            Case(name: "weights: export to a folder that is a file", prepare: { _, s in try Data("x".utf8).write(to: s.appendingPathComponent("file")) },
                 command: { r, s in ("leffa-coord", ["export", "--run", r.path, "--stage", "s0", "--step", "2", "--format", "diffusers", "--out", s.appendingPathComponent("file").path]) },
                 expect: ["file", "exists and is a file", "expected a folder"]),
            // Run folders.
            Case(name: "run: state.json not JSON", prepare: { r, _ in try Data("{ broken".utf8).write(to: r.appendingPathComponent("state.json")) },
                 command: { r, _ in ("leffa-coord", ["stage", "status", "--run", r.path]) }, expect: ["state.json", "not a valid run state"]),
            Case(name: "run: state.json from a newer build", prepare: { r, _ in try edit(r.appendingPathComponent("state.json"), "\"format_version\" : 1", "\"format_version\" : 7") },
                 command: worker, expect: ["state.json", "format_version is 7", "upgrade"]),
            Case(name: "run: unknown current stage", prepare: { r, _ in try edit(r.appendingPathComponent("state.json"), "\"stage\" : \"s0\"", "\"stage\" : \"s9\"") },
                 command: worker, expect: ["state.json", "field stage is s9"]),
            Case(name: "run: config.yaml gone", prepare: { r, _ in try FileManager.default.removeItem(at: r.appendingPathComponent("config.yaml")) },
                 command: worker, expect: ["config.yaml"]),
            Case(name: "run: no run there", command: { _, s in ("leffa-coord", ["stage", "status", "--run", s.appendingPathComponent("nothing").path]) },
                 expect: ["nothing", "no run state", "leffa-coord init"], absent: ["nothing"]),
            Case(name: "run: set to an unknown stage", command: { r, _ in ("leffa-coord", ["stage", "set", "s7", "--run", r.path, "--yes"]) },
                 expect: ["no stage named s7", "s0"]),
            Case(name: "run: advance without a checkpoint", prepare: { r, _ in try removeCheckpoints(r) },
                 command: { r, _ in ("leffa-coord", ["stage", "advance", "--run", r.path]) }, expect: ["checkpoints", "no valid checkpoint"]),
            Case(name: "run: checkpoint step that does not exist", command: { r, s in ("leffa-coord", ["export", "--run", r.path, "--stage", "s0", "--step", "5", "--out", s.appendingPathComponent("x.safetensors").path]) },
                 expect: ["step 5"], absent: ["x.safetensors"]),
            // The command line.
            Case(name: "cli: --np 0", command: { r, _ in ("leffa-coord", ["run", "--run", r.path, "--np", "0"]) }, expect: ["--np", "at least 1"]),
            Case(name: "cli: synth --size", command: { _, s in ("leffa-coord", ["synth", "--out", s.appendingPathComponent("d").path, "--size", "10x10"]) },
                 expect: ["--size", "10x10"], absent: ["d"]),
            Case(name: "cli: --reduction", command: { r, _ in ("leffa-worker", ["--run", r.path, "--reduction", "nccl"]) }, expect: ["nccl", "auto", "shared", "buckets"]),
            Case(name: "cli: eval --size", command: { r, s in ("leffa-coord", ["eval", "--run", r.path, "--stage", "s0", "--step", "2", "--out", s.appendingPathComponent("ev").path, "--size", "big"]) },
                 expect: ["--size", "big"], absent: ["ev"]),
            Case(name: "cli: sample --scheduler", command: { r, s in ("leffa-coord", ["sample", "--run", r.path, "--stage", "s0", "--step", "2",
                                                     "--person", img(r, "image", "000000_00.png").path, "--garment", img(r, "cloth", "000000_00.png").path,
                                                     "--mask", img(r, "agnostic-mask", "000000_00_mask.png").path, "--densepose", img(r, "image-densepose", "000000_00.png").path,
                                                     "--out", s.appendingPathComponent("samples").path, "--scheduler", "euler"]) },
                 expect: ["--scheduler", "euler", "ddpm", "ddim"], absent: ["samples"]),
            Case(name: "cli: sample --guidance-rescale", command: { r, s in ("leffa-coord", ["sample", "--run", r.path, "--stage", "s0", "--step", "2",
                                                     "--person", img(r, "image", "000000_00.png").path, "--garment", img(r, "cloth", "000000_00.png").path,
                                                     "--mask", img(r, "agnostic-mask", "000000_00_mask.png").path, "--densepose", img(r, "image-densepose", "000000_00.png").path,
                                                     "--out", s.appendingPathComponent("samples").path, "--guidance-rescale=-0.5"]) },
                 expect: ["--guidance-rescale", "-0.5", "≥ 0"], absent: ["samples"]),
            Case(name: "config: validation scheduler", prepare: { r, _ in try edit(r.appendingPathComponent("config.yaml"), "ema_decay: 0.9", "ema_decay: 0.9\n  validation: {every: 1, scheduler: ancestral}") },
                 command: worker, expect: ["config.yaml", "training.validation.scheduler", "ddpm or ddim", "ancestral"]),
            Case(name: "cli: export --format", command: { r, s in ("leffa-coord", ["export", "--run", r.path, "--format", "onnx", "--out", s.appendingPathComponent("x").path]) },
                 expect: ["format", "onnx"], absent: ["x"]),
            Case(name: "cli: export --dtype", command: { r, s in ("leffa-coord", ["export", "--run", r.path, "--dtype", "f16", "--out", s.appendingPathComponent("x").path]) },
                 expect: ["--dtype", "f16", "float32", "float16", "bfloat16"], absent: ["x"]),
            Case(name: "cli: ranks that do not divide the batch", command: { r, _ in
                    ("mpirun", ["--oversubscribe", "-np", "3", workerPath, "--run", r.path]) },
                 expect: ["config.yaml", "stages[0].batch (stage s0) is 2, which 3 ranks cannot split", "rank counts that divide every stage's batch: 1, 2"]),
        ]
        XCTAssertGreaterThanOrEqual(cases.count, 20)
        for c in cases {
            let scratch = root.appendingPathComponent(c.name.filter { $0.isLetter || $0.isNumber })
            try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
            let run = scratch.appendingPathComponent("run")
            try FileManager.default.copyItem(at: base.url, to: run)
            try c.prepare(run, scratch)
            let before = snapshot(run)
            let (program, args) = c.command(run, scratch)
            let (status, reason, err) = try execute(program, args)
            XCTAssertEqual(reason, .exit, "\(c.name): killed by signal \(status)\n\(err)")
            // The exit-code convention (README): 2 for the command line, 1 for any other bad input.
            let usage = c.name.hasPrefix("cli:") && !c.name.contains("ranks")
            XCTAssertEqual(status, usage ? 2 : 1, "\(c.name): exit \(status)\n\(err)")
            for s in c.expect { XCTAssertTrue(err.contains(s), "\(c.name): '\(s)' not in:\n\(err)") }
            XCTAssertFalse(err.contains("Fatal error") || err.contains("Stack dump"), "\(c.name): crashed\n\(err)")
            let after = snapshot(run)
            XCTAssertEqual(Set(after.keys), Set(before.keys), "\(c.name): files added or removed: \(Set(after.keys).symmetricDifference(before.keys).sorted())")
            for (k, v) in before where after[k] != v { XCTFail("\(c.name): \(k) changed") }
            for a in c.absent { XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.appendingPathComponent(a).path), "\(c.name): \(a) was written") }
            try? FileManager.default.removeItem(at: scratch)
        }
    }
}
