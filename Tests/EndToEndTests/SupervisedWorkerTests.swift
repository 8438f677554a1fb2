// `leffa-coord run`'s supervisor with the built leffa-worker, alone and under mpirun: every stage
// completes; a worker (or rank 0) killed with SIGKILL mid-stage is restarted and the run ends with
// the same final weights as an uninterrupted run. And Ctrl-C at the built `leffa-coord run`.
import XCTest
import Foundation
import LeffaTraining
import LeffaRunFormat
import LeffaRun
import RunTestSupport

final class SupervisedWorkerTests: XCTestCase {
    override func tearDown() { TinyRun.cleanUp(); super.tearDown() }

    func options() throws -> SupervisorOptions {
        var o = SupervisorOptions(worker: try Binaries.path("leffa-worker"))
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

    /// Ctrl-C at `leffa-coord run`: the worker's process group is stopped and the command exits 130.
    func testInterruptStopsTheWorkerGroup() throws {
        let dir = try TinyRun.make()
        let r = try Binaries.run("leffa-coord", ["run", "--run", dir.url.path, "--worker", try silentWorker(dir)]) { p in
            let deadline = Date().addingTimeInterval(20)
            while self.pids(dir).isEmpty && Date() < deadline { usleep(20_000) }
            XCTAssertEqual(self.pids(dir).count, 1)
            kill(p.processIdentifier, SIGINT)
        }
        XCTAssertEqual(r.status, 130, r.log)
        usleep(100_000)
        for w in pids(dir) { XCTAssertNotEqual(kill(w, 0), 0, "worker \(w) still alive after Ctrl-C") }
    }
}
