// `leffa-coord run`'s supervisor with the built leffa-worker (one rank, no MPI): every stage
// completes; a worker killed with SIGKILL mid-stage is restarted and the run ends with the same
// final weights as an uninterrupted run.
import XCTest
import Foundation
import TestSupport
import LeffaTraining
import LeffaRunFormat
@testable import LeffaRun

final class SupervisorTests: XCTestCase {
    override func tearDown() { TinyRun.cleanUp(); super.tearDown() }
    var worker: String { Fixtures.packageRoot.appendingPathComponent(".build/release/leffa-worker").path }

    func options() throws -> SupervisorOptions {
        guard FileManager.default.isExecutableFile(atPath: worker) else {
            throw XCTSkip("\(worker) is not built: run `swift build -c release` first (Scripts/test.sh does)")
        }
        var o = SupervisorOptions(worker: worker)
        o.backoff = 0.2; o.retries = 2; o.heartbeatTimeout = 120; o.pollInterval = 0.05
        o.workerArgs = ["--threads", "1"]
        return o
    }

    func testAllStagesCompleteAndAKilledWorkerIsRestarted() throws { try killedWorkerIsRestarted(ranks: 1) }

    /// The same with 2 MPI ranks: rank 0 is killed, mpirun takes the other rank down, the
    /// coordinator restarts both and the run ends bit-identical to an uninterrupted 2-rank run.
    func testTwoRanksAKilledRankIsRestartedAndTheRunEndsBitIdentical() throws { try killedWorkerIsRestarted(ranks: 2) }

    func killedWorkerIsRestarted(ranks: Int) throws {
        var opts = try options()
        opts.ranks = ranks
        let steps = [2, 14, 2]
        // Uninterrupted reference run.
        let clean = try TinyRun.make(steps: steps, name: "clean")
        var cleanLog: [String] = []
        XCTAssertEqual(try Supervisor(run: clean, options: opts) { cleanLog.append($0) }.run(), .completed)
        let cs = try clean.readState()
        XCTAssertEqual(cs.status, .done)
        XCTAssertEqual(cs.completedStages, ["lowres", "highres", "leffa"])
        XCTAssertTrue(cleanLog.contains { $0.contains("[highres] step 14/14") }, "progress lines are echoed: \(cleanLog.suffix(5))")

        // Same run; the worker is killed with SIGKILL in the middle of highres.
        let dir = try TinyRun.make(steps: steps, name: "killed")
        let lock = NSLock()
        var lines: [String] = []
        let sup = Supervisor(run: dir, options: opts) { l in lock.lock(); lines.append(l); lock.unlock() }
        final class Result: @unchecked Sendable { var outcome: SupervisorOutcome?; var failure: Error? }
        let result = Result()
        let done = expectation(description: "run finished")
        Thread.detachNewThread {
            do { result.outcome = try sup.run() } catch { result.failure = error }
            done.fulfill()
        }
        var killed = false
        let deadline = Date().addingTimeInterval(120)
        while !killed && Date() < deadline {
            // One rank: the heartbeat's pid is the supervised child; more: rank 0 under mpirun.
            if let h = Heartbeat.read(dir), h.stage == "highres", h.step >= 5, h.step < 12, sup.childPID != 0,
               ranks == 1 ? h.pid == Int(sup.childPID) : h.pid != Int(sup.childPID) && kill(pid_t(h.pid), 0) == 0 {
                XCTAssertEqual(kill(pid_t(h.pid), SIGKILL), 0)
                killed = true
            }
            usleep(5_000)
        }
        XCTAssertTrue(killed, "never saw highres between steps 5 and 12")
        wait(for: [done], timeout: 300)
        XCTAssertNil(result.failure)
        XCTAssertEqual(result.outcome, .completed)
        XCTAssertEqual(sup.restarts, 1)
        // Alone, the worker itself dies of SIGKILL; under mpirun, mpirun reports the lost rank.
        let why = ranks == 1 ? "killed by signal 9 (SIGKILL)" : "the worker exited with status"
        XCTAssertTrue(lines.contains { $0.contains(why) && $0.contains("restarting from checkpoint step") }, "\(lines.filter { !$0.hasPrefix("  ") })")
        XCTAssertEqual(try dir.readState().status, .done)
        let record = try String(contentsOfFile: dir.url.path + "/coordinator.log", encoding: .utf8)
        XCTAssertTrue(record.contains(why) && record.contains("run complete"), record)
        if ranks > 1 { XCTAssertTrue(record.contains("mpirun -np \(ranks)"), "launched through mpirun: \(record.prefix(2000))") }
        let cfg = try dir.readConfig()
        for stage in ["lowres", "highres", "leffa"] {
            let a = try TinyRun.values(dir.finalWeightsURL(stage).path, config: cfg), b = try TinyRun.values(clean.finalWeightsURL(stage).path, config: cfg)
            let differ = a.count == b.count ? zip(a, b).filter { $0.bitPattern != $1.bitPattern }.count : -1
            XCTAssertEqual(differ, 0, "final weights of \(stage): \(differ) of \(b.count) values differ from the uninterrupted run")
        }
    }

    func testRetryBudgetEndsWithAClearError() throws {
        var opts = try options()
        opts.worker = "/bin/false"; opts.workerArgs = []; opts.retries = 1; opts.backoff = 0.05
        let dir = try TinyRun.make()
        var lines: [String] = []
        XCTAssertThrowsError(try Supervisor(run: dir, options: opts) { lines.append($0) }.run()) {
            XCTAssertTrue("\($0)".contains("giving up after 1 restart(s)"), "\($0)")
        }
        XCTAssertEqual(lines.filter { $0.contains("restarting") }.count, 1)
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

    /// Ctrl-C at `leffa-coord run`: the worker's process group is stopped and the command exits 130.
    func testInterruptStopsTheWorkerGroup() throws {
        let coord = Fixtures.packageRoot.appendingPathComponent(".build/release/leffa-coord")
        guard FileManager.default.isExecutableFile(atPath: coord.path) else { throw XCTSkip("leffa-coord is not built") }
        let dir = try TinyRun.make()
        let p = Process()
        p.executableURL = coord
        p.arguments = ["run", "--run", dir.url.path, "--worker", try silentWorker(dir)]
        p.standardError = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(20)
        while pids(dir).isEmpty && Date() < deadline { usleep(20_000) }
        XCTAssertEqual(pids(dir).count, 1)
        kill(p.processIdentifier, SIGINT)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 130)
        usleep(100_000)
        for w in pids(dir) { XCTAssertNotEqual(kill(w, 0), 0, "worker \(w) still alive after Ctrl-C") }
    }
}
