// The node's one copy of the training state (weights, Adam moments and EMA shared by the node's
// ranks, each updating its shard), end to end: checkpoints stay whole and hold one rank's tensors
// bit for bit, with either reduction and across (simulated) nodes, and resuming at another rank
// count stays exact.
import XCTest
import Foundation
import LeffaCheckpoint
import LeffaRunFormat
import TestSupport

extension WorkerMPITests {
    /// The tensors of a run's checkpoint at `step` (weights, moments, EMA) as bit patterns, keyed
    /// by group and name.
    func checkpointTensors(_ runDir: String, step: Int) throws -> [String: [UInt32]] {
        let url = URL(fileURLWithPath: runDir + "/stages/only/checkpoints/" + CheckpointDirectory.fileName(step: step))
        let reader = try CheckpointReader(url: url)
        defer { reader.close() }
        var out: [String: [UInt32]] = [:]
        for g in [CheckpointNames.params, CheckpointNames.adamM, CheckpointNames.adamV, CheckpointNames.ema] {
            for (name, t) in try reader.readGroup(g) { out[g + "/" + name] = t.scalars.map(\.bitPattern) }
        }
        return out
    }

    /// Asserts that two checkpoints hold the same tensors, naming the first that differs.
    func assertSameTensors(_ a: [String: [UInt32]], _ b: [String: [UInt32]], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(Set(a.keys), Set(b.keys), what, file: file, line: line)
        XCTAssertTrue(a.keys.contains { $0.hasPrefix(CheckpointNames.ema + "/") }, "no EMA in the checkpoint", file: file, line: line)
        if let k = a.keys.sorted().first(where: { a[$0] != b[$0] }) { XCTFail("\(what): \(k) differs", file: file, line: line) }
    }

    /// With the fixed order, clipping on every step, weight decay and EMA: 2 ranks with
    /// shared-memory gradients, 2 ranks with MPI buckets (both sharing one copy of the state) and
    /// 4 ranks as 2 nodes of 2 (buckets across nodes, a copy per node) write checkpoints whose
    /// weights, moments and EMA are one rank's, bit for bit.
    func testSharedStateCheckpointsAreOneRanksBitForBit() throws {
        try synth()
        let extra = ", grad_clip: 0.05, optimizer: {weight_decay: 0.01}"
        let runs = try ["one", "shared", "buckets", "nodes"].map { try makeRun($0, steps: 3, batch: 4, extra: extra) }
        let job1 = try Binaries.run("leffa-worker", ["--run", runs[0], "--fixed-order"])
        XCTAssertEqual(job1.status, 0, job1.stderr)
        let launches: [(run: String, ranks: Int, args: [String], env: [String: String], says: String)] = [
            (runs[1], 2, [], [:], "gradients averaged in shared memory"),
            (runs[2], 2, ["--reduction", "buckets"], [:], "overlapped MPI buckets"),
            (runs[3], 4, [], ["LEFFA_RANKS_PER_NODE": "2"], "the 4 ranks span several nodes"),
        ]
        for l in launches {
            let job = try Binaries.mpirun(l.ranks, "leffa-worker", ["--run", l.run, "--fixed-order"] + l.args,
                                          environment: l.env)
            XCTAssertEqual(job.status, 0, job.stderr)
            XCTAssertTrue(job.stderr.contains(l.says)
                          && job.stderr.contains("one copy per node of the weights, Adam moments and EMA (4 × ")
                          && job.stderr.contains("the optimizer step sharded over its 2 ranks"), job.stderr)
            for step in [2, 3] {
                assertSameTensors(try checkpointTensors(runs[0], step: step), try checkpointTensors(l.run, step: step), "\(l.run) at step \(step)")
            }
        }
    }

    /// Resuming from a whole checkpoint at other rank counts: 1 rank to step 2, then 2 ranks sharing
    /// the state (node rank 0 loads it for both) to step 3, then 4 ranks as 2 nodes of 2 (ranks 0
    /// and 2 each load their node's copy) to the end: weights, EMA and the last checkpoint are
    /// those of 1 rank all the way.
    func testSharedStateResumesAtAnotherRankCountExactly() throws {
        try synth()
        let extra = ", grad_clip: 0.05"
        let straight = try makeRun("straight", steps: 4, batch: 4, extra: extra), mixed = try makeRun("mixed", steps: 4, batch: 4, extra: extra)
        let job0 = try Binaries.run("leffa-worker", ["--run", straight, "--fixed-order"])
        XCTAssertEqual(job0.status, 0, job0.stderr)
        let job1 = try Binaries.run("leffa-worker", ["--run", mixed, "--fixed-order", "--until-step", "2"])
        XCTAssertEqual(job1.status, 0, job1.stderr)
        let job2 = try Binaries.mpirun(2, "leffa-worker", ["--run", mixed, "--fixed-order", "--until-step", "3"])
        XCTAssertEqual(job2.status, 0, job2.stderr)
        XCTAssertTrue(job2.stderr.contains("resuming stage only at step 2")
                      && job2.stderr.contains("sharded over its 2 ranks"), job2.stderr)
        let job3 = try Binaries.mpirun(4, "leffa-worker", ["--run", mixed, "--fixed-order"],
                                       environment: ["LEFFA_RANKS_PER_NODE": "2"])
        XCTAssertEqual(job3.status, 0, job3.stderr)
        XCTAssertTrue(job3.stderr.contains("resuming stage only at step 3")
                      && job3.stderr.contains("sharded over its 2 ranks"), job3.stderr)
        XCTAssertEqual(try weights(straight), try weights(mixed), "1, 2 then 4 ranks differ from 1 rank throughout")
        let ema = { (r: String) in try Data(contentsOf: URL(fileURLWithPath: r + "/stages/only/final-ema.safetensors")) }
        XCTAssertEqual(try ema(straight), try ema(mixed), "EMA weights differ")
        assertSameTensors(try checkpointTensors(straight, step: 4), try checkpointTensors(mixed, step: 4), "the last checkpoint")
    }
}
