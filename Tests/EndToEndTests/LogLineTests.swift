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

    /// AVX-512 code lives in the one C function built for it, which runs only where cpuid says it
    /// may; anywhere else (say a generic specialisation the linker picked from an AVX-512 build)
    /// an AVX2 node would die of an illegal instruction. Registers only AVX-512 has are the sign.
    func testOnlyTheAVX512KernelHoldsAVX512Instructions() throws {
        let avx512 = try Regex(#"zmm|[xy]mm(1[6-9]|2\d|3[01])\b|\{1to\d+\}|%k[0-7]\b"#)
        let function = try Regex(#"^[0-9a-f]+ <(.+)>:$"#)
        for tool in ["leffa-coord", "leffa-worker", "leffa-bench"] {
            let job = try Binaries.run("objdump", ["-d", "--no-show-raw-insn", try Binaries.path(tool)])
            XCTAssertEqual(job.status, 0, job.log)
            var current = "", holders = Set<String>(), lines = 0
            for line in job.stdout.split(separator: "\n") {
                lines += 1
                if line.hasSuffix(">:"), let m = line.wholeMatch(of: function) {
                    current = String(line[m.range]); continue
                }
                if line.contains("mm") || line.contains("%k") || line.contains("{1to"), line.contains(avx512) {
                    holders.insert(current)
                }
            }
            XCTAssertGreaterThan(lines, 10_000, "\(tool): objdump printed too little: \(job.stderr)")
            #if arch(x86_64)
            XCTAssertEqual(holders.map { $0.contains("<leffa_outer_product_avx512>") }, [true], "\(tool): \(holders)")
            #endif
        }
    }
}
