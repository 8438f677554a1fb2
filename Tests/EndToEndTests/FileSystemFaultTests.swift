// Faults of the run folder's file system, end to end: a disk that fills during a checkpoint and
// a read-only run folder end the job — every rank, alone or under mpirun — within 30 s, non-zero,
// with the cause printed; nothing is left half-written and the run resumes once space is back.
// The file systems are real: a small tmpfs mounted over the test's folder (the tests run as root,
// as mpirun's OMPI_ALLOW_RUN_AS_ROOT already assumes; a failed mount fails the test).
import XCTest
import Foundation
import TestSupport
import RunTestSupport

extension WorkerMPITests {
    /// Mounts a tmpfs of `megabytes` over the test's folder (unmounted at teardown).
    func mountSmallDisk(megabytes: Int) throws {
        let m = try Binaries.run("mount", ["-t", "tmpfs", "-o", "size=\(megabytes)m", "tmpfs", dir.path])
        guard m.status == 0 else {
            throw MissingCommand(description: "mounting a tmpfs over \(dir.path) failed (these tests need root): \(m.log)")
        }
        addTeardownBlock { [dir] in _ = try? Binaries.run("umount", ["-l", dir!.path]) }
    }

    func remount(_ options: String) throws {
        let m = try Binaries.run("mount", ["-o", "remount,\(options)", dir.path])
        XCTAssertEqual(m.status, 0, m.stderr)
    }

    /// A tiny run (110 MB checkpoints) in a 60 MB file system: the first checkpoint fills it.
    func runOnSmallDisk() throws -> String {
        try mountSmallDisk(megabytes: 60)
        try synth()
        return try makeRun("full", steps: 4)
    }

    /// Files a failed write might leave behind, and state.json still a valid run state.
    func assertNothingHalfWritten(_ run: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let names = FileManager.default.enumerator(atPath: run)!.compactMap { $0 as? String }
        XCTAssertEqual(names.filter { $0.hasSuffix(".tmp") || $0.hasSuffix(".h5") }, [], file: file, line: line)
        let state = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: run + "/state.json")))
        XCTAssertEqual((state as? [String: Any])?["stage"] as? String, "only", file: file, line: line)
    }

    func testAFullDiskDuringACheckpointEndsEveryRankWithTheCause() throws {
        let run = try runOnSmallDisk()
        let job = try Binaries.mpirun(2, "leffa-worker", ["--run", run], timeout: 30)
        XCTAssertNotEqual(job.status, 0, job.log)
        XCTAssertTrue(job.stderr.contains("No space left on device") && job.stderr.contains("step-00000002.h5"), job.log)
        try assertNothingHalfWritten(run)
        // With room again, the run resumes and finishes.
        try remount("size=400m")
        let again = try Binaries.mpirun(2, "leffa-worker", ["--run", run], timeout: 120)
        XCTAssertEqual(again.status, 0, again.log)
        XCTAssertTrue(FileManager.default.fileExists(atPath: run + "/stages/only/final.safetensors"))
    }

    /// Alone, libhdf5 used to crash at exit (its handler closing the failed file again): exit 1
    /// with the message, not 139.
    func testAFullDiskAloneIsAnErrorNotACrash() throws {
        let run = try runOnSmallDisk()
        let job = try Binaries.run("leffa-worker", ["--run", run], timeout: 30)
        XCTAssertEqual(job.status, 1, job.log)
        XCTAssertEqual(job.reason, .exit, job.log)
        XCTAssertTrue(job.stderr.contains("No space left on device (errno 28)"), job.log)
        XCTAssertFalse(job.stderr.contains("crashed"), job.log)
        try assertNothingHalfWritten(run)
    }

    func testAReadOnlyRunFolderEndsEveryRankWithTheCause() throws {
        try mountSmallDisk(megabytes: 60)
        try synth()
        let run = try makeRun("readonly", steps: 4)
        try remount("ro")
        for job in [
            try Binaries.mpirun(2, "leffa-worker", ["--run", run], timeout: 30),
            try Binaries.run("leffa-coord", ["run", "--run", run, "--np", "2"], timeout: 30),
        ] {
            XCTAssertEqual(job.status, 1, job.log)
            XCTAssertTrue(job.stderr.contains("Read-only file system"), job.log)
        }
    }

    /// `init` into a read-only folder names the folder and the reason (not Foundation's error text).
    func testInitOnAReadOnlyFileSystemSaysSo() throws {
        try mountSmallDisk(megabytes: 4)
        try remount("ro")
        let cfg = FileManager.default.temporaryDirectory.appendingPathComponent("ro-\(UUID().uuidString).yaml")
        try tinyConfig().write(to: cfg, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: cfg) }
        let job = try Binaries.run("leffa-coord", ["init", "--config", cfg.path, "--run", dir.path + "/run"])
        XCTAssertEqual(job.status, 1, job.log)
        XCTAssertTrue(job.stderr.contains("\(dir.path)/run: cannot create the folder (Read-only file system)"), job.log)
        XCTAssertFalse(job.stderr.contains("NSCocoaErrorDomain"), job.log)
    }

    /// Rank 0 alone writing the final weights onto a full disk (two 110 MB checkpoints kept fill a
    /// 240 MB file system; the 27 MB final weights do not fit): every rank ends, with the cause.
    func testAFullDiskForTheFinalWeightsEndsEveryRank() throws {
        try mountSmallDisk(megabytes: 240)
        try synth()
        let run = try makeRun("final", steps: 4, extra: ", keep_checkpoints: 2")
        let job = try Binaries.mpirun(2, "leffa-worker", ["--run", run], timeout: 30)
        XCTAssertNotEqual(job.status, 0, job.log)
        XCTAssertTrue(job.stderr.contains("final") && job.stderr.contains("No space left on device"), job.log)
        XCTAssertFalse(FileManager.default.fileExists(atPath: run + "/stages/only/final.safetensors"))
        let names = FileManager.default.enumerator(atPath: run)!.compactMap { $0 as? String }
        XCTAssertEqual(names.filter { $0.contains(".tmp") }, [], "no partial file left")
        XCTAssertEqual(try status(run), "running", "the stage is not marked finished")
    }
}
