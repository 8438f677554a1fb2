// Whether a run is live, decided as a login node would: by the run locks in the run folder (held
// by processes this node cannot see) and the heartbeat's age, never by a pid.
import XCTest
import Foundation
import LeffaTraining
import LeffaRunFormat
@testable import LeffaRun
import RunTestSupport

final class LivenessTests: XCTestCase {
    override func tearDown() { TinyRun.cleanUp(); super.tearDown() }

    /// A process holding `file` with flock(1), as rank 0 of a job on a compute node would.
    func holdLock(_ file: URL) throws -> Process {
        let p = Process()
        // One process holds the lock and nothing else: killing it frees the lock at once (with
        // `flock FILE sleep 60`, the orphaned sleep would keep it, and Process would wait for it).
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "exec 9>\"$0\"; flock -x 9; exec sleep 60", file.path]
        try p.run()
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if case .held = RunLock.probe(RunDirectory(file.deletingLastPathComponent().path), file.lastPathComponent == "worker.lock" ? .worker : .coordinator) { return p }
            usleep(10_000)
        }
        XCTFail("flock did not take \(file.path)")
        return p
    }

    /// A heartbeat from another host, with a pid that means nothing here.
    func writeForeignHeartbeat(_ dir: RunDirectory, age: Double) throws {
        var hb = Heartbeat(stage: "lowres", step: 2, steps: 6, ranks: 64, phase: "training")
        hb.host = "node-elsewhere-17"; hb.pid = 999_999; hb.jobID = "777"
        hb.unixTime = Date().timeIntervalSince1970 - age
        try hb.write(dir)
    }

    func testAdvanceAndSetRefuseWhileAWorkerOnAnotherNodeHoldsTheLock() throws {
        let dir = try TinyRun.make(steps: [6, 4, 4])
        try TinyRun.train(dir, until: 2)
        try writeForeignHeartbeat(dir, age: 5)
        let before = try Data(contentsOf: dir.stateURL)
        let holder = try holdLock(dir.url.appendingPathComponent("worker.lock"))
        defer { holder.terminate(); holder.waitUntilExit() }
        let live = Liveness.of(dir)
        XCTAssertTrue(live.live, live.why)
        XCTAssertTrue(live.why.contains("node-elsewhere-17") && live.why.contains("job 777"), live.why)
        XCTAssertThrowsError(try StageControl.advance(dir)) { XCTAssertTrue("\($0)".contains("the run is live") && "\($0)".contains("node-elsewhere-17"), "\($0)") }
        XCTAssertThrowsError(try StageControl.set(dir, to: "highres", confirmed: true)) { XCTAssertTrue("\($0)".contains("the run is live"), "\($0)") }
        XCTAssertEqual(try Data(contentsOf: dir.stateURL), before, "state.json changed under a live worker")
        let text = try StageControl.status(dir).text
        XCTAssertTrue(text.contains("live: a worker (pid 999999 on node-elsewhere-17 (job 777))"), text)

        // A second `leffa-coord run` refuses too.
        var opts = SupervisorOptions(worker: "/bin/false")
        opts.heartbeatTimeout = 900
        XCTAssertThrowsError(try Supervisor(run: dir, options: opts, log: { _ in }).run()) { XCTAssertTrue("\($0)".contains("the run is live"), "\($0)") }

        // Once the holder is gone (the job ended, however), the same heartbeat no longer counts.
        holder.terminate(); holder.waitUntilExit()
        XCTAssertFalse(Liveness.of(dir).live)
        XCTAssertEqual(try StageControl.advance(dir).stage, "highres")
    }

    /// A holder whose heartbeat is older than the timeout counts as dead (hung, or its node froze).
    func testAStaleHeartbeatCountsAsDeadEvenWithTheLockHeld() throws {
        let dir = try TinyRun.make(steps: [6, 4, 4])
        try TinyRun.train(dir, until: 2)
        try writeForeignHeartbeat(dir, age: Liveness.defaultStaleAfter + 100)
        let holder = try holdLock(dir.url.appendingPathComponent("worker.lock"))
        defer { holder.terminate(); holder.waitUntilExit() }
        let live = Liveness.of(dir)
        XCTAssertFalse(live.live)
        XCTAssertTrue(live.why.contains("counted as dead"), live.why)
        XCTAssertEqual(try StageControl.advance(dir).stage, "highres")
    }

    /// A fresh heartbeat alone (no lock held: the worker died without a word) is not life, even
    /// from another host whose pids this node cannot check.
    func testAFreshHeartbeatWithoutTheLockIsNotLife() throws {
        let dir = try TinyRun.make(steps: [6, 4, 4])
        try TinyRun.train(dir, until: 2)
        try writeForeignHeartbeat(dir, age: 1)
        try Data().write(to: dir.url.appendingPathComponent("worker.lock"))
        XCTAssertFalse(Liveness.of(dir).live)
        XCTAssertEqual(try StageControl.advance(dir).stage, "highres")
    }

    /// The coordinator's own lock: while `leffa-coord run` supervises (between launches too), the
    /// run is live.
    func testTheCoordinatorLockMakesTheRunLive() throws {
        let dir = try TinyRun.make()
        let lock = try RunLock.acquire(dir, .coordinator)
        XCTAssertTrue(Liveness.of(dir).live)
        XCTAssertThrowsError(try RunLock.acquire(dir, .coordinator)) { XCTAssertTrue("\($0)".contains("`leffa-coord run` (pid \(getpid()) on"), "\($0)") }
        lock.release()
        XCTAssertFalse(Liveness.of(dir).live)
    }

    func testHostfileSlotsAndUsableRankCounts() throws {
        XCTAssertEqual(try HostFile.slots("# nodes\nnode01 slots=4\r\nnode02 slots=2 max_slots=8\nnode03\n\n", source: "h"), 7)
        XCTAssertThrowsError(try HostFile.slots("node01 slots=four\n", source: "hosts.txt")) { XCTAssertTrue("\($0)".contains("hosts.txt: line 1: field slots"), "\($0)") }
        let dir = try TinyRun.make(steps: [4, 4, 4])   // batch 2 in every stage
        let sup = Supervisor(run: dir, options: SupervisorOptions(worker: "/bin/false"), log: { _ in })
        XCTAssertEqual(try sup.usableRanks(atMost: 7), 2)
        XCTAssertEqual(try sup.usableRanks(atMost: 1), 1)
    }
}
