// The default thread count: LEFFA_THREADS, else this node's cores shared by its ranks, capped by
// the CPUs the process is bound to (mpirun binds a rank to one core when -np ≤ 2).
import XCTest
import LeffaTensor

final class ParallelTests: XCTestCase {
    func testThreadCountRule() {
        XCTAssertEqual(Parallel.threadCount(environment: [:], cores: 16, allowed: nil), 16)
        XCTAssertEqual(Parallel.threadCount(environment: ["OMPI_COMM_WORLD_LOCAL_SIZE": "2"], cores: 16, allowed: 16), 8)
        // Bound to one core: one thread, not 8 sharing it.
        XCTAssertEqual(Parallel.threadCount(environment: ["OMPI_COMM_WORLD_LOCAL_SIZE": "2"], cores: 16, allowed: 1), 1)
        XCTAssertEqual(Parallel.threadCount(environment: ["OMPI_COMM_WORLD_LOCAL_SIZE": "4"], cores: 16, allowed: 8), 4)
        XCTAssertEqual(Parallel.threadCount(environment: ["LEFFA_THREADS": "3"], cores: 16, allowed: 1), 3)
        XCTAssertEqual(Parallel.threadCount(environment: ["SLURM_NTASKS_PER_NODE": "32"], cores: 16, allowed: nil), 1)
    }

    func testAllowedCPUsFromProcStatus() {
        XCTAssertEqual(Parallel.allowedCPUs(status: "Name:\tx\nCpus_allowed:\t3\nCpus_allowed_list:\t0\n"), 1)
        XCTAssertEqual(Parallel.allowedCPUs(status: "Cpus_allowed_list:\t0-3,8-11,15\n"), 9)
        XCTAssertNil(Parallel.allowedCPUs(status: "Name:\tx\n"))
        XCTAssertNil(Parallel.allowedCPUs(status: "Cpus_allowed_list:\tgarbage\n"))
        XCTAssertNil(Parallel.allowedCPUs(status: nil))
        #if os(Linux)
        // This process: at least one CPU, at most the machine's.
        let mine = Parallel.allowedCPUs()
        XCTAssertNotNil(mine)
        XCTAssertLessThanOrEqual(mine ?? 0, ProcessInfo.processInfo.activeProcessorCount)
        #endif
    }
}
