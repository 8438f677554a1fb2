// The worker's guarantees under real-cluster events, end to end: fixed order independent of the
// thread count, preemption (SIGUSR1 mid-step → agreed micro-batch boundary → checkpoint → exact
// resume), time-based checkpoints, and the run lock that makes a run live from any node.
import XCTest
import Foundation
import TestSupport
import LeffaRunFormat

extension WorkerMPITests {
    /// Two identical runs whose steps have 4 micro-batches (batch 8, grad_accum 4): boundaries to
    /// stop at inside a step.
    func twoRunsOfFourMicroBatchesPerStep() throws -> (String, String) {
        let stage = "resolution: 16x16, grad_accum: 4"
        return (try makeRun("straight", steps: 4, batch: 8, checkpointEvery: 100, stage: stage),
                try makeRun("stopped", steps: 4, batch: 8, checkpointEvery: 100, stage: stage))
    }

    /// Rank 0's heartbeat once it reports step ≥ `step` (polled every 2 ms, up to 60 s).
    func heartbeat(_ run: String, atLeast step: Int) -> [String: Any]? {
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            if let d = FileManager.default.contents(atPath: run + "/heartbeat.json"),
               let hb = try? JSONSerialization.jsonObject(with: d) as? [String: Any], (hb["step"] as? Int ?? 0) >= step { return hb }
            usleep(2_000)
        }
        return nil
    }

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
            try RunDirectory(r).acceptConfigEdit() // as `leffa-coord config --accept-edit`
        }
        let job1 = try Binaries.run("leffa-worker", ["--run", a, "--fixed-order", "--threads", "1"])
        XCTAssertEqual(job1.status, 0, job1.stderr)
        let job2 = try Binaries.run("leffa-worker", ["--run", b, "--fixed-order", "--threads", "2"])
        XCTAssertEqual(job2.status, 0, job2.stderr)
        let job3 = try Binaries.mpirun(2, "leffa-worker", ["--run", c, "--fixed-order", "--threads", "1"])
        XCTAssertEqual(job3.status, 0, job3.stderr)
        XCTAssertEqual(try weights(a), try weights(b), "1 rank × 1 thread and 1 rank × 2 threads differ")
        XCTAssertEqual(try weights(a), try weights(c), "1 rank × 1 thread and 2 ranks × 1 thread differ")
    }

    /// Slurm's warning before the time limit (SIGUSR1), sent to rank 0 only while step 3 runs its
    /// micro-batches: both ranks agree to stop at the next micro-batch boundary, drop the partial
    /// step, keep a checkpoint of step 2 and exit 0; resuming ends bit-identical to a run that was
    /// never stopped.
    func testSignalMidStepCheckpointsAndResumesExactly() throws {
        try synth()
        let (straight, stopped) = try twoRunsOfFourMicroBatchesPerStep()
        let job0 = try Binaries.mpirun(2, "leffa-worker", ["--run", straight])
        XCTAssertEqual(job0.status, 0, job0.stderr)
        var signalled = false
        let job1 = try Binaries.mpirun(2, "leffa-worker", ["--run", stopped],
                                       environment: ["SLURM_JOB_ID": "4242"]) { _ in
            guard let hb = self.heartbeat(stopped, atLeast: 2), let pid = hb["pid"] as? Int else { return }
            // Where rank 0 runs, for a login node to read.
            XCTAssertEqual(hb["job_id"] as? String, "4242")
            XCTAssertNotNil(hb["host"] as? String)
            kill(pid_t(pid), SIGUSR1); signalled = true
        }
        XCTAssertTrue(signalled, "no heartbeat at step 2")
        XCTAssertEqual(job1.status, 0, job1.stderr)
        XCTAssertTrue(job1.stderr.contains("stop requested during step 3 of stage only, after micro-batch"),
                      job1.stderr)
        let ckpts = try FileManager.default.contentsOfDirectory(atPath: stopped + "/stages/only/checkpoints").filter { $0.hasSuffix(".h5") }
        XCTAssertEqual(ckpts, ["step-00000002.h5"], "the partial step 3 is dropped; the state after step 2 is saved")
        XCTAssertFalse(FileManager.default.fileExists(atPath: stopped + "/stages/only/final.safetensors"))
        let job2 = try Binaries.mpirun(2, "leffa-worker", ["--run", stopped])
        XCTAssertEqual(job2.status, 0, job2.stderr)
        XCTAssertTrue(job2.stderr.contains("resuming stage only at step 2"), job2.stderr)
        XCTAssertEqual(try weights(straight), try weights(stopped), "stopped mid-step and resumed differs from a run never stopped")
    }

    /// training.checkpoint_every_minutes: a checkpoint whenever that much time passed since the
    /// last one, besides checkpoint_every (here never due).
    func testTimeBasedCheckpoints() throws {
        try synth()
        let r = try makeRun("minutes", steps: 3, extra: ", checkpoint_every_minutes: 0.00001, keep_checkpoints: 10", checkpointEvery: 1000)
        let plain = try makeRun("plain", steps: 3, extra: ", keep_checkpoints: 10", checkpointEvery: 1000)
        for x in [r, plain] {
            let job = try Binaries.run("leffa-worker", ["--run", x])
            XCTAssertEqual(job.status, 0, job.stderr)
        }
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
        let job = try Binaries.run("leffa-worker", ["--run", r])
        XCTAssertEqual(job.status, 1, job.stderr)
        XCTAssertTrue(job.stderr.contains("worker.lock: a worker")
                      && job.stderr.contains("is already working on this run"), job.stderr)
        XCTAssertTrue(try FileManager.default.contentsOfDirectory(atPath: r + "/stages/only/checkpoints").isEmpty)
    }

    /// `leffa-coord run` receiving SIGUSR1 (Slurm's `--signal=B:USR1@…` via Cluster/slurm.sbatch):
    /// the workers stop at a micro-batch boundary with a checkpoint, the command exits 138 (128 +
    /// SIGUSR1, so the batch script requeues), and the requeued run ends bit-identical.
    func testCoordinatorPassesSIGUSR1OnAndTheRequeuedRunEndsExactly() throws {
        try synth()
        let (straight, stopped) = try twoRunsOfFourMicroBatchesPerStep()
        let job0 = try Binaries.run("leffa-coord", ["run", "--run", straight])
        XCTAssertEqual(job0.status, 0, job0.stderr)
        var signalled = false
        let job1 = try Binaries.run("leffa-coord", ["run", "--run", stopped]) { p in
            if self.heartbeat(stopped, atLeast: 2) != nil { kill(p.processIdentifier, SIGUSR1); signalled = true }
        }
        XCTAssertTrue(signalled)
        XCTAssertEqual(job1.status, 138, job1.stderr)
        XCTAssertTrue(job1.stderr.contains("SIGUSR1 to process group"), job1.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: stopped + "/stages/only/final.safetensors"))
        let job2 = try Binaries.run("leffa-coord", ["run", "--run", stopped])
        XCTAssertEqual(job2.status, 0, job2.stderr)
        XCTAssertEqual(try weights(straight), try weights(stopped), "preempted and requeued differs from a run never stopped")
    }

    /// Elastic shrink: rank 1 dies at every launch (its host is gone). With --elastic the
    /// coordinator retries once at 2 ranks, then relaunches with 1, says so in the log and the
    /// history, and finishes; with --fixed-order the weights are those of a 1-rank run.
    func testElasticRunFinishesWithFewerRanksWhenARankKeepsDying() throws {
        try synth()
        let ref = try makeRun("ref", steps: 3, batch: 4), el = try makeRun("elastic", steps: 3, batch: 4)
        let job0 = try Binaries.run("leffa-worker", ["--run", ref, "--fixed-order"])
        XCTAssertEqual(job0.status, 0, job0.stderr)
        final class Flag: @unchecked Sendable { var stop = false, kills = 0 }
        let flag = Flag()
        let killer = Thread {
            while !flag.stop {
                for pid in (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.compactMap({ Int32($0) }) ?? [] {
                    guard let cmd = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"),
                          String(decoding: cmd, as: UTF8.self).contains("leffa-worker\0--run\0\(el)"),
                          let env = FileManager.default.contents(atPath: "/proc/\(pid)/environ"),
                          String(decoding: env, as: UTF8.self).split(separator: "\0").contains("OMPI_COMM_WORLD_RANK=1") else { continue }
                    if kill(pid, SIGKILL) == 0 { flag.kills += 1 }
                }
                usleep(20_000)
            }
        }
        killer.start()
        let job = try Binaries.run("leffa-coord", ["run", "--run", el, "--np", "2", "--elastic", "--backoff", "0.1", "--retries", "3",
                                                   "--worker-arg", "--fixed-order"], timeout: 300)
        flag.stop = true
        XCTAssertEqual(job.status, 0, job.stderr)
        XCTAssertGreaterThanOrEqual(flag.kills, 2, "rank 1 was not killed at both 2-rank launches")
        XCTAssertTrue(job.stderr.contains("elastic: relaunching with 1 rank(s) instead of 2"), job.stderr)
        let state = try String(contentsOfFile: el + "/state.json", encoding: .utf8)
        XCTAssertTrue(state.contains("elastic: relaunching with 1 rank(s) instead of 2"), state)
        XCTAssertEqual(try weights(ref), try weights(el), "the elastic run's weights differ from a 1-rank run")
    }

    /// Cluster/slurm.sbatch as Slurm runs it (one task, a stand-in `scontrol`): SIGUSR1 to the
    /// batch script (`--signal=B:USR1@300`) ends in a checkpoint and `scontrol requeue JOB`.
    func testSlurmScriptCheckpointsAndRequeuesOnUSR1() throws {
        try synth()
        let r = try makeRun("slurm", steps: 6, batch: 8, checkpointEvery: 100, stage: "resolution: 16x16, grad_accum: 4")
        let fake = dir.appendingPathComponent("bin")
        try FileManager.default.createDirectory(at: fake, withIntermediateDirectories: true)
        let scontrol = fake.appendingPathComponent("scontrol").path
        try "#!/bin/sh\necho \"$@\" >> \(dir.path)/scontrol-calls\n".write(toFile: scontrol, atomically: true, encoding: .utf8)
        chmod(scontrol, 0o755)
        let env = ["LEFFA_BIN": try Binaries.folder().path, "SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1", "SLURM_CPUS_PER_TASK": "1", "SLURM_NNODES": "1",
                   "SLURM_JOB_ID": "31337", "PATH": fake.path + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")]
        let script = Fixtures.packageRoot.appendingPathComponent("Cluster/slurm.sbatch").path
        var signalled = false
        let job = try Binaries.run("/bin/bash", [script, r], environment: env) { p in
            guard let hb = self.heartbeat(r, atLeast: 2) else { return }
            XCTAssertEqual(hb["job_id"] as? String, "31337")
            kill(p.processIdentifier, SIGUSR1); signalled = true
        }
        XCTAssertTrue(signalled)
        XCTAssertEqual(job.status, 138, job.stderr)
        XCTAssertEqual(try String(contentsOfFile: dir.path + "/scontrol-calls", encoding: .utf8), "requeue 31337\n")
        let ckpts = try FileManager.default.contentsOfDirectory(atPath: r + "/stages/only/checkpoints").filter { $0.hasSuffix(".h5") }
        XCTAssertEqual(ckpts.count, 1, "\(ckpts)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: r + "/stages/only/final.safetensors"))
    }
}
