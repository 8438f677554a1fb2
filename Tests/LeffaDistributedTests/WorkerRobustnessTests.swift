// The worker's guarantees under real-cluster events, end to end: fixed order independent of the
// thread count, preemption (SIGUSR1 mid-step → agreed micro-batch boundary → checkpoint → exact
// resume), time-based checkpoints, and the run lock that makes a run live from any node.
import XCTest
import Foundation
import TestSupport

extension WorkerMPITests {
    /// --fixed-order: 1 rank × 1 thread, 1 rank × 2 threads and 2 ranks × 1 thread end with the
    /// same bits, on a 3-level UNet at 32×24 with the Leffa loss (its flow attention included).
    func testFixedOrderIsBitIdenticalForAnyThreadCount() throws {
        try synth()
        let stage = "resolution: 32x24, leffa: {weight: 0.1, tau: 2.0, timestep_threshold: 1000, min_resolution_fraction: 0.03}"
        let cfg = { (n: String) in try self.makeRun(n, steps: 2, batch: 4, extra: ", optimizer: {weight_decay: 0.01}", stage: stage) }
        let a = try cfg("t1"), b = try cfg("t2"), c = try cfg("r2")
        for r in [a, b, c] {   // the 3-level UNet of Configs/tiny-synthetic.yaml
            let path = r + "/config.yaml"
            let text = try String(contentsOfFile: path, encoding: .utf8)
                .replacingOccurrences(of: "model: {preset: tiny}", with: "model: {preset: tiny, unet: {block_out_channels: [32, 64, 64], layers_per_block: 1}}")
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        }
        let w = bin.appendingPathComponent("leffa-worker").path
        let (s1, e1, _) = try run(w, ["--run", a, "--fixed-order", "--threads", "1"])
        XCTAssertEqual(s1, 0, e1)
        let (s2, e2, _) = try run(w, ["--run", b, "--fixed-order", "--threads", "2"])
        XCTAssertEqual(s2, 0, e2)
        let (s3, e3, _) = try run(try mpirun(), ["--oversubscribe", "-np", "2", w, "--run", c, "--fixed-order", "--threads", "1"])
        XCTAssertEqual(s3, 0, e3)
        XCTAssertEqual(try weights(a), try weights(b), "1 rank × 1 thread and 1 rank × 2 threads differ")
        XCTAssertEqual(try weights(a), try weights(c), "1 rank × 1 thread and 2 ranks × 1 thread differ")
    }

    /// Slurm's warning before the time limit (SIGUSR1), sent to rank 0 only while step 3 runs its
    /// micro-batches: both ranks agree to stop at the next micro-batch boundary, drop the partial
    /// step, keep a checkpoint of step 2 and exit 0; resuming ends bit-identical to a run that was
    /// never stopped.
    func testSignalMidStepCheckpointsAndResumesExactly() throws {
        try synth()
        let stage = "resolution: 16x16, grad_accum: 4"
        let straight = try makeRun("straight", steps: 4, batch: 8, checkpointEvery: 100, stage: stage)
        let stopped = try makeRun("stopped", steps: 4, batch: 8, checkpointEvery: 100, stage: stage)
        let w = bin.appendingPathComponent("leffa-worker").path
        let (s0, e0, _) = try run(try mpirun(), ["--oversubscribe", "-np", "2", w, "--run", straight])
        XCTAssertEqual(s0, 0, e0)
        var signalled = false
        let (s1, e1, _) = try run(try mpirun(), ["--oversubscribe", "-np", "2", w, "--run", stopped], environment: ["SLURM_JOB_ID": "4242"]) { _ in
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline {
                if let d = FileManager.default.contents(atPath: stopped + "/heartbeat.json"),
                   let hb = try? JSONSerialization.jsonObject(with: d) as? [String: Any], (hb["step"] as? Int ?? 0) >= 2,
                   let pid = hb["pid"] as? Int {
                    // Where rank 0 runs, for a login node to read.
                    XCTAssertEqual(hb["job_id"] as? String, "4242")
                    XCTAssertNotNil(hb["host"] as? String)
                    kill(pid_t(pid), SIGUSR1); signalled = true; return
                }
                usleep(2_000)
            }
        }
        XCTAssertTrue(signalled, "no heartbeat at step 2")
        XCTAssertEqual(s1, 0, e1)
        XCTAssertTrue(e1.contains("stop requested during step 3 of stage only, after micro-batch"), e1)
        let ckpts = try FileManager.default.contentsOfDirectory(atPath: stopped + "/stages/only/checkpoints").filter { $0.hasSuffix(".h5") }
        XCTAssertEqual(ckpts, ["step-00000002.h5"], "the partial step 3 is dropped; the state after step 2 is saved")
        XCTAssertFalse(FileManager.default.fileExists(atPath: stopped + "/stages/only/final.safetensors"))
        let (s2, e2, _) = try run(try mpirun(), ["--oversubscribe", "-np", "2", w, "--run", stopped])
        XCTAssertEqual(s2, 0, e2)
        XCTAssertTrue(e2.contains("resuming stage only at step 2"), e2)
        XCTAssertEqual(try weights(straight), try weights(stopped), "stopped mid-step and resumed differs from a run never stopped")
    }

    /// training.checkpoint_every_minutes: a checkpoint whenever that much time passed since the
    /// last one, besides checkpoint_every (here never due).
    func testTimeBasedCheckpoints() throws {
        try synth()
        let r = try makeRun("minutes", steps: 3, extra: ", checkpoint_every_minutes: 0.00001, keep_checkpoints: 10", checkpointEvery: 1000)
        let plain = try makeRun("plain", steps: 3, extra: ", keep_checkpoints: 10", checkpointEvery: 1000)
        let w = bin.appendingPathComponent("leffa-worker").path
        for x in [r, plain] { let (s, e, _) = try run(w, ["--run", x]); XCTAssertEqual(s, 0, e) }
        let list = { (x: String) in try FileManager.default.contentsOfDirectory(atPath: x + "/stages/only/checkpoints").filter { $0.hasSuffix(".h5") }.sorted() }
        XCTAssertEqual(try list(r), ["step-00000001.h5", "step-00000002.h5", "step-00000003.h5"])
        XCTAssertEqual(try list(plain), ["step-00000003.h5"])
    }

    /// A second worker on a live run (its lock held, as by rank 0 of a job on another node) is
    /// refused before it touches anything.
    func testASecondWorkerIsRefusedWhileTheRunIsLive() throws {
        try synth()
        let r = try makeRun("locked", steps: 2)
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/bin/sh")
        holder.arguments = ["-c", "exec 9>\"$0\"; flock -x 9; exec sleep 60", r + "/worker.lock"]
        try holder.run()
        defer { holder.terminate(); holder.waitUntilExit() }
        let deadline = Date().addingTimeInterval(10)
        while !FileManager.default.fileExists(atPath: r + "/worker.lock") && Date() < deadline { usleep(10_000) }
        usleep(100_000)
        let (s, e, _) = try run(bin.appendingPathComponent("leffa-worker").path, ["--run", r])
        XCTAssertEqual(s, 1, e)
        XCTAssertTrue(e.contains("worker.lock: a worker") && e.contains("is already working on this run"), e)
        XCTAssertTrue(try FileManager.default.contentsOfDirectory(atPath: r + "/stages/only/checkpoints").isEmpty)
    }
}
