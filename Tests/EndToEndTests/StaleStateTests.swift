// What the commands leave and say at their edges: a clean --until-step stop leaves the run ready
// (not "running"); an empty pair list is an error; init refuses initial weights that are not
// there; check-data --json lists every problem with its file.
import XCTest
import Foundation
import TestSupport
import RunTestSupport

extension WorkerMPITests {
    func status(_ run: String) throws -> String? {
        let d = try Data(contentsOf: URL(fileURLWithPath: run + "/state.json"))
        return (try JSONSerialization.jsonObject(with: d) as? [String: Any])?["status"] as? String
    }

    func testUntilStepLeavesTheRunReady() throws {
        try synth()
        let run = try makeRun("until", steps: 4)
        let job = try Binaries.run("leffa-worker", ["--run", run, "--until-step", "2"])
        XCTAssertEqual(job.status, 0, job.log)
        XCTAssertEqual(try status(run), "ready")
        let state = try String(contentsOfFile: run + "/state.json", encoding: .utf8)
        XCTAssertTrue(state.contains("ready: stopped at step 2 of stage only (--until-step 2)"), state)
    }

    func testCheckDataRefusesAnEmptyPairListAndSpeaksJSON() throws {
        let root = dir.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: root.appendingPathComponent("train"), withIntermediateDirectories: true)
        try Data().write(to: root.appendingPathComponent("train_pairs.txt"))
        var job = try Binaries.run("leffa-coord", ["check-data", "--kind", "synthetic", "--root", root.path])
        XCTAssertEqual(job.status, 1, job.log)
        XCTAssertTrue(job.stdout.contains("no samples in the train split"), job.log)

        try synth()
        let data = dir.appendingPathComponent("data")
        try FileManager.default.removeItem(at: data.appendingPathComponent("train/cloth/000001_00.png"))
        job = try Binaries.run("leffa-coord", ["check-data", "--kind", "synthetic", "--root", data.path, "--json"])
        XCTAssertEqual(job.status, 1, job.log)
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(job.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(report["samples"] as? Int, 6)
        let errors = try XCTUnwrap(report["errors"] as? [[String: Any]])
        XCTAssertEqual(errors.count, 1)
        XCTAssertEqual(errors.first?["kind"] as? String, "missing")
        XCTAssertEqual(errors.first?["line"] as? Int, 2)
        XCTAssertTrue((errors.first?["path"] as? String)?.hasSuffix("train/cloth/000001_00.png") == true, "\(errors)")
    }

    func testInitRefusesInitialWeightsThatAreNotThere() throws {
        let cfg = dir.appendingPathComponent("w.yaml")
        try tinyConfig().replacingOccurrences(of: "model: {preset: tiny}", with: "model: {preset: tiny, init: {leffa: missing.safetensors}}")
            .write(to: cfg, atomically: true, encoding: .utf8)
        let run = dir.appendingPathComponent("w").path
        let job = try Binaries.run("leffa-coord", ["init", "--config", cfg.path, "--run", run])
        XCTAssertEqual(job.status, 1, job.log)
        XCTAssertTrue(job.stderr.contains("w.yaml: field model.init.leffa is missing.safetensors, expected a .safetensors file; nothing is at \(run)/missing.safetensors"), job.log)
        XCTAssertFalse(FileManager.default.fileExists(atPath: run))
    }

    /// The run records its data; data replaced under it (another synth) stops the resume, naming
    /// what changed, until --accept-data-change, which the history records. synth itself refuses
    /// to write over data without --force.
    func testChangedDataStopsTheResumeUntilAccepted() throws {
        try synth()
        let run = try makeRun("fingerprint", steps: 4)
        var job = try Binaries.run("leffa-worker", ["--run", run, "--until-step", "2"])
        XCTAssertEqual(job.status, 0, job.log)
        XCTAssertTrue(FileManager.default.fileExists(atPath: run + "/data-manifest.tsv"))
        let data = dir.appendingPathComponent("data").path
        job = try Binaries.run("leffa-coord", ["synth", "--out", data, "--count", "6", "--size", "16x16", "--seed", "9"])
        XCTAssertEqual(job.status, 1, job.log)
        XCTAssertTrue(job.stderr.contains("already holds data") && job.stderr.contains("--force"), job.log)
        job = try Binaries.run("leffa-coord", ["synth", "--out", data, "--count", "6", "--size", "16x16", "--seed", "9", "--force"])
        XCTAssertEqual(job.status, 0, job.log)

        job = try Binaries.run("leffa-worker", ["--run", run])
        XCTAssertEqual(job.status, 1, job.log)
        XCTAssertTrue(job.stderr.contains("the data changed since the run recorded it") && job.stderr.contains("changed size")
                      && job.stderr.contains("--accept-data-change"), job.log)
        XCTAssertEqual(try status(run), "ready", "a refused resume changes nothing")
        job = try Binaries.run("leffa-worker", ["--run", run, "--accept-data-change"])
        XCTAssertEqual(job.status, 0, job.log)
        let history = try String(contentsOfFile: run + "/state.json", encoding: .utf8)
        XCTAssertTrue(history.contains("data change accepted"), history)
    }
}
