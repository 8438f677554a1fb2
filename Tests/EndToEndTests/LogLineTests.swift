// What the executables print for people and for log files: time and rank on the worker's lines,
// --quiet keeping only warnings and errors, --version everywhere, and progress bars that write
// plain lines (no carriage returns) into a file; and the OpenBLAS kernels they run.
import XCTest
import Foundation
import TestSupport
import LeffaTensor
import CBLAS

extension WorkerMPITests {
    func testWorkerLinesCarryTimeAndRankAndQuietKeepsWarnings() throws {
        try synth()
        let run = try makeRun("logs", steps: 2)
        var job = try Binaries.mpirun(2, "leffa-worker", ["--run", run, "--until-step", "1"])
        XCTAssertEqual(job.status, 0, job.log)
        let step = try XCTUnwrap(job.stderr.split(separator: "\n").first { $0.contains("[only] step 1/2") }, job.log)
        // "2026-12-05T19:31:45Z rank 0 [only] step 1/2 …"
        XCTAssertNotNil(step.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ rank 0 \[only\] step 1/2"#, options: .regularExpression), String(step))

        job = try Binaries.run("leffa-worker", ["--run", run, "--quiet"])
        XCTAssertEqual(job.status, 0, job.log)
        XCTAssertFalse(job.stderr.contains("step 2/2"), job.log)
        XCTAssertEqual(job.stderr, "", "nothing but warnings and errors: \(job.log)")

        job = try Binaries.run("leffa-worker", ["--run", run, "--quiet", "--verbose"])
        XCTAssertEqual(job.status, 2, job.log)
    }

    func testEveryExecutableHasAVersion() throws {
        for tool in ["leffa-coord", "leffa-worker", "leffa-bench"] {
            let job = try Binaries.run(tool, ["--version"])
            XCTAssertEqual(job.status, 0, job.log)
            XCTAssertTrue(job.stdout.hasPrefix("leffa "), job.log)
        }
    }

    /// `prepare` into a file (not a terminal): whole lines at each tenth, no carriage returns.
    func testProgressIntoAFileIsPlainLines() throws {
        try synth()
        let run = try makeRun("progress", steps: 2)
        let job = try Binaries.run("leffa-coord", ["prepare", "--run", run])
        XCTAssertEqual(job.status, 0, job.log)
        XCTAssertFalse(job.stderr.contains("\r"), job.log)
        XCTAssertTrue(job.stderr.contains("[prepare 16x16] 6/6 (100 %)"), job.log)
    }
}

final class BLASKernelsEndToEndTests: XCTestCase {
    /// An executable started without OPENBLAS_CORETYPE runs OpenBLAS's kernels for this CPU, not
    /// its generic fallback (on a CPU the library does not know, it restarts itself with them).
    func testTheExecutablesRunKernelsThisCPUCanDo() throws {
        let job = try Binaries.run("leffa-bench", ["engine", "--quick", "--repeats", "1", "--threads", "1",
                                                   "--json", NSTemporaryDirectory() + "engine-\(getpid()).json"],
                                   environment: ["OPENBLAS_CORETYPE": ""])
        XCTAssertEqual(job.status, 0, job.log)
        let core = try XCTUnwrap(job.stdout.firstMatch(of: #/OpenBLAS (\w+) kernels/#)?.1, job.log)
        XCTAssertNil(BLASKernels.betterCore(current: String(core), vectorLevel: Int(leffa_cpu_vector_level()),
                                            environment: [:]), job.log)
        // And the user's choice is kept.
        let pinned = try Binaries.run("leffa-bench", ["engine", "--quick", "--repeats", "1", "--threads", "1",
                                                      "--json", NSTemporaryDirectory() + "engine-\(getpid()).json"],
                                      environment: ["OPENBLAS_CORETYPE": "Prescott"])
        XCTAssertTrue(pinned.stdout.contains("OpenBLAS Prescott kernels"), pinned.log)
    }
}
