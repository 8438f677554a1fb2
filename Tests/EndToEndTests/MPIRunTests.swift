// Launches the built `leffa-mpi-check` (Tests/leffa-mpi-check) under `mpirun --oversubscribe -np N`
// (2 or 3 ranks on any machine) and checks exit codes and messages. Every launch has a deadline and
// is killed after it, so the suite never hangs. mpirun must be on PATH (CI installs openmpi-bin).
import XCTest
import Foundation

final class MPIRunTests: XCTestCase {
    /// Runs the driver under mpirun with `np` ranks, or directly when `np` is nil.
    func mpirun(_ args: [String], np: Int? = 2, env: [String: String] = [:], timeout: Double = 60,
                file: StaticString = #filePath, line: UInt = #line) throws -> Ran {
        guard let np else { return try Binaries.run("leffa-mpi-check", args, environment: env, timeout: timeout, file: file, line: line) }
        return try Binaries.mpirun(np, "leffa-mpi-check", args, environment: env, timeout: timeout, file: file, line: line)
    }

    func expectSuccess(_ args: [String], np: Int? = 2, contains: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try mpirun(args, np: np, file: file, line: line)
        XCTAssertEqual(r.status, 0, r.log, file: file, line: line)
        XCTAssertTrue(r.stdout.contains(contains), "expected \"\(contains)\" in the output:\n\(r.log)", file: file, line: line)
    }

    func testAllreduceBroadcastGatherTwoRanks() throws {
        try expectSuccess(["allreduce"], contains: "allreduce OK: 2 ranks, local 0/2")
    }

    /// Without a launcher the driver runs as a local world of one (no MPI call); LEFFA_MPI=1 makes
    /// OpenMPI start as a singleton instead (thread level reported, size 1).
    func testWithoutMpirunOneProcessWorks() throws {
        try expectSuccess(["allreduce"], np: nil, contains: "allreduce OK: 1 ranks, local 0/1 on rank 0, thread level -1")
        let r = try mpirun(["allreduce"], np: nil, env: ["LEFFA_MPI": "1"])
        XCTAssertEqual(r.status, 0, r.log)
        XCTAssertTrue(r.stdout.contains("allreduce OK: 1 ranks") && !r.stdout.contains("thread level -1"), r.log)
    }

    func testOverlappedBucketsMatchPlainAllreduce() throws {
        try expectSuccess(["buckets"], contains: "buckets OK")
        try expectSuccess(["buckets", "--fixed-order"], contains: "fixedOrder true, 4 steps match")
    }

    func testBucketsThreeRanks() throws {
        try expectSuccess(["buckets", "--steps", "3"], np: 3, contains: "buckets OK")
    }

    func testFixedOrderIsBitExact() throws {
        try expectSuccess(["ordered"], contains: "ordered OK: 2 ranks")
        // Three ranks: here the order of additions matters (the driver checks its data shows it).
        try expectSuccess(["ordered"], np: 3, contains: "ordered OK: 3 ranks")
    }

    /// Shared-memory reduction: the ordered sum bit for bit (3 ranks make the order matter), only
    /// inside the range; a scattered (sharded) reduction and a gathered block.
    func testSharedMemoryReductionIsTheOrderedSum() throws {
        try expectSuccess(["shared"], contains: "shared OK: 2 ranks")
        try expectSuccess(["shared"], np: 3, contains: "shared OK: 3 ranks")
    }

    /// Across nodes (2 nodes of 2 ranks, simulated): each node sums in shared memory, the nodes
    /// all-reduce their slices: ((g0 + g1) + (g2 + g3)) / 4 bit for bit. Unequal nodes are refused.
    func testSharedMemoryReductionAcrossNodes() throws {
        let r = try mpirun(["shared"], np: 4, env: ["LEFFA_RANKS_PER_NODE": "2"])
        XCTAssertEqual(r.status, 0, r.log)
        XCTAssertTrue(r.stdout.contains("shared OK: 4 ranks (2 node(s) of 2)"), r.log)
        let bad = try mpirun(["shared"], np: 3, env: ["LEFFA_RANKS_PER_NODE": "2"])
        XCTAssertNotEqual(bad.status, 0, bad.log)
        XCTAssertTrue(bad.stderr.contains("nodes hold different numbers of ranks (1 to 2)"), bad.log)
    }

    func testVerifyNamesTheRanksThatDiffer() throws {
        let r = try mpirun(["verify"], np: 3)
        XCTAssertEqual(r.status, 0, r.log)
        XCTAssertTrue(r.stdout.contains("weights: not the same on every rank (grouped by version: ranks 0, 1 | rank 2)"), r.log)
        XCTAssertTrue(r.stdout.contains("first: unet.conv_in.weight"), r.log)
        XCTAssertTrue(r.stdout.contains("line 3: rank 0 has \"lr: 1e-5\", rank 2 has \"lr: 2e-5\""), r.log)
    }

    func testMismatchAbortsEveryRankWithItsRank() throws {
        let r = try mpirun(["verify", "--abort-on-mismatch"])
        XCTAssertNotEqual(r.status, 0, r.log)
        XCTAssertTrue(r.stderr.contains("leffa: rank 0: weights: not the same") || r.stderr.contains("leffa: rank 1: weights: not the same"), r.log)
        XCTAssertFalse(r.stdout.contains("verify OK"), r.log)
    }

    /// A rank killed with SIGKILL mid-loop: mpirun must end the job, non-zero, within 30 s (the
    /// watchdog is set far away so that it is the launcher that does it).
    func testDeadRankEndsTheJobWithin30Seconds() throws {
        let r = try mpirun(["die", "--kill-at", "20"], env: ["LEFFA_MPI_TIMEOUT": "600"], timeout: 60)
        XCTAssertNotEqual(r.status, 0, r.log)
        XCTAssertLessThan(r.seconds, 30, r.log)
        XCTAssertTrue(r.stdout.contains("iteration 10"), "the loop should have run before the kill:\n\(r.log)")
    }

    /// A rank that stops calling MPI without dying: the watchdog of the waiting rank must abort the
    /// job, naming itself and the collective it waited in (inside the reducer's thread).
    func testHungRankIsCaughtByTheWatchdog() throws {
        let r = try mpirun(["hang", "--stop-at", "3"], env: ["LEFFA_MPI_TIMEOUT": "3"], timeout: 60)
        XCTAssertNotEqual(r.status, 0, r.log)
        XCTAssertLessThan(r.seconds, 30, r.log)
        XCTAssertTrue(r.stderr.contains("leffa: rank 0: MPI_Allreduce(gradient bucket"), r.log)
        XCTAssertTrue(r.stderr.contains("has waited 3 s"), r.log)
    }
}
