// leffa-worker under mpirun, end to end: two ranks with global batch 2 end with the same weights as
// one rank with global batch 2 (bit for bit with --fixed-order, within float tolerance without), and
// killing one rank ends the whole job, non-zero, within 30 s.
import XCTest
import Foundation
import TestSupport
import LeffaTensor

final class WorkerMPITests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("leffa-worker-mpi-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func makeRun(_ name: String, steps: Int, ema: Bool = true, validation: Bool = false, batch: Int = 2, extra: String = "",
                 checkpointEvery: Int = 2, stage: String = "resolution: 16x16", data: String = "") throws -> String {
        let cfg = dir.appendingPathComponent("\(name).yaml")
        try """
        run: {name: \(name), seed: 5}
        model: {preset: tiny}
        data: {kind: synthetic, root: \(dir.appendingPathComponent("data").path), space: pixel\(data)}
        training: {checkpoint_every: \(checkpointEvery), reference_dropout: 0.5\(ema ? ", ema_decay: 0.9" : "")\(validation ? ", validation: {every: 2, count: 3, steps: 2}" : "")\(extra)}
        stages:
          - {name: only, \(stage), steps: \(steps), batch: \(batch), lr: 1.0e-3}
        """.write(to: cfg, atomically: true, encoding: .utf8)
        let runDir = dir.appendingPathComponent(name).path
        let job = try Binaries.run("leffa-coord", ["init", "--config", cfg.path, "--run", runDir])
        XCTAssertEqual(job.status, 0, job.stderr)
        return runDir
    }

    func synth() throws {
        let data = dir.appendingPathComponent("data").path
        let job = try Binaries.run("leffa-coord", ["synth", "--out", data, "--count", "6", "--size", "16x16"])
        XCTAssertEqual(job.status, 0, job.stderr)
    }

    func weights(_ runDir: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: runDir + "/stages/only/final.safetensors")) }

    /// A safetensors file's data as floats (past its 8-byte length and JSON header): for comparing
    /// two runs' weights within a tolerance.
    func floats(_ file: Data) -> [Float] {
        let n = file.withUnsafeBytes { Int($0.load(as: UInt64.self)) } + 8
        return file.dropFirst(n).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    /// Validation samples too: 3 pairs shared out over 2 ranks (0 and 2 on rank 0, 1 on rank 1),
    /// gathered on rank 0, give the same PNG bytes as 1 rank sampling all three.
    func testTwoRanksMatchOneRankBitForBitWithFixedOrder() throws {
        try synth()
        let one = try makeRun("one", steps: 3, validation: true), two = try makeRun("two", steps: 3, validation: true)
        let job1 = try Binaries.run("leffa-worker", ["--run", one, "--fixed-order"])
        XCTAssertEqual(job1.status, 0, job1.stderr)
        let job2 = try Binaries.mpirun(2, "leffa-worker", ["--run", two, "--fixed-order"])
        XCTAssertEqual(job2.status, 0, job2.stderr)
        XCTAssertTrue(job2.stderr.contains("2 ranks")
                      && job2.stderr.contains("gradients averaged in shared memory"), job2.stderr)
        XCTAssertEqual(try weights(one), try weights(two), "2 ranks (fixed order, shared memory) differ from 1 rank")
        let samples = { (run: String) -> [String: Data] in
            let root = URL(fileURLWithPath: run + "/stages/only/samples")
            var out: [String: Data] = [:]
            for step in ["step-00000002", "step-00000003"] {
                for f in (try? FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent(step).path)) ?? [] {
                    out[step + "/" + f] = FileManager.default.contents(atPath: root.appendingPathComponent(step + "/" + f).path)
                }
            }
            return out
        }
        let fromOne = samples(one)
        XCTAssertEqual(fromOne.count, 6, "\(fromOne.keys.sorted())")
        XCTAssertEqual(fromOne, samples(two), "validation samples of 2 ranks differ from 1 rank")
    }

    /// Several samples per rank: 1, 2 and 4 ranks with global batch 4 (and grad clipping, weight
    /// decay) end bit-identical with --fixed-order: the fold runs in global sample order.
    func testFixedOrderIsBitIdenticalForAnyRankCountDividingTheBatch() throws {
        try synth()
        let extra = ", grad_clip: 0.5, optimizer: {weight_decay: 0.01}"
        let runs = try [1, 2, 4].map { try makeRun("n\($0)", steps: 3, batch: 4, extra: extra) }
        let job1 = try Binaries.run("leffa-worker", ["--run", runs[0], "--fixed-order", "--threads", "2"])
        XCTAssertEqual(job1.status, 0, job1.stderr)
        // Both reductions: 2 ranks through overlapped MPI buckets, 4 through shared memory.
        for (n, r) in zip([2, 4], runs.dropFirst()) {
            let how = n == 2 ? "buckets" : "shared"
            let job = try Binaries.mpirun(n, "leffa-worker", ["--run", r, "--fixed-order", "--reduction", how])
            XCTAssertEqual(job.status, 0, job.stderr)
            XCTAssertTrue(job.stderr.contains(n == 2 ? "MPI buckets" : "shared memory"), job.stderr)
            XCTAssertEqual(try weights(runs[0]), try weights(r), "\(n) ranks × 2 samples (fixed order, \(how)) differ from 1 rank × 4")
        }
    }

    /// Augmentation (flip, move, colour jitter) is drawn per (seed, step, sample): 2 ranks with
    /// --fixed-order end with 1 rank's weights bit for bit, and augmentation changed them.
    func testAugmentationIsTheSameOnOneAndTwoRanks() throws {
        try synth()
        let aug = ", augment: {hflip: 0.5, scale: 0.1, shift: 0.1, color_jitter: {brightness: 0.2, contrast: 0.2, saturation: 0.2, hue: 0.05}}"
        let one = try makeRun("a1", steps: 3, batch: 4, data: aug), two = try makeRun("a2", steps: 3, batch: 4, data: aug)
        let plain = try makeRun("a0", steps: 3, batch: 4)
        for r in [one, plain] {
            let job = try Binaries.run("leffa-worker", ["--run", r, "--fixed-order"])
            XCTAssertEqual(job.status, 0, job.stderr)
        }
        let job2 = try Binaries.mpirun(2, "leffa-worker", ["--run", two, "--fixed-order"])
        XCTAssertEqual(job2.status, 0, job2.stderr)
        XCTAssertEqual(try weights(one), try weights(two), "2 ranks with augmentation differ from 1 rank")
        XCTAssertNotEqual(try weights(one), try weights(plain), "augmentation changed nothing")
    }

    /// Only the generative UNet trains: the reducer covers just its range of the gradient block,
    /// and 2 ranks still match 1 rank bit for bit.
    func testFrozenReferenceUNetTwoRanksMatchOneRank() throws {
        try synth()
        let one = try makeRun("f1", steps: 2, extra: ", train: [unet]"), two = try makeRun("f2", steps: 2, extra: ", train: [unet]")
        XCTAssertEqual(try Binaries.run("leffa-worker", ["--run", one, "--fixed-order"]).status, 0)
        let job = try Binaries.mpirun(2, "leffa-worker", ["--run", two, "--fixed-order"])
        XCTAssertEqual(job.status, 0, job.stderr)
        XCTAssertEqual(try weights(one), try weights(two))
    }

    /// training.activation_checkpointing with the overlapped MPI buckets: each parameter's
    /// gradient-ready hook fires once, after its block's recomputed backward (a hook fired early
    /// would reduce a partial gradient, twice would stop the reducer), so 2 ranks with
    /// checkpointing end with the same weights as without, Leffa loss on and both UNets training.
    func testActivationCheckpointingWithBucketsMatchesWithout() throws {
        try synth()
        let stage = "resolution: 16x16, leffa: {weight: 1.0, timestep_threshold: 1000, min_resolution_fraction: 0.0}"
        let runs = try [false, true].map { try makeRun("ckpt-\($0)", steps: 2, extra: ", activation_checkpointing: \($0)", stage: stage) }
        for r in runs {
            // Small buckets: each is reduced as soon as its own parameters are ready.
            let job = try Binaries.mpirun(2, "leffa-worker", ["--run", r, "--reduction", "buckets"],
                                          environment: ["LEFFA_BUCKET_MB": "0.05"])
            XCTAssertEqual(job.status, 0, job.stderr)
            XCTAssertTrue(job.stderr.contains("overlapped MPI buckets"), job.stderr)
        }
        XCTAssertEqual(try weights(runs[0]), try weights(runs[1]), "2 ranks with activation checkpointing differ from without")
    }

    /// Validation of one pair on 2 ranks: rank 1 has nothing to sample and waits for rank 0 far
    /// longer than the watchdog's limit (1 s here, ~2.5 s of sampling): the wait is deliberate, so
    /// the job goes on (before, the watchdog aborted it with exit code 3).
    func testRanksWaitForLongValidationWithoutTheWatchdog() throws {
        try synth()
        let r = try makeRun("patient", steps: 2, ema: false, extra: ", validation: {every: 2, count: 1, steps: 60}")
        let job = try Binaries.mpirun(2, "leffa-worker", ["--run", r], environment: ["LEFFA_MPI_TIMEOUT": "1"])
        XCTAssertEqual(job.status, 0, job.stderr)
        XCTAssertTrue(job.stderr.contains("validation at step 2: 1 samples"), job.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: r + "/stages/only/final.safetensors"))
    }

    /// The default on one node (shared memory, the optimizer step sharded over the ranks, with
    /// gradient clipping) and the overlapped MPI buckets both end close to one rank; the sharded
    /// run is also exactly reproducible.
    func testTwoRanksMatchOneRankWithinToleranceByDefault() throws {
        try synth()
        let extra = ", grad_clip: 0.05"   // small enough to clip every step
        let one = try makeRun("one", steps: 3, extra: extra)
        let runs = try ["shared", "again", "buckets"].map { try makeRun($0, steps: 3, extra: extra) }
        XCTAssertEqual(try Binaries.run("leffa-worker", ["--run", one]).status, 0)
        for (r, args) in zip(runs, [[], [], ["--reduction", "buckets"]]) {
            let job = try Binaries.mpirun(2, "leffa-worker", ["--run", r] + args)
            XCTAssertEqual(job.status, 0, job.stderr)
            XCTAssertTrue(job.stderr.contains(args.isEmpty ? "optimizer step sharded" : "overlapped MPI buckets"),
                          job.stderr)
        }
        let a = try weights(one)
        for r in [runs[0], runs[2]] {
            let b = try weights(r)
            XCTAssertEqual(a.count, b.count)
            // Same header, float data close. AdamW divides by √v: where a gradient is near zero, a
            // summation-order difference can move an update by a fraction of lr (1e-3), so weights
            // are compared to lr/10.
            XCTAssertLessThanOrEqual(worstError(floats(a), floats(b), Tolerance(rtol: 1e-3, atol: 1e-4, why: "summation order over ranks, AdamW (\(r))")).ratio, 1)
            XCTAssertNotEqual(a, b, "without --fixed-order the sums are expected to associate differently")
        }
        XCTAssertEqual(try weights(runs[0]), try weights(runs[1]), "two sharded 2-rank runs differ")
    }

    /// Without the fixed order, with clipping on every step: 2 ranks sharing one copy of the state
    /// (shared-memory gradients, each rank updating its shard; the norm's chunk sums added over
    /// the shards) end bit-identical to 2 ranks each holding and updating the whole state (MPI
    /// buckets, one rank per simulated node: a + b is the same float either way), EMA included.
    func testShardedStepMatchesBucketsBitForBit() throws {
        try synth()
        let extra = ", grad_clip: 0.05, optimizer: {weight_decay: 0.01}"
        let runs = try ["sharded", "whole"].map { try makeRun($0, steps: 4, extra: extra) }
        let job1 = try Binaries.mpirun(2, "leffa-worker", ["--run", runs[0], "--reduction", "shared"])
        XCTAssertEqual(job1.status, 0, job1.stderr)
        XCTAssertTrue(job1.stderr.contains("the optimizer step sharded over its 2 ranks"), job1.stderr)
        let job2 = try Binaries.mpirun(2, "leffa-worker", ["--run", runs[1], "--reduction", "buckets"],
                                       environment: ["LEFFA_RANKS_PER_NODE": "1"])
        XCTAssertEqual(job2.status, 0, job2.stderr)
        XCTAssertTrue(job2.stderr.contains("every rank holds the whole training state (not shared: every node runs one rank)"),
                      job2.stderr)
        XCTAssertEqual(try weights(runs[0]), try weights(runs[1]), "sharded and whole optimizer steps differ")
        let ema = { (r: String) in try Data(contentsOf: URL(fileURLWithPath: r + "/stages/only/final-ema.safetensors")) }
        XCTAssertEqual(try ema(runs[0]), try ema(runs[1]), "EMA weights differ")
    }

    /// Stop a 2-rank run at step 2 and resume it with 1 rank: the sample order, noise and timesteps
    /// are keyed by step and global position, so it ends bit-identical to 1 rank all the way.
    func testResumingWithADifferentRankCountContinuesTheSameRun() throws {
        try synth()
        let straight = try makeRun("straight", steps: 4), mixed = try makeRun("mixed", steps: 4)
        let job1 = try Binaries.run("leffa-worker", ["--run", straight, "--fixed-order"])
        XCTAssertEqual(job1.status, 0, job1.stderr)
        let job2 = try Binaries.mpirun(2, "leffa-worker", ["--run", mixed, "--fixed-order", "--until-step", "2"])
        XCTAssertEqual(job2.status, 0, job2.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: mixed + "/stages/only/final.safetensors"), "stopped at step 2 of 4")
        let job3 = try Binaries.run("leffa-worker", ["--run", mixed, "--fixed-order"])
        XCTAssertEqual(job3.status, 0, job3.stderr)
        XCTAssertTrue(job3.stderr.contains("resuming stage only at step 2"), job3.stderr)
        XCTAssertEqual(try weights(straight), try weights(mixed), "2 ranks then 1 rank differ from 1 rank throughout")
    }

    /// A corrupted newest checkpoint under 2 ranks: rank 0 alone moves it aside (once), both ranks
    /// resume from the previous one, and the run ends bit-identical to an undisturbed one.
    func testTwoRanksSkipACorruptedCheckpointTogether() throws {
        try synth()
        let clean = try makeRun("clean", steps: 6), hurt = try makeRun("hurt", steps: 6)
        XCTAssertEqual(try Binaries.mpirun(2, "leffa-worker", ["--run", clean, "--fixed-order"]).status, 0)
        let job1 = try Binaries.mpirun(2, "leffa-worker", ["--run", hurt, "--fixed-order", "--until-step", "4"])
        XCTAssertEqual(job1.status, 0, job1.stderr)
        let ckpts = URL(fileURLWithPath: hurt + "/stages/only/checkpoints")
        let newest = ckpts.appendingPathComponent("step-00000004.h5")
        let h = try FileHandle(forUpdating: newest)
        try h.seek(toOffset: try h.seekToEnd() / 2)
        h.write(Data(repeating: 0xA5, count: 4096))
        try h.close()
        let job2 = try Binaries.mpirun(2, "leffa-worker", ["--run", hurt, "--fixed-order"])
        XCTAssertEqual(job2.status, 0, job2.stderr)
        XCTAssertTrue(job2.stderr.contains("resuming stage only at step 2"), job2.stderr)
        let names = try FileManager.default.contentsOfDirectory(atPath: ckpts.path)
        XCTAssertEqual(names.filter { $0.contains(".corrupt") }, ["step-00000004.h5.corrupt"], "\(names)")
        XCTAssertEqual(try weights(clean), try weights(hurt))
    }

    /// A bad --reduction is an error naming the choices; any case is accepted, as in
    /// LEFFA_REDUCTION (one parser); asking for shared memory with one rank is fine (there is
    /// nothing to share).
    func testReductionOptionIsChecked() throws {
        try synth()
        let r = try makeRun("bad", steps: 1)
        let job = try Binaries.run("leffa-worker", ["--run", r, "--reduction", "nccl"])
        // A usage error (exit 2, not ArgumentParser's 64) that lists the valid values.
        XCTAssertEqual(job.status, 2, job.stderr)
        XCTAssertTrue(job.stderr.contains("'nccl' is invalid for '--reduction") && job.stderr.contains("'auto', 'shared' or 'buckets'"),
                      job.stderr)
        let job1 = try Binaries.mpirun(1, "leffa-worker", ["--run", r, "--reduction", "Shared"])
        XCTAssertEqual(job1.status, 0, job1.stderr)
    }

    /// Across nodes (2 nodes of 2 ranks, simulated): auto picks MPI buckets and says why; asked
    /// for, shared memory works hierarchically with the sharded step and ends close to 1 rank;
    /// the fixed order across nodes needs buckets.
    func testSharedMemoryAcrossNodes() throws {
        try synth()
        let extra = ", grad_clip: 0.05"
        let one = try makeRun("one", steps: 3, batch: 4, extra: extra)
        let auto = try makeRun("auto", steps: 2, batch: 4), hier = try makeRun("hier", steps: 3, batch: 4, extra: extra)
        let fixed = try makeRun("fixed", steps: 1, batch: 4)
        let nodes = ["LEFFA_RANKS_PER_NODE": "2"]
        XCTAssertEqual(try Binaries.run("leffa-worker", ["--run", one]).status, 0)
        let job = try Binaries.mpirun(4, "leffa-worker", ["--run", auto], environment: nodes)
        XCTAssertEqual(job.status, 0, job.stderr)
        XCTAssertTrue(job.stderr.contains("overlapped MPI buckets (not shared memory: the 4 ranks span several nodes"),
                      job.stderr)
        let job2 = try Binaries.mpirun(4, "leffa-worker", ["--run", hier, "--reduction", "shared"], environment: nodes)
        XCTAssertEqual(job2.status, 0, job2.stderr)
        XCTAssertTrue(job2.stderr.contains("shared memory (2 nodes of 2 ranks, then MPI across nodes")
                      && job2.stderr.contains("optimizer step sharded"), job2.stderr)
        XCTAssertLessThanOrEqual(worstError(floats(try weights(one)), floats(try weights(hier)), Tolerance(rtol: 1e-3, atol: 1e-4, why: "hierarchical sum order, AdamW")).ratio, 1)
        let job3 = try Binaries.mpirun(4, "leffa-worker", ["--run", fixed, "--reduction", "shared", "--fixed-order"],
                                       environment: nodes)
        XCTAssertNotEqual(job3.status, 0, job3.stderr)
        XCTAssertTrue(job3.stderr.contains("across nodes, the fixed order needs buckets"), job3.stderr)
    }

    /// Without room for the shared-memory window (here: a backing directory that does not exist),
    /// auto falls back to MPI buckets and says why; asking for shared memory is a clear error.
    func testNoRoomForSharedMemoryFallsBackToBuckets() throws {
        try synth()
        let r = try makeRun("noshm", steps: 2), r2 = try makeRun("noshm2", steps: 2)
        let env = ["OMPI_MCA_osc_sm_backing_directory": "/nonexistent-leffa-shm"]
        let job = try Binaries.mpirun(2, "leffa-worker", ["--run", r], environment: env)
        XCTAssertEqual(job.status, 0, job.stderr)
        XCTAssertTrue(job.stderr.contains("overlapped MPI buckets (not shared memory: cannot read the free space of /nonexistent-leffa-shm"),
                      job.stderr)
        let job2 = try Binaries.mpirun(2, "leffa-worker", ["--run", r2, "--reduction", "shared"], environment: env)
        XCTAssertNotEqual(job2.status, 0, job2.stderr)
        XCTAssertTrue(job2.stderr.contains("reduction=\"shared\": expected ranks that can share memory, but cannot read the free space of /nonexistent-leffa-shm"),
                      job2.stderr)
    }

    /// mpirun -np 1 binds the rank to one core: the worker uses one thread there and says how to
    /// get the rest; unbound, it uses the node's cores.
    func testThreadsFollowMpirunsBinding() throws {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        guard cores >= 2 else { throw XCTSkip("needs 2 cores to see a binding") }
        // Where the launcher cannot bind (no hwloc support in a container), there is nothing to see.
        let status = try Binaries.mpirun(1, "grep", ["Cpus_allowed_list", "/proc/self/status"],
                                         launcher: ["--bind-to", "core"]).stdout
        guard Parallel.allowedCPUs(status: status) == 1 else { throw XCTSkip("mpirun --bind-to core does not bind here: \(status)") }
        try synth()
        let r = try makeRun("bound", steps: 1)
        let job = try Binaries.mpirun(1, "leffa-worker", ["--run", r],
                                      launcher: ["--bind-to", "core"], environment: ["LEFFA_THREADS": ""])
        XCTAssertEqual(job.status, 0, job.stderr)
        XCTAssertTrue(job.stderr.contains("1 ranks, 1 kernel thread(s) each")
                      && job.stderr.contains("may run on only 1 CPU(s)"), job.stderr)
        let r2 = try makeRun("unbound", steps: 1)
        let job2 = try Binaries.mpirun(1, "leffa-worker", ["--run", r2],
                                       launcher: ["--bind-to", "none"], environment: ["LEFFA_THREADS": ""])
        XCTAssertEqual(job2.status, 0, job2.stderr)
        XCTAssertTrue(job2.stderr.contains("1 ranks, \(cores) kernel thread(s) each")
                      && !job2.stderr.contains("may run on only"), job2.stderr)
    }

    func testKillingOneRankEndsTheJobWithin30Seconds() throws {
        try synth()
        let r = try makeRun("kill", steps: 10_000)
        var killedAt: Date? = nil
        let job = try Binaries.mpirun(2, "leffa-worker", ["--run", r], timeout: 90) { _ in
            // Wait until training runs (a heartbeat exists), then SIGKILL one worker rank.
            let hb = r + "/heartbeat.json"
            let start = Date()
            while !FileManager.default.fileExists(atPath: hb) && Date().timeIntervalSince(start) < 60 { usleep(100_000) }
            let found = (try? Binaries.run("/usr/bin/pgrep", ["-f", "leffa-worker --run \(r)"]))?.stdout ?? ""
            let pids = found.split(separator: "\n").compactMap { Int32($0) }
            if let victim = pids.last { kill(victim, SIGKILL); killedAt = Date() }
        }
        XCTAssertNotNil(killedAt, "no worker process found to kill")
        XCTAssertNotEqual(job.status, 0, job.stderr)
        if let k = killedAt { XCTAssertLessThan(Date().timeIntervalSince(k), 30, "the job outlived a killed rank by 30 s") }
    }
}
