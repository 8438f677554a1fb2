// `leffa-coord run`: train every stage that is not done, restarting dead workers. Argument
// parsing only; the logic is LeffaRun.Supervisor.
import ArgumentParser
import LeffaCLI
import Foundation
import LeffaRunFormat
import LeffaRun

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train all remaining stages with N ranks, restarting workers that die.")
    @Option(name: .customLong("run"), help: "The run directory.") var runPath: String
    @Option(help: "MPI ranks (1 runs the worker without mpirun).") var np: Int = 1
    @Option(help: "mpirun --hostfile.") var hostfile: String?
    @Option(
        name: .customLong("mpirun-arg"), parsing: .unconditionalSingleValue, help: "Extra mpirun argument (repeatable)."
    ) var mpirunArgs: [String] = []
    @Option(
        name: .customLong("worker-arg"), parsing: .unconditionalSingleValue,
        help: "Extra leffa-worker argument (repeatable), e.g. --fixed-order.") var workerArgs: [String] = []
    @Option(help: "Restarts allowed in a row without progress.") var retries: Int = 3
    @Option(help: "Seconds before the first restart (doubles each time).") var backoff: Double = 2
    @Option(help: "Seconds without a heartbeat after which a worker counts as hung.") var heartbeatTimeout: Double = 900
    @Option(help: "Path of leffa-worker (default: next to leffa-coord).") var worker: String?
    @Flag(help: "Launch through mpirun even for --np 1.") var mpi = false
    @Flag(
        help:
            "When a relaunch fails again at the same rank count (a host gone) or the hostfile offers fewer slots, relaunch with the largest rank count that the hosts offer and that divides every remaining stage's batch."
    ) var elastic = false
    @Flag(help: "Go on although the run's data changed since it was recorded (passed to the worker; recorded in the history).")
    var acceptDataChange = false
    @Flag(help: "Print the launch command and the stages it would train, then exit without launching.")
    var dryRun = false
    @OptionGroup var logging: LogOptions

    func run() throws {
        guard np >= 1 else { throw ValidationError("--np: expected at least 1, got \(np)") }
        var opts = SupervisorOptions(worker: worker ?? siblingExecutable("leffa-worker"))
        opts.ranks = np; opts.hostfile = hostfile; opts.mpirunArgs = mpirunArgs; opts.workerArgs =
            workerArgs + (acceptDataChange ? ["--accept-data-change"] : []) + (logging.quiet ? ["--quiet"] : [])
            + (logging.verbose ? ["--verbose"] : [])
        opts.retries = retries; opts.alwaysMPI = mpi; opts.backoff = backoff; opts.heartbeatTimeout = heartbeatTimeout
        opts.elastic = elastic
        guard FileManager.default.isExecutableFile(atPath: opts.worker) else {
            throw userError(
                RunError(
                    "\(opts.worker): leffa-worker not found; build it (`swift build -c release`) or pass --worker PATH")
            )
        }
        do {
            // Refused before anything launches (the worker would refuse too, after MPI started).
            let dir = RunDirectory(runPath), state = try dir.readState(), config = try dir.readConfig()
            if let i = config.stages.firstIndex(where: { $0.name == state.stage }), state.status != .done {
                try config.checkRanks(np, fromStage: i, source: dir.configURL.path)
            }
        } catch { throw userError(error) }
        if dryRun {
            let dir = RunDirectory(runPath)
            do {
                let state = try dir.readState(), config = try dir.readConfig()
                let todo = config.stages.drop { $0.name != state.stage }.map(\.name)
                let sup = Supervisor(run: dir, options: opts) { _ in }
                print(
                    state.status == .done
                        ? "# the run is complete; nothing to launch"
                        : "# one launch per stage: \(todo.joined(separator: ", ")) (status \(state.status.rawValue))")
                print(sup.commandLine().map(quoted).joined(separator: " "))
            } catch { throw userError(error) }
            return
        }
        Supervisor.installInterruptHandler()
        // The coordinator's own lines get a time and a level; the worker's, echoed with two spaces
        // in front, already carry theirs (and --quiet reaches the worker too).
        let logger = logging.logger("leffa-coord")
        let quiet = logging.quiet
        let sup = Supervisor(run: RunDirectory(runPath), options: opts) { line in
            if line.hasPrefix("  ") {
                if !quiet || LogLine.level(of: String(line.dropFirst(2))).0 >= .warning { fputs(line + "\n", stderr) }
            } else {
                logger.line(line)
            }
        }
        do {
            // 128 + signal, as a shell reports a process killed by it: 130 Ctrl-C, 138 SIGUSR1.
            if case .interrupted(let sig) = try sup.run() { throw ExitCode(128 + sig) }
        } catch let e as ExitCode { throw e } catch { throw userError(error) }
    }
}

/// A program in the same folder as this one.
func siblingExecutable(_ name: String) -> String {
    let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    return URL(fileURLWithPath: me).deletingLastPathComponent().appendingPathComponent(name).path
}
