// `leffa-coord run`'s supervisor with stand-in workers (scripts): the retry budget, a run marked
// failed is not restarted, a hung worker is stopped and restarted, Ctrl-C waits for a checkpoint;
// and the mpirun command line it builds.
import XCTest
import Foundation
import TestSupport
import LeffaTraining
import LeffaRunFormat
@testable import LeffaRun
import RunTestSupport

final class SupervisorTests: XCTestCase {
    override func tearDown() { TinyRun.cleanUp(); super.tearDown() }
    /// Options for the stand-in workers below (each test names its script); the built
    /// leffa-worker under the supervisor is EndToEndTests/SupervisedWorkerTests.
    func options() throws -> SupervisorOptions {
        var o = SupervisorOptions(worker: "/bin/false")
        o.backoff = 0.2; o.retries = 2; o.heartbeatTimeout = 120; o.pollInterval = 0.05
        return o
    }

    /// A stand-in worker that records its pid, prints `line` to stderr and exits with `code`.
    func exitingWorker(_ dir: RunDirectory, code: Int32, line: String = "") throws -> String {
        let path = dir.url.appendingPathComponent("worker-\(code).sh").path
        try "#!/bin/sh\necho $$ >> \(dir.url.path)/worker-pids\necho '\(line)' >&2\nexit \(code)\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o755)
        return path
    }

    /// Exit status 3 (run failed: a lost rank, MPI) may pass: restarted while the budget lasts.
    func testRetryBudgetEndsWithAClearError() throws {
        var opts = try options()
        let dir = try TinyRun.make()
        opts.worker = try exitingWorker(dir, code: 3); opts.workerArgs = []; opts.retries = 1; opts.backoff = 0.05
        var lines: [String] = []
        XCTAssertThrowsError(try Supervisor(run: dir, options: opts) { lines.append($0) }.run()) {
            XCTAssertTrue("\($0)".contains("giving up after 1 restart(s)"), "\($0)")
        }
        XCTAssertEqual(lines.filter { $0.contains("restarting") }.count, 1)
    }

    /// Exit status 1 (bad input, named in the worker's error line) would fail the same way again:
    /// not restarted; the cause is reported and recorded in the run as failed.
    func testBadInputIsNotRestarted() throws {
        var opts = try options()
        let dir = try TinyRun.make()
        let cause = "/data/train_pairs.txt: line 3: no file image/000003_00.jpg"
        opts.worker = try exitingWorker(dir, code: 1, line: "leffa: rank 1: \(cause) [host h, pid 7; aborting all 2 ranks, exit code 1]")
        opts.workerArgs = []; opts.retries = 3; opts.backoff = 0.05
        var lines: [String] = []
        XCTAssertThrowsError(try Supervisor(run: dir, options: opts) { lines.append($0) }.run()) {
            XCTAssertTrue("\($0)".contains(cause) && "\($0)".contains("Not restarting"), "\($0)")
        }
        XCTAssertEqual(pids(dir).count, 1, "launched once, never restarted")
        let state = try dir.readState()
        XCTAssertEqual(state.status, .failed)
        XCTAssertEqual(state.history.last?.reason, "failed: \(cause)")
    }

    /// A worker that marks the run failed (as a NaN loss does) is not restarted: it would fail again.
    func testAFailedRunIsNotRestarted() throws {
        var opts = try options()
        let dir = try TinyRun.make()
        var state = try dir.readState()
        state.status = .failed
        state.history.append(.init(from: state.stage, to: state.stage, reason: "failed: stage lowres step 3: the loss is nan"))
        let failed = dir.url.appendingPathComponent("failed-state.json")
        let enc = JSONEncoder(); enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try enc.encode(state).write(to: failed)
        let script = dir.url.appendingPathComponent("failing-worker.sh").path
        try "#!/bin/sh\necho $$ >> \(dir.url.path)/worker-pids\ncp \(failed.path) \(dir.stateURL.path)\nexit 1\n".write(toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o755)
        opts.worker = script; opts.workerArgs = []; opts.retries = 3; opts.backoff = 0.05
        var lines: [String] = []
        XCTAssertThrowsError(try Supervisor(run: dir, options: opts) { lines.append($0) }.run()) {
            XCTAssertTrue("\($0)".contains("loss is nan") && "\($0)".contains("Not restarting"), "\($0)")
        }
        XCTAssertEqual(pids(dir).count, 1, "launched once, never restarted")
        XCTAssertFalse(lines.contains { $0.contains("restarting from") }, "\(lines)")
    }

    func testMpirunCommandLine() throws {
        var opts = SupervisorOptions(worker: "/x/leffa-worker")
        opts.ranks = 64; opts.mpirunArgs = ["--bind-to", "none"]
        let dir = RunDirectory("/tmp/r")
        XCTAssertEqual(Supervisor(run: dir, options: opts, log: { _ in }).commandLine(),
                       ["mpirun", "-np", "64", "--oversubscribe", "--bind-to", "none", "/x/leffa-worker", "--run", "/tmp/r"])
        opts.ranks = 1
        XCTAssertEqual(Supervisor(run: dir, options: opts, log: { _ in }).commandLine(), ["/x/leffa-worker", "--run", "/tmp/r"])
        // On this machine the ranks are not bound to one core each (unless the user binds them)…
        opts.ranks = 2; opts.mpirunArgs = []
        XCTAssertEqual(Supervisor(run: dir, options: opts, log: { _ in }).commandLine(),
                       ["mpirun", "-np", "2", "--bind-to", "none", "/x/leffa-worker", "--run", "/tmp/r"])
        opts.mpirunArgs = ["--map-by", "slot:PE=4"]
        XCTAssertEqual(Supervisor(run: dir, options: opts, log: { _ in }).commandLine(),
                       ["mpirun", "-np", "2", "--map-by", "slot:PE=4", "/x/leffa-worker", "--run", "/tmp/r"])
        // …across nodes the launcher's mapping (hostfile slots, Slurm) decides.
        opts.hostfile = "hosts"; opts.mpirunArgs = []
        XCTAssertEqual(Supervisor(run: dir, options: opts, log: { _ in }).commandLine(),
                       ["mpirun", "-np", "2", "--hostfile", "hosts", "/x/leffa-worker", "--run", "/tmp/r"])
    }

    /// A script standing in for the worker: records its pid, then sleeps without a heartbeat.
    func silentWorker(_ dir: RunDirectory) throws -> String {
        let path = dir.url.appendingPathComponent("silent-worker.sh").path
        try "#!/bin/sh\necho $$ >> \(dir.url.path)/worker-pids\nexec sleep 60\n".write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o755)
        return path
    }
    func pids(_ dir: RunDirectory) -> [pid_t] {
        ((try? String(contentsOfFile: dir.url.path + "/worker-pids", encoding: .utf8)) ?? "").split(separator: "\n").compactMap { pid_t($0) }
    }

    func testAHungWorkerIsStoppedAndRestarted() throws {
        var opts = try options()
        let dir = try TinyRun.make()
        opts.worker = try silentWorker(dir); opts.workerArgs = []; opts.heartbeatTimeout = 0.5; opts.retries = 1; opts.backoff = 0.05
        var lines: [String] = []
        XCTAssertThrowsError(try Supervisor(run: dir, options: opts) { lines.append($0) }.run())
        XCTAssertEqual(lines.filter { $0.contains("no heartbeat for") && $0.contains("restarting") }.count, 1, "\(lines)")
        XCTAssertEqual(pids(dir).count, 2)
        for p in pids(dir) { XCTAssertNotEqual(kill(p, 0), 0, "worker \(p) still alive") }
    }

    /// A worker that needs time to finish its step and save after Ctrl-C (here 2 s, beyond
    /// `stopGrace`) is waited for while it shows life; a second Ctrl-C kills it at once.
    func testInterruptWaitsForTheCheckpointAndASecondOneKills() throws {
        for twice in [false, true] {
            var opts = try options()
            let dir = try TinyRun.make()
            let done = dir.url.appendingPathComponent("stopped-cleanly").path
            let script = dir.url.appendingPathComponent("slow-stop.sh").path
            try """
            #!/bin/sh
            echo $$ >> \(dir.url.path)/worker-pids
            trap 'sleep 2; echo saved > \(done); exit 0' INT
            while true; do sleep 0.1; done

            """.write(toFile: script, atomically: true, encoding: .utf8)
            chmod(script, 0o755)
            opts.worker = script; opts.workerArgs = []; opts.stopGrace = 0.5; opts.heartbeatTimeout = 20
            let sup = Supervisor(run: dir, options: opts) { _ in }
            final class Box: @unchecked Sendable { var outcome: SupervisorOutcome? }
            let box = Box(), finished = expectation(description: "supervisor returned")
            Thread.detachNewThread { box.outcome = try? sup.run(); finished.fulfill() }
            let deadline = Date().addingTimeInterval(20)
            while pids(dir).isEmpty && Date() < deadline { usleep(20_000) }
            usleep(200_000)
            let t0 = Date()
            Supervisor.requestStop()
            if twice { usleep(300_000); Supervisor.requestStop() }
            wait(for: [finished], timeout: 30)
            XCTAssertEqual(box.outcome, .interrupted(signal: SIGINT))
            if twice {
                XCTAssertLessThan(Date().timeIntervalSince(t0), 1.9, "a second Ctrl-C kills at once")
                XCTAssertFalse(FileManager.default.fileExists(atPath: done))
            } else {
                XCTAssertTrue(FileManager.default.fileExists(atPath: done), "killed before it could save (after stopGrace)")
            }
            for p in pids(dir) { XCTAssertNotEqual(kill(p, 0), 0, "worker \(p) still alive") }
        }
    }
}
