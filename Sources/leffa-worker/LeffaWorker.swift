// leffa-worker: trains the run's current stage from its last valid checkpoint (or the previous
// stage's final weights, or the configured initial weights). Alone, one process; under
// `mpirun -np N`, one of N data-parallel ranks (each holds both UNets; gradients are averaged).
// Argument parsing and signals only; the rest is LeffaTraining's Worker.
import ArgumentParser
import Foundation
import LeffaCLI
import LeffaTraining

/// Set by SIGINT, SIGTERM or SIGUSR1 (a scheduler's warning before preemption, e.g. Slurm's
/// `--signal=USR1@120`): the ranks agree on the next micro-batch boundary, save a checkpoint there
/// and stop.
nonisolated(unsafe) var stopSignal: sig_atomic_t = 0

extension GradientReduction: ExpressibleByArgument {
    public init?(argument: String) {
        guard let r = try? GradientReduction.parse(argument, source: "--reduction") else { return nil }
        self = r
    }
}

@main
struct LeffaWorker: ParsableCommand {
    static func main() { mainWithExitStatuses() }
    static let configuration = CommandConfiguration(
        commandName: "leffa-worker",
        abstract: "Train the current stage of a Leffa run (alone or under mpirun).", version: leffaVersion)
    @Option(name: .customLong("run"), help: "The run directory (made by `leffa-coord init`).") var runPath: String
    @Option(help: "Stop cleanly after this step of the current stage, leaving a checkpoint.") var untilStep: Int?
    @Flag(help: "Keep training into the following stages instead of stopping when the current one ends.")
    var allStages = false
    @Flag(
        help:
            "Reduce per-sample gradients in a fixed global order: bit-identical results for any rank count dividing the batch."
    )
    var fixedOrder = false
    @Option(help: "Gradient bucket size in MB (default: LEFFA_BUCKET_MB, else 25).") var bucketMb: Int?
    @Option(
        help: """
            How gradients are averaged: auto (shared memory when all ranks are on one node, else buckets), shared, or buckets \
            (overlapped MPI all-reduce). Default: LEFFA_REDUCTION, else auto.
            """)
    var reduction: GradientReduction?
    @Flag(help: "Go on although the data changed since the run recorded it (recorded in the run's history).")
    var acceptDataChange = false
    @OptionGroup var threads: ThreadOptions
    @OptionGroup var logging: LogOptions

    func run() throws {
        threads.apply()
        signal(SIGINT) { _ in stopSignal = 1 }
        signal(SIGTERM) { _ in stopSignal = 1 }
        signal(SIGUSR1) { _ in stopSignal = 1 }
        var o = Worker.Options(run: runPath)
        o.untilStep = untilStep; o.allStages = allStages; o.fixedOrder = fixedOrder
        o.bucketBytes = bucketMb.map { $0 << 20 }; o.reduction = reduction; o.threadsGiven = threads.threads != nil
        o.acceptDataChange = acceptDataChange
        let logging = self.logging
        // Rank 0 speaks for the job (every rank computes the same numbers); its rank is on each
        // line when there are several.
        o.makeLog = { rank, ranks in
            let logger = logging.logger("leffa-worker", rank: ranks > 1 ? rank : nil)
            return { line in if rank == 0 { logger.line(line) } }
        }
        do { try Worker.run(o, stop: { stopSignal != 0 }) } catch { throw reportError("leffa-worker", error, code: Worker.exitStatus(error)) }
    }
}
