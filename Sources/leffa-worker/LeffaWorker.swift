// leffa-worker: trains the run's current stage from its last valid checkpoint (or the previous
// stage's final weights, or the configured initial weights). Alone, one process; under
// `mpirun -np N`, one of N data-parallel ranks (each holds both UNets; gradients are averaged).
import ArgumentParser
import Foundation
import LeffaTensor
import LeffaDistributed
import LeffaLayers
import LeffaModels
import LeffaTraining
import LeffaRunFormat

/// Set by SIGINT, SIGTERM or SIGUSR1 (a scheduler's warning before preemption, e.g. Slurm's
/// `--signal=USR1@120`): the ranks agree on the next micro-batch boundary, save a checkpoint there
/// and stop.
nonisolated(unsafe) var stopSignal: sig_atomic_t = 0

@main
struct LeffaWorker: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "leffa-worker", abstract: "Train the current stage of a Leffa run (alone or under mpirun).")
    @Option(name: .customLong("run"), help: "The run directory (made by `leffa-coord init`).") var runPath: String
    @Option(help: "Stop cleanly after this step of the current stage, leaving a checkpoint.") var untilStep: Int?
    @Flag(help: "Keep training into the following stages instead of stopping when the current one ends.") var allStages = false
    @Flag(help: "Reduce per-sample gradients in a fixed global order: bit-identical results for any rank count dividing the batch.") var fixedOrder = false
    @Option(help: "Gradient bucket size in MB (default: LEFFA_BUCKET_MB, else 25).") var bucketMb: Int?
    @Option(help: "How gradients are averaged: auto (shared memory when all ranks are on one node, else buckets), shared, or buckets (overlapped MPI all-reduce). Default: LEFFA_REDUCTION, else auto.") var reduction: String?
    @Option(help: "Kernel threads (default: LEFFA_THREADS, else cores ÷ local MPI ranks).") var threads: Int?

    func run() throws {
        if let threads { Parallel.threads = max(1, threads) }
        signal(SIGINT) { _ in stopSignal = 1 }
        signal(SIGTERM) { _ in stopSignal = 1 }
        signal(SIGUSR1) { _ in stopSignal = 1 }
        let context: MPIContext
        do { context = try MPIContext.start() } catch {
            FileHandle.standardError.write(Data("leffa-worker: error: cannot start MPI: \(error)\n".utf8))
            throw ExitCode(1)
        }
        let log: (String) -> Void = { line in
            if context.rank == 0 { FileHandle.standardError.write(Data((line + "\n").utf8)) }
        }
        do {
            let dir = RunDirectory(runPath)
            // Rank 0 holds the run's worker lock while it lives: `stage advance`/`set`, another
            // worker or `leffa-coord run` on any node see the run as live (RunLock.swift).
            _ = try dir.readState()   // no run here: say so before taking a lock in it
            let lock = context.rank == 0 ? try RunLock.acquire(dir, .worker) : nil
            defer { lock?.release() }
            let fixed = fixedOrder, bucket = bucketMb.map { $0 << 20 }
            let method = try reduction.map { try GradientReduction.parse($0, source: "--reduction") } ?? GradientReduction.fromEnvironment()
            var said = false
            // The ranks of a node keep one copy of the weights, moments and EMA (when there is room).
            let make: ((LeffaModel, Bool) throws -> Collective)? = context.isDistributed ? { model, ema in
                let c = try MPICollective(context: context, parameters: model.parameters, shareState: true, ema: ema, fixedOrder: fixed,
                                          bucketBytes: bucket, reduction: method)
                if !said { log("leffa-worker: \(c.summary)"); said = true }
                return c
            } : nil
            if context.rank == 0 && context.isDistributed { log("leffa-worker: \(context.size) ranks, \(Parallel.threads) kernel thread(s) each\(fixed ? ", fixed reduction order" : "")") }
            let env = ProcessInfo.processInfo.environment
            let share = Parallel.fairShare(environment: env, cores: ProcessInfo.processInfo.activeProcessorCount)
            if threads == nil, env["LEFFA_THREADS"] == nil, let allowed = Parallel.allowedCPUs(), allowed < share {
                log("leffa-worker: note: rank 0 may run on only \(allowed) CPU(s), not the \(share) that are its share of this node "
                    + "(mpirun binds each rank to one core when -np ≤ 2), so it uses \(Parallel.threads) kernel thread(s); "
                    + "launch with `mpirun --bind-to none` or `--map-by slot:PE=\(share)` to use them all")
            }
            while true {
                let trainer = try Trainer(run: dir, collective: make, log: log)
                trainer.stopRequested = { stopSignal != 0 }
                let outcome = try trainer.train(untilStep: untilStep, fixedOrder: fixedOrder)
                guard case .stageFinished(let next) = outcome, allStages, next != nil, stopSignal == 0 else { break }
            }
            context.finalize()
        } catch {
            // Any rank's error stops every rank: nothing hangs waiting for a rank that left.
            if context.isDistributed { context.abort("\(error)") }
            FileHandle.standardError.write(Data("leffa-worker: error: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
