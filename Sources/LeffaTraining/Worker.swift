// What `leffa-worker` does once its arguments are parsed: join the MPI job (or run alone), take
// the run's worker lock on rank 0, choose how gradients are averaged, and train the current stage
// (or every remaining stage) until it ends or a stop is asked for. Any rank's error ends every
// rank: nothing hangs waiting for a rank that left.
import Foundation
import LeffaTensor
import LeffaDistributed
import LeffaModels
import LeffaRunFormat

public enum Worker {
    public struct Options {
        public var run: String
        /// Stop cleanly after this step of the current stage, leaving a checkpoint.
        public var untilStep: Int?
        /// Go on into the following stages instead of stopping when the current one ends.
        public var allStages = false
        public var fixedOrder = false
        /// Gradient bucket size in bytes (nil: LEFFA_BUCKET_MB, else 25 MB).
        public var bucketBytes: Int?
        /// nil: LEFFA_REDUCTION, else auto.
        public var reduction: GradientReduction?
        /// Go on when the data changed since the run recorded it (RunDirectory.checkData).
        public var acceptDataChange = false
        /// The log of rank `rank` of `ranks` (nil: rank 0's lines to stderr, as they are).
        public var makeLog: ((_ rank: Int, _ ranks: Int) -> (String) -> Void)? = nil
        /// Whether the thread count was given (then no note about CPU binding).
        public var threadsGiven = false
        public init(run: String) { self.run = run }
    }

    /// Trains as `options` say; `stop` is polled between micro-batches and steps (signals).
    /// Throws (after aborting the other ranks) on any error; prints to stderr on rank 0.
    public static func run(_ options: Options, stop: @escaping () -> Bool) throws {
        let context: MPIContext
        do { context = try MPIContext.start() } catch { throw RunFailed("cannot start MPI: \(error)") }
        let log: (String) -> Void =
            options.makeLog?(context.rank, context.size) ?? { line in
                if context.rank == 0 { fputs(line + "\n", stderr) }
            }
        // The collectives of the stage being trained, held here so that an error never releases
        // them: their teardown (MPI_Win_free, MPI_Comm_free, joining the reducer's thread) is
        // collective, and on a rank that fails alone it would wait for the others for ever, before
        // the error is printed. A failing rank aborts the job with them still alive; a stage that
        // ends well releases them on every rank at the same point.
        var live: [Collective] = []
        do {
            let dir = RunDirectory(options.run)
            // Rank 0 holds the run's worker lock while it lives: `stage advance`/`set`, another
            // worker or `leffa-coord run` on any node see the run as live (RunLock.swift).
            let state = try dir.readState() // no run here: say so before taking a lock in it
            // Before any rank loads anything: every rank sees the same config and says the same.
            let config = try dir.readConfig()
            if let i = config.stages.firstIndex(where: { $0.name == state.stage }) {
                try config.checkRanks(context.size, fromStage: i, source: dir.configURL.path)
            }
            let lock = context.rank == 0 ? try RunLock.acquire(dir, .worker) : nil
            defer { lock?.release() }
            let method = try options.reduction ?? GradientReduction.fromEnvironment()
            var said = false
            // The ranks of a node keep one copy of the weights, moments and EMA (when there is room).
            let make: ((LeffaModel, Bool) throws -> Collective)? =
                context.isDistributed
                ? { model, ema in
                    let c = try MPICollective(
                        context: context, parameters: model.parameters, shareState: true, ema: ema,
                        fixedOrder: options.fixedOrder, bucketBytes: options.bucketBytes, reduction: method)
                    if !said { log("leffa-worker: \(c.summary)"); said = true }
                    live.append(c)
                    return c
                } : nil
            if context.rank == 0 && context.isDistributed {
                log(
                    "leffa-worker: \(context.size) ranks, \(Parallel.threads) kernel thread(s) each, OpenBLAS \(BLASKernels.coreName), attention \(AttentionKernels.current.rawValue)"
                        + (options.fixedOrder ? ", fixed reduction order" : ""))
            }
            if !options.threadsGiven { noteCPUBinding(log) }
            while true {
                let trainer = try Trainer(run: dir, collective: make, log: log)
                trainer.stopRequested = stop
                trainer.acceptDataChange = options.acceptDataChange
                let outcome = try trainer.train(untilStep: options.untilStep, fixedOrder: options.fixedOrder)
                live.removeAll()
                if case .stopped(let step) = outcome, context.rank == 0 {
                    // Not running any more, and nothing wrong: ready to resume.
                    let why = stop() ? "a stop was requested" : "--until-step \(options.untilStep ?? step)"
                    try dir.updateState { $0.setStatus(.ready, reason: "stopped at step \(step) of stage \($0.stage) (\(why))") }
                }
                guard case .stageFinished(let next) = outcome, options.allStages, next != nil, !stop() else { break }
            }
            context.finalize()
        } catch {
            // The status tells the coordinator whether to restart (ExitStatus); the coordinator
            // records the cause from the printed line.
            let code = exitStatus(error)
            if context.isDistributed { context.abort("\(error)", code: code) }
            throw error
        }
    }

    /// Bad input (1) unless MPI itself failed to set up (3: a relaunch may work).
    public static func exitStatus(_ error: Error) -> Int32 {
        if case DistributedError.setup = error { return ExitStatus.runFailed }
        return ExitStatus.of(error)
    }

    /// mpirun binds each rank to one core when -np ≤ 2: say so when that leaves kernel threads idle.
    static func noteCPUBinding(_ log: (String) -> Void) {
        let env = ProcessInfo.processInfo.environment
        let share = Parallel.fairShare(environment: env, cores: ProcessInfo.processInfo.activeProcessorCount)
        guard env["LEFFA_THREADS"] == nil, let allowed = Parallel.allowedCPUs(), allowed < share else { return }
        log(
            "leffa-worker: note: rank 0 may run on only \(allowed) CPU(s), not the \(share) that are its share of this node "
                + "(mpirun binds each rank to one core when -np ≤ 2), so it uses \(Parallel.threads) kernel thread(s); "
                + "launch with `mpirun --bind-to none` or `--map-by slot:PE=\(share)` to use them all")
    }
}
