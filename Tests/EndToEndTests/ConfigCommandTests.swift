// Settings changed on purpose only: `init --set` overrides (typed, validated like the file,
// recorded), `config` prints the effective config with defaults marked, a hand edit of
// RUN/config.yaml is refused until `config --accept-edit`, and `run --dry-run` shows the launch.
import XCTest
import Foundation
import TestSupport
import RunTestSupport

extension WorkerMPITests {
    func testInitSetOverridesAreTypedValidatedAndRecorded() throws {
        try synth()
        let cfg = dir.appendingPathComponent("set.yaml")
        try tinyConfig().replacingOccurrences(of: "root: data", with: "root: \(dir.appendingPathComponent("data").path)")
            .write(to: cfg, atomically: true, encoding: .utf8)
        let run = dir.appendingPathComponent("set").path
        var job = try Binaries.run("leffa-coord", ["init", "--config", cfg.path, "--run", run,
                                                    "--set", "stages[0].lr=2.0e-4", "--set", "training.keep_checkpoints=5"])
        XCTAssertEqual(job.status, 0, job.log)
        job = try Binaries.run("leffa-coord", ["config", "--run", run, "--json"])
        XCTAssertEqual(job.status, 0, job.log)
        let rows = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(job.stdout.utf8)) as? [[String: Any]])
        func row(_ key: String) -> [String: Any]? { rows.first { $0["key"] as? String == key } }
        XCTAssertEqual(row("stages[0].lr")?["value"] as? String, "2.0e-4")
        XCTAssertEqual(row("training.keep_checkpoints")?["value"] as? String, "5")
        XCTAssertEqual(row("training.keep_checkpoints")?["default"] as? Bool, false)
        XCTAssertEqual(row("training.log_every")?["default"] as? Bool, true, "defaults are listed and marked")
        let history = try String(contentsOfFile: run + "/state.json", encoding: .utf8)
        XCTAssertTrue(history.contains("with --set stages[0].lr=2.0e-4 --set training.keep_checkpoints=5"), history)
        job = try Binaries.run("leffa-coord", ["config", "--run", run])
        XCTAssertTrue(job.stdout.contains("training.log_every:") && job.stdout.contains("# default"), job.log)

        // Validated like the file; a path that is not there is named.
        job = try Binaries.run("leffa-coord", ["init", "--config", cfg.path, "--run", run + "2", "--set", "stages[0].lr=lots"])
        XCTAssertEqual(job.status, 1, job.log)
        XCTAssertTrue(job.stderr.contains("with --set stages[0].lr=lots: field stages[0].lr"), job.log)
        job = try Binaries.run("leffa-coord", ["init", "--config", cfg.path, "--run", run + "2", "--set", "stages[3].lr=1"])
        XCTAssertEqual(job.status, 1, job.log)
        XCTAssertTrue(job.stderr.contains("stages has 1 item(s), no [3]"), job.log)
        XCTAssertFalse(FileManager.default.fileExists(atPath: run + "2"))
    }

    func testAHandEditIsRefusedUntilAccepted() throws {
        try synth()
        let run = try makeRun("edited", steps: 2)
        let url = URL(fileURLWithPath: run + "/config.yaml")
        try String(contentsOf: url, encoding: .utf8).replacingOccurrences(of: "lr: 1.0e-3", with: "lr: 5.0e-4")
            .write(to: url, atomically: true, encoding: .utf8)
        var job = try Binaries.run("leffa-worker", ["--run", run])
        XCTAssertEqual(job.status, 1, job.log)
        XCTAssertTrue(job.stderr.contains("edited since the run recorded it") && job.stderr.contains("--accept-edit"), job.log)
        job = try Binaries.run("leffa-coord", ["config", "--run", run, "--accept-edit"])
        XCTAssertEqual(job.status, 0, job.log)
        XCTAssertTrue(job.stdout.contains("config.yaml edit accepted"), job.log)
        job = try Binaries.run("leffa-worker", ["--run", run])
        XCTAssertEqual(job.status, 0, job.log)
        XCTAssertTrue(job.stderr.contains("lr 5.0e-04"), job.log)
        let history = try String(contentsOfFile: run + "/state.json", encoding: .utf8)
        XCTAssertTrue(history.contains("config.yaml edit accepted"), history)
    }

    func testRunDryRunPrintsTheLaunchAndLaunchesNothing() throws {
        try synth()
        let run = try makeRun("dry", steps: 2)
        let job = try Binaries.run("leffa-coord", ["run", "--run", run, "--np", "2", "--dry-run"])
        XCTAssertEqual(job.status, 0, job.log)
        XCTAssertTrue(job.stdout.contains("mpirun -np 2") && job.stdout.contains("leffa-worker --run \(run)"), job.log)
        XCTAssertTrue(job.stdout.contains("one launch per stage: only"), job.log)
        XCTAssertFalse(FileManager.default.fileExists(atPath: run + "/coordinator.log"))
        XCTAssertTrue(try FileManager.default.contentsOfDirectory(atPath: run + "/stages/only/checkpoints").isEmpty)
    }
}
