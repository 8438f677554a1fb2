// `leffa-coord run`: drives the workers through every stage that is not done. One launch per
// stage (`mpirun -np N … leffa-worker --run DIR`, or the worker alone for N = 1); the worker
// trains the stage, writes its final weights and advances state.json itself, and the supervisor
// then launches the next stage. Not the training (leffa-worker) nor the state moves (StageControl).
//
// Contract of the supervision loop (one thread, polling every `pollInterval`):
//  1. The worker runs in its own process group, so Ctrl-C reaches the supervisor only; the
//     supervisor forwards SIGINT to the whole group (mpirun and its ranks) and waits for the
//     checkpoint the workers then write — as long as their heartbeat shows life (the longer of
//     `stopGrace` and `heartbeatTimeout`) — and sends SIGKILL on a second Ctrl-C. Checkpoints are
//     written atomically, so the newest one stays valid either way.
//  2. The worker's stdout and stderr go to stages/STAGE/logs/worker.log; new lines are echoed.
//  3. A worker is dead when it exits non-zero, is killed by a signal, exits 0 without finishing
//     its stage, or writes no heartbeat for `heartbeatTimeout` seconds (counted from its launch
//     until its first heartbeat). A dead worker is restarted (it resumes from the newest valid
//     checkpoint) after a backoff that doubles each time, while the retry budget lasts. The budget
//     counts failures in a row without progress (a new checkpoint or a finished stage resets it).
//  4. Elastic (`elastic`): when a relaunch fails again at the same rank count (a host is gone), or
//     the hostfile now offers fewer slots than the rank count, the next launch uses the largest
//     rank count that the hosts offer and that divides the global batch of every remaining stage.
//     The sample stream does not depend on the rank count, so the run continues unchanged (with
//     --fixed-order, bit for bit). The move is logged and recorded in the run's history.
import Foundation
import LeffaData
import LeffaRunFormat

public struct SupervisorOptions: Sendable {
    public var ranks = 1
    public var hostfile: String? = nil
    public var mpirunArgs: [String] = []
    public var workerArgs: [String] = []
    public var retries = 3
    public var backoff: Double = 2 // seconds before the first restart; doubles, max 300
    public var heartbeatTimeout: Double = 900
    public var stopGrace: Double = 30
    public var pollInterval: Double = 0.2
    public var worker: String // path of leffa-worker
    public var mpirun = "mpirun"
    /// Launch through mpirun even for one rank.
    public var alwaysMPI = false
    /// Relaunch with fewer ranks when the hosts no longer offer the current count (see 4. above).
    public var elastic = false
    public init(worker: String) { self.worker = worker }
}

public enum SupervisorOutcome: Equatable, Sendable {
    case completed
    /// Stopped on a signal (SIGINT for Ctrl-C; SIGTERM or SIGUSR1 from a scheduler) after the
    /// workers saved a checkpoint.
    case interrupted(signal: Int32)
}

/// Set by the signal handlers; read by the polling loop.
nonisolated(unsafe) private var interruptRequested: sig_atomic_t = 0
nonisolated(unsafe) private var interruptSignal: sig_atomic_t = SIGINT

public final class Supervisor {
    public let directory: RunDirectory
    public let options: SupervisorOptions
    let log: (String) -> Void
    /// Restarts done so far (for tests and the final summary).
    public private(set) var restarts = 0
    /// The pid of the running worker (or mpirun), for tests.
    public private(set) var childPID: pid_t = 0
    /// The rank count of the next launch (starts at `options.ranks`; elastic shrinking lowers it).
    public private(set) var ranks: Int

    public init(run: RunDirectory, options: SupervisorOptions, log: @escaping (String) -> Void) {
        self.directory = run; self.options = options; self.ranks = options.ranks
        // What the supervisor says (launches, failures, restarts; not the echoed worker lines,
        // which are in the stage's worker.log) is also appended to RUN/coordinator.log.
        let path = run.url.appendingPathComponent("coordinator.log").path
        self.log = { line in
            log(line)
            guard !line.hasPrefix("  ") else { return }
            if !FileManager.default.fileExists(atPath: path) {
                _ = FileManager.default.createFile(atPath: path, contents: nil)
            }
            guard let h = FileHandle(forWritingAtPath: path) else { return }
            _ = try? h.seekToEnd(); try? h.write(contentsOf: Data("\(timestamp()) \(line)\n".utf8)); try? h.close()
        }
    }

    /// Installs the Ctrl-C handler (the command does this; tests drive `requestStop`).
    public static func installInterruptHandler() {
        // Counts: the first asks the workers to stop after a checkpoint, a second kills them.
        // SIGTERM and SIGUSR1 are a scheduler's notice (Slurm: the time limit, `--signal=B:USR1@T`,
        // scancel): passed on as SIGUSR1, which mpirun forwards to the ranks on every node.
        signal(SIGINT) { _ in interruptRequested += 1 }
        signal(SIGTERM) { _ in
            interruptSignal = SIGUSR1; interruptRequested += 1
        }
        signal(SIGUSR1) { _ in
            interruptSignal = SIGUSR1; interruptRequested += 1
        }
    }
    public static func requestStop(signal: Int32 = SIGINT) { interruptSignal = signal; interruptRequested += 1 }
    var stopOutcome: SupervisorOutcome { .interrupted(signal: interruptSignal) }

    /// The command line of one launch.
    public func commandLine() -> [String] {
        let worker = [options.worker, "--run", directory.url.path] + options.workerArgs
        if ranks == 1 && !options.alwaysMPI && options.hostfile == nil { return worker }
        var cmd = [options.mpirun, "-np", String(ranks)]
        if options.hostfile == nil && ranks > ProcessInfo.processInfo.activeProcessorCount {
            cmd.append("--oversubscribe")
        }
        // On this machine, OpenMPI would bind each rank to a single core when -np ≤ 2, and the
        // worker could use only that core: let ranks run on every core (unless the user binds).
        let binds = options.mpirunArgs.contains { a in
            ["--bind-to", "--map-by", "--cpu-set", "--cpus-per-proc", "--cpus-per-rank", "--rankfile"].contains {
                a.hasPrefix($0)
            }
        }
        if options.hostfile == nil && !binds { cmd += ["--bind-to", "none"] }
        if let h = options.hostfile { cmd += ["--hostfile", h] }
        return cmd + options.mpirunArgs + worker
    }

    public func run() throws -> SupervisorOutcome {
        interruptRequested = 0; interruptSignal = SIGINT
        var failures = 0, failuresAtThisCount = 0
        var lastFailure = ""
        ranks = options.ranks
        // One supervisor per run, and none while a worker started elsewhere (another node, a
        // batch script) still trains it: the run locks tell from any node.
        let live = Liveness.of(directory, staleAfter: options.heartbeatTimeout)
        if live.live {
            throw RunError("\(directory.url.path): the run is live: \(live.why); stop it first, or wait for it to end")
        }
        let lock = try RunLock.acquire(directory, .coordinator)
        defer { lock.release() }
        while true {
            let state = try directory.readState()
            if state.status == .done {
                log(
                    "run complete: stages \(state.completedStages.joined(separator: ", ")) done\(restarts > 0 ? " (\(restarts) restart(s))" : "")"
                )
                return .completed
            }
            let stage = state.stage
            if options.elastic, let slots = try hostfileSlots(), slots < ranks {
                try shrink(to: slots, why: "the hostfile \(options.hostfile!) offers \(slots) slot(s)")
                failuresAtThisCount = 0
            }
            let before = (try? StageControl.checkpointSteps(directory, stage).last) ?? nil
            let cmd = commandLine()
            log("stage \(stage): launching \(cmd.map(quoted).joined(separator: " "))")
            let logURL = directory.logsURL(stage).appendingPathComponent("worker.log")
            try FileManager.default.createDirectory(at: directory.logsURL(stage), withIntermediateDirectories: true)
            let child = try ChildProcess(cmd, environment: childEnvironment(), output: logURL)
            childPID = child.pid
            lastWorkerError = nil
            let result = supervise(child, logURL: logURL)
            childPID = 0
            if case .interrupted = result { return stopOutcome }

            let after = try directory.readState()
            let progressed =
                after.stage != stage || after.status == .done
                || ((try? StageControl.checkpointSteps(directory, stage).last) ?? nil).map { $0 > (before ?? -1) }
                    == true
            var failure: String? = nil
            switch result {
            case .exited(0):
                if after.stage == stage && after.status != .done {
                    failure = "the worker exited (status 0) before stage \(stage) finished"
                } else {
                    log("stage \(stage) finished" + (after.status == .done ? "" : "; next stage \(after.stage)"))
                }
            case .exited(let code): failure = "the worker exited with status \(code)"
            case .signaled(let sig): failure = "the worker was killed by signal \(sig) (\(signalName(sig)))"
            case .stalled(let secs):
                failure =
                    "no heartbeat for \(Int(secs)) s (timeout \(Int(options.heartbeatTimeout)) s); the worker was stopped"
            case .interrupted: return stopOutcome
            }
            guard let failure else { failures = 0; failuresAtThisCount = 0; continue }
            if after.status == .failed {
                // The worker judged the failure deterministic (a NaN loss, bad data, a full disk):
                // restarting from the same checkpoint with the same seed would repeat it.
                let why = after.history.last?.reason ?? failure
                let message =
                    "stage \(stage): \(why)\nNot restarting: the same checkpoint and seed would fail the same way. Fix the cause (the stage's lr in \(directory.configURL.path), then confirm the edit with `leffa-coord config --run \(directory.url.path) --accept-edit`; the data; the disk), then rerun `leffa-coord run` to resume from the last valid checkpoint."
                if case .exited(ExitStatus.runFailed) = result { throw RunFailed(message) }
                throw RunError(message)
            }
            if case .exited(let code) = result, code == ExitStatus.badInput || code == ExitStatus.usage {
                // Bad input (named in the worker's last error line) fails again on every retry.
                let cause = lastWorkerError ?? failure
                _ = try? directory.updateState { if $0.status != .failed { $0.setStatus(.failed, reason: cause) } }
                throw RunError(
                    "stage \(stage): \(cause)\nNot restarting: the worker reported bad input (exit status \(code)), which a restart would meet again. Fix it, then rerun `leffa-coord run` to resume from the last valid checkpoint (log: \(logURL.path))."
                )
            }
            if progressed { failures = 0; failuresAtThisCount = 0 }
            failures += 1; failuresAtThisCount += 1
            lastFailure = failure
            if options.elastic && failuresAtThisCount >= 2 && ranks > 1,
                // Failed again at this count: assume a host is gone and offer one rank fewer.
                try shrink(to: ranks - 1, why: "\(failure), \(failuresAtThisCount) times in a row at \(ranks) ranks")
            {
                failures = 0; failuresAtThisCount = 0; restarts += 1
                if sleepInterruptibly(options.backoff) {
                    log("interrupted during backoff; stopped"); return stopOutcome
                }
                continue
            }
            if failures > options.retries {
                throw RunFailed(
                    "stage \(stage): \(lastFailure); giving up after \(options.retries) restart(s) without progress. The run directory is intact: see \(logURL.path), then rerun `leffa-coord run` to resume from the last valid checkpoint"
                )
            }
            let wait = min(300, options.backoff * pow(2, Double(failures - 1)))
            let from =
                ((try? StageControl.checkpointSteps(directory, stage).last) ?? nil).map { "checkpoint step \($0)" }
                ?? "the stage's starting weights"
            log(
                "stage \(stage): \(failure); restarting from \(from) in \(String(format: "%.0f", wait)) s (retry \(failures)/\(options.retries))"
            )
            restarts += 1
            if sleepInterruptibly(wait) { log("interrupted during backoff; stopped"); return stopOutcome }
        }
    }

    /// The largest rank count ≤ `most` that divides the global batch of every stage not yet done.
    func usableRanks(atMost most: Int) throws -> Int {
        let state = try directory.readState(), config = try directory.readConfig()
        let start = config.stages.firstIndex { $0.name == state.stage } ?? 0
        return config.rankCounts(fromStage: start).last { $0 <= max(1, most) } ?? 1
    }

    /// Lowers the rank count to the largest usable one ≤ `most`; says so in the log and history.
    /// False when no smaller count is usable.
    @discardableResult
    func shrink(to most: Int, why: String) throws -> Bool {
        let n = try usableRanks(atMost: most)
        guard n < ranks else { return false }
        let line =
            "elastic: relaunching with \(n) rank(s) instead of \(ranks) (\(why)); the run continues the same sample stream"
        let state = try directory.updateState { $0.note(line) }
        log("stage \(state.stage): " + line)
        ranks = n
        return true
    }

    /// Slots the hostfile offers now (it may have been edited since the launch), nil without one.
    func hostfileSlots() throws -> Int? {
        guard let path = options.hostfile else { return nil }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw RunError("\(path): cannot read the hostfile")
        }
        return try HostFile.slots(text, source: path)
    }

    enum Result { case exited(Int32), signaled(Int32), stalled(Double), interrupted }

    /// The worker's last error line in this launch ("leffa-worker: error: …" alone, "leffa: rank R:
    /// …" under mpirun), without the prefix: the cause to report and record.
    var lastWorkerError: String?

    /// Echoes the worker's new lines, remembering its last error line.
    func echo(_ lines: [String]) {
        for line in lines {
            log("  " + line)
            for prefix in ["leffa-worker: error: ", "leffa: rank "] where line.hasPrefix(prefix) {
                var cause = String(line.dropFirst(prefix.count))
                // "leffa: rank 0: message [host h, pid p; aborting all 2 ranks, exit code 1]"
                if prefix == "leffa: rank ", let colon = cause.range(of: ": ") {
                    cause = String(cause[colon.upperBound...])
                    if let bracket = cause.range(of: " [host ", options: .backwards) { cause = String(cause[..<bracket.lowerBound]) }
                }
                lastWorkerError = cause
            }
        }
    }

    func supervise(_ child: ChildProcess, logURL: URL) -> Result {
        let started = Date().timeIntervalSince1970
        var tail = LogTail(url: logURL)
        while true {
            echo(tail.newLines())
            if let status = child.poll() {
                echo(tail.newLines(flush: true))
                return status.signal != nil ? .signaled(status.signal!) : .exited(status.code)
            }
            if interruptRequested != 0 {
                let sig = interruptSignal
                log(
                    "stopping the worker (\(signalName(sig)) to process group \(child.pid)): the ranks stop at the next micro-batch boundary and save a checkpoint; Ctrl-C again to kill them (the newest checkpoint is kept)"
                )
                child.signalGroup(sig)
                // As long as the worker shows life (a step can take long at SD1.5 size), wait for
                // its checkpoint; stop waiting on a second Ctrl-C or on heartbeat silence.
                let asked = Date().timeIntervalSince1970
                var stopped = false
                while !stopped {
                    if child.wait(timeout: options.pollInterval) != nil { stopped = true; break }
                    echo(tail.newLines())
                    let beat = max(asked, Heartbeat.read(directory)?.unixTime ?? 0)
                    let silent = Date().timeIntervalSince1970 - beat
                    if interruptRequested > 1 || silent > max(options.stopGrace, options.heartbeatTimeout) { break }
                }
                if !stopped {
                    log(
                        interruptRequested > 1
                            ? "second interrupt: SIGKILL" : "the worker shows no life after the stop request; SIGKILL")
                    child.signalGroup(SIGKILL)
                    _ = child.wait(timeout: 10)
                }
                echo(tail.newLines(flush: true))
                log("stopped; run `leffa-coord run` again to resume")
                return .interrupted
            }
            var last = started
            if let h = Heartbeat.read(directory), h.unixTime >= started { last = h.unixTime }
            let silent = Date().timeIntervalSince1970 - last
            if silent > options.heartbeatTimeout {
                child.signalGroup(SIGTERM)
                if child.wait(timeout: 5) == nil { child.signalGroup(SIGKILL); _ = child.wait(timeout: 10) }
                return .stalled(silent)
            }
            usleep(useconds_t(options.pollInterval * 1e6))
        }
    }

    func childEnvironment() -> [String: String] {
        var env = ProcessInfo.processInfo.environment
        if getuid() == 0 { env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"; env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1" }
        return env
    }

    /// Sleeps, returning true early if Ctrl-C arrived.
    func sleepInterruptibly(_ seconds: Double) -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            if interruptRequested != 0 { return true }
            usleep(100_000)
        }
        return interruptRequested != 0
    }
}

/// A shell word: quoted when it holds a space.
public func quoted(_ s: String) -> String { s.contains(" ") ? "'\(s)'" : s }

func signalName(_ s: Int32) -> String {
    switch s {
    case SIGKILL: return "SIGKILL";
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT"
    case SIGUSR1: return "SIGUSR1";
    case SIGSEGV: return "SIGSEGV";
    case SIGABRT: return "SIGABRT";
    case SIGBUS: return "SIGBUS";
    case SIGILL: return "SIGILL"
    default: return "signal \(s)"
    }
}

/// Reads the lines appended to a file since the last call.
struct LogTail {
    let url: URL
    var offset: UInt64 = 0
    var partial = ""
    init(url: URL) {
        self.url = url
        offset = (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? UInt64) ?? 0
    }
    mutating func newLines(flush: Bool = false) -> [String] {
        guard let h = try? FileHandle(forReadingFrom: url) else { return [] }
        defer { try? h.close() }
        try? h.seek(toOffset: offset)
        let data = (try? h.readToEnd()) ?? Data()
        offset += UInt64(data.count)
        partial += String(decoding: data, as: UTF8.self)
        var lines = partial.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        partial = lines.removeLast()
        if flush && !partial.isEmpty { lines.append(partial); partial = "" }
        return lines.filter { !$0.isEmpty }
    }
}

/// OpenMPI hostfiles: `host [slots=N] [max_slots=M]` per line, `#` comments.
enum HostFile {
    /// Total slots; a host without `slots=` counts as one.
    static func slots(_ text: String, source: String) throws -> Int {
        var total = 0
        for (i, raw) in textLines(text).enumerated() {
            let line =
                raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard words.count > 0 else { continue }
            var n = 1
            for w in words.dropFirst() where w.hasPrefix("slots=") {
                guard let v = Int(w.dropFirst(6)), v >= 0 else {
                    throw RunError("\(source): line \(i + 1): field slots: expected a count like slots=4, got \(w)")
                }
                n = v
            }
            total += n
        }
        return total
    }
}
