// `leffa-coord init` and `leffa-worker` end to end, as built binaries (Scripts/test.sh builds
// them before testing): exit codes, the files they leave, and their messages on bad input.
import XCTest
import Foundation
import LeffaTraining
import LeffaRunFormat
import TestSupport
import RunTestSupport

final class CommandTests: XCTestCase {
    /// Runs a built command with two kernel threads; returns (exit status, stdout, stderr).
    func run(_ name: String, _ args: [String]) throws -> (Int32, String, String) {
        let r = try Binaries.run(name, args, environment: ["LEFFA_THREADS": "2"])
        return (r.status, r.stdout, r.stderr)
    }

    func testInitSynthWorkerEndToEnd() throws {
        let root = try tempFolder(self, "cmd")
        let cfg = root.appendingPathComponent("c.yaml"), runDir = root.appendingPathComponent("run")
        try tinyConfig(stages: "  - {name: s0, resolution: 16x16, steps: 3, batch: 2, lr: 1.0e-3}\n  - {name: s1, resolution: 16x16, steps: 2, batch: 2, lr: 1.0e-3}")
            .write(to: cfg, atomically: true, encoding: .utf8)

        var (code, out, err) = try run("leffa-coord", ["init", "--config", cfg.path, "--run", runDir.path])
        XCTAssertEqual(code, 0, err)
        XCTAssertTrue(out.contains("created run") && out.contains("s0 (16x16, 3 steps, batch 2)"), out)
        (code, out, err) = try run("leffa-coord", ["synth", "--out", runDir.appendingPathComponent("data").path, "--count", "4", "--size", "16x16"])
        XCTAssertEqual(code, 0, err)
        (code, _, err) = try run("leffa-coord", ["check-data", "--kind", "synthetic", "--root", runDir.appendingPathComponent("data").path])
        XCTAssertEqual(code, 0, err)

        // Stop after step 2: a checkpoint at 2, the stage still current.
        (code, _, err) = try run("leffa-worker", ["--run", runDir.path, "--until-step", "2"])
        XCTAssertEqual(code, 0, err)
        let dir = RunDirectory(runDir.path)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.checkpointsURL("s0").appendingPathComponent("step-00000002.h5").path))
        XCTAssertEqual(try readMetrics(dir, stage: "s0").map(\.step), [1, 2])
        XCTAssertEqual(try dir.readState().stage, "s0")
        XCTAssertTrue(err.contains("[s0] step 2/3"), err)

        // Resume and finish s0: the run moves on to s1.
        (code, _, err) = try run("leffa-worker", ["--run", runDir.path])
        XCTAssertEqual(code, 0, err)
        XCTAssertTrue(err.contains("resuming stage s0 at step 2"), err)
        XCTAssertEqual(try readMetrics(dir, stage: "s0").map(\.step), [1, 2, 3])
        XCTAssertEqual(try dir.readState().stage, "s1")
        XCTAssertEqual(try dir.readState().completedStages, ["s0"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.finalWeightsURL("s0").path))

        // s1 starts from s0's final weights.
        (code, _, err) = try run("leffa-worker", ["--run", runDir.path])
        XCTAssertEqual(code, 0, err)
        XCTAssertTrue(err.contains("stage s1 starts from s0's final weights"), err)
        XCTAssertEqual(try dir.readState().status, .done)

        // A finished run: a clear refusal.
        (code, _, err) = try run("leffa-worker", ["--run", runDir.path])
        XCTAssertNotEqual(code, 0)
        XCTAssertTrue(err.contains("the run is complete"), err)

        // init refuses to overwrite a run.
        (code, _, err) = try run("leffa-coord", ["init", "--config", cfg.path, "--run", runDir.path])
        XCTAssertNotEqual(code, 0)
        XCTAssertTrue(err.contains("a run already exists"), err)
    }

    func testBadConfigAndMissingRun() throws {
        let root = try tempFolder(self, "cmd-bad")
        let cfg = root.appendingPathComponent("bad.yaml"), runDir = root.appendingPathComponent("run")
        try tinyConfig().replacingOccurrences(of: "batch: 2", with: "batch: 0").write(to: cfg, atomically: true, encoding: .utf8)
        var (code, _, err) = try run("leffa-coord", ["init", "--config", cfg.path, "--run", runDir.path])
        XCTAssertEqual(code, 1, "bad input exits 1")
        XCTAssertTrue(err.contains("bad.yaml") && err.contains("stages[0].batch") && err.contains("an integer ≥ 1"), err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: runDir.path), "no run directory for a bad config")

        (code, _, err) = try run("leffa-coord", ["init", "--config", root.appendingPathComponent("nope.yaml").path, "--run", runDir.path])
        XCTAssertEqual(code, 1, "bad input exits 1")
        XCTAssertTrue(err.contains("nope.yaml") && err.contains("readable"), err)

        (code, _, err) = try run("leffa-worker", ["--run", runDir.path])
        XCTAssertNotEqual(code, 0)
        XCTAssertTrue(err.contains("no run state") && err.contains("leffa-coord init"), err)
    }

    /// `init` with `data.synthesize` makes the set under the run folder (and leaves it alone the
    /// next time); a misspelt key exits 1 naming it, with no run folder.
    func testInitSynthesizesDataAndRefusesUnknownKeys() throws {
        let root = try tempFolder(self, "cmd-synth")
        let cfg = root.appendingPathComponent("s.yaml")
        try tinyConfig().replacingOccurrences(of: "space: pixel}", with: "space: pixel, synthesize: {count: 3, test_count: 1, size: 16x16}}")
            .write(to: cfg, atomically: true, encoding: .utf8)
        var (code, out, err) = try run("leffa-coord", ["init", "--config", cfg.path, "--run", root.appendingPathComponent("run").path])
        XCTAssertEqual(code, 0, err)
        XCTAssertTrue(out.contains("wrote 3 synthetic training pairs and 1 held-out test pairs"), out)
        let data = root.appendingPathComponent("run/data").path
        (code, out, err) = try run("leffa-coord", ["check-data", "--kind", "synthetic", "--root", data])
        XCTAssertEqual(code, 0, err)
        XCTAssertTrue(out.hasPrefix("3 samples; 0 error(s)"), out)
        // Another run on the same (absolute) data root: the data is there already.
        try tinyConfig().replacingOccurrences(of: "root: data, space: pixel}", with: "root: \(data), space: pixel, synthesize: {count: 3, size: 16x16}}")
            .write(to: cfg, atomically: true, encoding: .utf8)
        (code, out, err) = try run("leffa-coord", ["init", "--config", cfg.path, "--run", root.appendingPathComponent("run2").path])
        XCTAssertEqual(code, 0, err)
        XCTAssertTrue(out.contains("already holds data (train_pairs.txt): left untouched") && out.contains("test_count 1 (config: 0)"), out)

        try tinyConfig().replacingOccurrences(of: "checkpoint_every: 2", with: "checkpoint_evry: 2").write(to: cfg, atomically: true, encoding: .utf8)
        (code, _, err) = try run("leffa-coord", ["init", "--config", cfg.path, "--run", root.appendingPathComponent("run3").path])
        XCTAssertEqual(code, 1, "bad input exits 1")
        XCTAssertTrue(err.contains("s.yaml: field training.checkpoint_evry: unknown key checkpoint_evry (did you mean checkpoint_every?)"), err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: root.appendingPathComponent("run3").path))
    }

    /// A run directory written by a newer build: every command that reads it says which file and
    /// field, and that this build is too old, and changes nothing.
    func testRunDirectoryFromANewerFormat() throws {
        let dir = try makeRun(self, config: tinyConfig(), tag: "cmd-newer")
        let state = dir.stateURL
        let text = try String(contentsOf: state, encoding: .utf8)
        XCTAssertTrue(text.contains("\"format_version\" : 1"), text)
        let newer = text.replacingOccurrences(of: "\"format_version\" : 1", with: "\"format_version\" : 99")
        try newer.write(to: state, atomically: true, encoding: .utf8)
        for args in [["run", "--run", dir.url.path], ["stage", "status", "--run", dir.url.path],
                     ["stage", "advance", "--run", dir.url.path], ["export", "--run", dir.url.path, "--format", "leffa", "--out", dir.url.path + "/x.safetensors"]] {
            let (code, _, err) = try run("leffa-coord", args)
            XCTAssertNotEqual(code, 0, "\(args)")
            XCTAssertTrue(err.contains("state.json") && err.contains("format_version is 99") && err.contains("upgrade"), "\(args): \(err)")
        }
        let (code, _, err) = try run("leffa-worker", ["--run", dir.url.path])
        XCTAssertNotEqual(code, 0)
        XCTAssertTrue(err.contains("format_version is 99"), err)
        XCTAssertEqual(try String(contentsOf: state, encoding: .utf8), newer, "the state file is left as it was")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.checkpointsURL("s0").path), [])
    }
}
