// The one harness of the end-to-end tests: finds the built commands (leffa-coord, leffa-worker,
// leffa-bench, leffa-mpi-check) and runs them, alone or under mpirun, with a deadline, capturing
// the exit status, stdout and stderr. A command that is not built fails the test; it never skips
// (Scripts/test.sh builds everything before testing).
import XCTest
import Foundation
import TestSupport

/// A finished command: how it ended, what it printed, how long it took.
struct Ran {
    var command: String
    var status: Int32
    var reason: Process.TerminationReason
    var stdout: String
    var stderr: String
    var seconds: Double
    var timedOut: Bool
    /// Both streams, stdout first: for checks that do not care which one a message went to.
    var output: String { stdout + stderr }
    /// Everything about the run, for a failure message.
    var log: String {
        let end = (reason == .exit ? "exit \(status)" : "signal \(status)")
            + (timedOut ? " (killed at the deadline)" : "")
        let time = String(format: "%.1f", seconds)
        return "$ \(command)\n\(end), \(time) s\n--- stdout\n\(stdout)\n--- stderr\n\(stderr)"
    }
}

/// A command a test needs is not there.
struct MissingCommand: Error, CustomStringConvertible {
    var description: String
}

enum Binaries {
    /// Where the built products may be: the folder of the test bundle (the build under test: on
    /// Linux the bundle is an executable in the products folder, on macOS a folder in it), else
    /// .build/release.
    static let directories: [URL] = {
        var dirs: [URL] = []
        for b in [Bundle(for: Marker.self), Bundle.main] {
            dirs += [b.bundleURL, b.bundleURL.deletingLastPathComponent()]
        }
        dirs.append(Fixtures.packageRoot.appendingPathComponent(".build/release"))
        var seen = Set<String>()
        return dirs.filter { seen.insert($0.standardizedFileURL.path).inserted }
    }()
    private final class Marker {}

    /// The built product `name` (leffa-coord, leffa-worker, leffa-bench, leffa-mpi-check).
    static func url(_ name: String) throws -> URL {
        let found = directories.map { $0.appendingPathComponent(name) }
            .first { FileManager.default.isExecutableFile(atPath: $0.path) }
        guard let found else {
            let looked = directories.map(\.path).joined(separator: ", ")
            throw MissingCommand(description: "\(name) is not built (looked in \(looked)): build first with "
                                 + "`swift build -c release -Xswiftc -enable-testing` (Scripts/test.sh does)")
        }
        return found
    }
    static func path(_ name: String) throws -> String { try url(name).path }

    /// The folder holding the built leffa-coord and leffa-worker (what Cluster/slurm.sbatch takes as LEFFA_BIN).
    static func folder() throws -> URL {
        let coord = try url("leffa-coord").deletingLastPathComponent()
        guard try url("leffa-worker").deletingLastPathComponent() == coord else {
            throw MissingCommand(description: "leffa-worker is not built beside \(coord.path): build first with "
                                 + "`swift build -c release -Xswiftc -enable-testing` (Scripts/test.sh does)")
        }
        return coord
    }

    /// A program to launch: a built product (`leffa-…`), a path (with a `/`), or a command on PATH.
    static func resolve(_ program: String) throws -> String {
        if program.contains("/") { return program }
        if program.hasPrefix("leffa-") { return try path(program) }
        let dirs = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
        let found = dirs.map { "\($0)/\(program)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let found else {
            let hint = program == "mpirun" ? ": install Open MPI (apt-get install openmpi-bin) for the MPI tests" : ""
            throw MissingCommand(description: "\(program) is not on PATH\(hint)")
        }
        return found
    }

    /// What every launch adds to this process's environment: Open MPI allowed to run as root (as in
    /// containers), one kernel thread per process unless a test says otherwise, and shared-memory
    /// windows backed by the temporary folder (containers often give /dev/shm only 64 MB, and the
    /// tests that expect shared memory must not depend on it).
    static let environment = [
        "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "LEFFA_THREADS": "1",
        "OMPI_MCA_osc_sm_backing_directory": FileManager.default.temporaryDirectory.path,
    ]

    /// Runs `program` (see `resolve`) with `args`; `environment` is added to `Binaries.environment`
    /// ("" unsets a variable). `onStart` runs once the process has started (to signal or kill it);
    /// after it, the process has `timeout` seconds to end, else it is stopped (SIGTERM, which
    /// mpirun forwards to its ranks, then SIGKILL after 5 s) and the test fails.
    @discardableResult
    static func run(_ program: String, _ args: [String] = [], environment extra: [String: String] = [:],
                    timeout: Double = 300, file: StaticString = #filePath, line: UInt = #line,
                    onStart: ((Process) -> Void)? = nil) throws -> Ran {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try resolve(program))
        p.arguments = args
        var env = ProcessInfo.processInfo.environment.merging(environment) { $1 }.merging(extra) { $1 }
        for (k, v) in extra where v.isEmpty { env[k] = nil }
        p.environment = env
        // Output goes to files, not pipes: a command that prints more than a pipe holds never blocks.
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("leffa-e2e-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let outURL = dir.appendingPathComponent("stdout"), errURL = dir.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        let out = try FileHandle(forWritingTo: outURL), err = try FileHandle(forWritingTo: errURL)
        p.standardOutput = out; p.standardError = err
        p.standardInput = FileHandle.nullDevice
        let command = ([p.executableURL!.path] + args).joined(separator: " ")

        let t0 = Date()
        try p.run()
        onStart?(p)
        let deadline = Date().addingTimeInterval(timeout)
        var timedOut = false
        while p.isRunning {
            if Date() > deadline {
                timedOut = true
                p.terminate()
                let grace = Date().addingTimeInterval(5)
                while p.isRunning && Date() < grace { usleep(50_000) }
                if p.isRunning { kill(p.processIdentifier, SIGKILL) }
                break
            }
            usleep(20_000)
        }
        p.waitUntilExit()
        try out.close(); try err.close()
        let ran = Ran(command: command, status: p.terminationStatus, reason: p.terminationReason,
                      stdout: (try? String(contentsOf: outURL, encoding: .utf8)) ?? "",
                      stderr: (try? String(contentsOf: errURL, encoding: .utf8)) ?? "",
                      seconds: Date().timeIntervalSince(t0), timedOut: timedOut)
        if timedOut { XCTFail("did not end within \(timeout) s:\n\(ran.log)", file: file, line: line) }
        return ran
    }

    /// Runs `program` under `mpirun -np N` (found on PATH); `launcher` are mpirun's own options
    /// (by default --oversubscribe, so any rank count runs on any machine).
    @discardableResult
    static func mpirun(_ np: Int, _ program: String, _ args: [String] = [], launcher: [String] = ["--oversubscribe"],
                       environment extra: [String: String] = [:], timeout: Double = 300,
                       file: StaticString = #filePath, line: UInt = #line,
                       onStart: ((Process) -> Void)? = nil) throws -> Ran {
        try run("mpirun", launcher + ["-np", String(np), try resolve(program)] + args, environment: extra,
                timeout: timeout, file: file, line: line, onStart: onStart)
    }
}
