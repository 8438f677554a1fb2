// The training loop of one stage. Rank-independent by construction: the global batch of step s
// is positions s·B ..< (s+1)·B of the stage's seeded sample order, each rank takes an interleaved
// share, every random draw is keyed by (seed, step, position), gradients are summed over ranks,
// and only rank 0 writes (checkpoints, snapshots, validation samples, metrics, TensorBoard events,
// state) while the others wait.
import Foundation
import LeffaTensor
import LeffaLayers
import LeffaModels
import LeffaDiffusion
import LeffaData
import LeffaCheckpoint
import SafeTensors
import LeffaRunFormat

public final class Trainer {
    public let run: RunDirectory
    public let config: RunConfig
    public let collective: Collective
    public let model: LeffaModel
    public let optimizer: AdamW
    /// The exponential moving average of the weights (nil without `ema_decay`).
    public private(set) var ema: Tensor?
    /// EMA updates made before this stage: 0, or with `ema_start: carry` the count the previous
    /// stage's final EMA ended at. Update `emaUpdatesBefore + step` is the stage's step-th (EMA.swift).
    public private(set) var emaUpdatesBefore = 0
    /// When rank 0 last wrote the heartbeat.
    var lastBeat = Date.distantPast
    public private(set) var stageIndex: Int
    public var stage: StageConfig { config.stages[stageIndex] }
    /// Optimizer steps completed in the current stage.
    public private(set) var step = 0
    let log: (String) -> Void
    let layout: [FlatEntry]
    /// Polled between micro-batches and after each step (a SIGINT/SIGTERM/SIGUSR1 flag): when
    /// any rank says stop, every rank stops at the same point, saves a checkpoint and returns
    /// `.stopped`. Between micro-batches the partial step is dropped: its gradients are thrown
    /// away, the checkpoint holds the state after the last whole step, and resuming redoes the
    /// step from its first micro-batch — every draw is keyed by (seed, step, position), so the
    /// redone step is the same bits.
    public var stopRequested: () -> Bool = { false }
    /// Go on when the data changed since the run recorded it (RunDirectory.checkData).
    public var acceptDataChange = false
    /// When rank 0 last saved (or restored) a checkpoint: `checkpoint_every_minutes` counts from it.
    var lastCheckpointTime = Date()
    /// Rank 0's TensorBoard stream of the stage being trained (TrainingBoard.swift).
    var board: TrainingBoard?

    /// `collective` makes the processes' collectives for the model, with room for an EMA when its
    /// second argument is true (nil: one process). It comes before the gradients, moments and EMA
    /// exist: it may place them, and the weights, in memory the ranks of a node share.
    public init(
        run: RunDirectory, collective makeCollective: ((LeffaModel, Bool) throws -> Collective)? = nil,
        log: @escaping (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
    ) throws {
        self.run = run
        self.log = log
        let state = try run.readState()
        config = try run.readConfig()
        try run.checkConfigUnedited(config)
        if state.status == .done {
            throw RunError(
                "\(run.stateURL.path): the run is complete (all stages done); export it with `leffa-coord export`")
        }
        guard let i = config.stages.firstIndex(where: { $0.name == state.stage }) else {
            throw RunError(
                "\(run.stateURL.path): field stage is \(state.stage), expected one of the config's stages \(config.stages.map(\.name))"
            )
        }
        stageIndex = i
        let m = try LeffaModel(config: config.model, seed: config.seed)
        let parts = config.train.flatMap { m.parameters(of: $0) }
        m.parameters.freeze(except: parts)
        layout = m.parameters.all.map { FlatEntry(name: $0.name, offset: $0.offset, shape: $0.shape) }
        model = m
        let c = try makeCollective?(m, config.ema != nil) ?? SingleProcess()
        collective = c
        let shared = c.sharedState
        // A shared state updates the EMA only in each rank's shard: it must hold the EMA itself.
        precondition(
            shared == nil || (shared?.ema != nil) == (config.ema != nil),
            "Trainer: the collective's shared state has no EMA block")
        optimizer = AdamW(
            parameters: m.parameters, training: parts, config: config.adam, moments: shared.map { ($0.m, $0.v) })
        if config.ema != nil {
            ema = Tensor(shape: [m.parameters.count], storage: shared?.ema ?? Storage(count: m.parameters.count))
        }
        // Rank 0 looks first and moves damaged checkpoints aside; the others then read a folder
        // that no longer changes under them (and never rename anything themselves). Where the
        // ranks of a node share one copy of the state, only one of them loads it, and the
        // counters come from rank 0.
        // Reading and verifying a checkpoint can take minutes at SD1.5 size: no watchdog meanwhile.
        try collective.patiently {
            if collective.rank == 0 { try restore() }
            collective.barrier()
            if collective.rank != 0 && shared?.loads != false { try restore() }
            let counters = collective.broadcast([Int64(step), Int64(optimizer.step), Int64(emaUpdatesBefore)])
            step = Int(counters[0]); optimizer.step = Int(counters[1]); emaUpdatesBefore = Int(counters[2])
            collective.publishState()
            // Every rank must start from the same weights and config (and so stay in lockstep).
            try collective.verifyIdentical(config.text, what: "config")
            try collective.verifyIdentical(m.parameters.values!, what: "weights")
        }
    }

    // MARK: Starting point

    /// The newest valid checkpoint of this stage; else the previous stage's final weights; else the
    /// configured initial weights; else the seeded random initialisation. Writes the whole state
    /// (weights, moments, EMA) and sets the counters.
    func restore() throws {
        let dir = try CheckpointDirectory(run.checkpointsURL(stage.name), keepLast: config.keepCheckpoints)
        dir.movesDamagedAside = collective.rank == 0
        let values = model.parameters.values!
        if let found = try dir.latestValid({ reader -> TrainingCheckpoint.Counters in
            try TrainingCheckpoint.read(reader, .params, into: values, layout: layout)
            try TrainingCheckpoint.read(reader, .adamM, into: optimizer.m, layout: layout)
            try TrainingCheckpoint.read(reader, .adamV, into: optimizer.v, layout: layout)
            if let ema { try TrainingCheckpoint.read(reader, .ema, into: ema, layout: layout) }
            return try TrainingCheckpoint.counters(reader)
        }) {
            for w in dir.warnings { log("warning: \(w)") }
            step = found.value.step
            optimizer.step = found.value.adamStep
            // Checkpoints from before `ema_start` counted from the stage's first step.
            emaUpdatesBefore = found.value.emaUpdates.map { $0 - step } ?? 0
            log("resuming stage \(stage.name) at step \(step) from \(found.url.lastPathComponent)")
            return
        }
        for w in dir.warnings { log("warning: \(w)") }
        if !dir.warnings.isEmpty {
            // Every checkpoint was damaged, and a damaged one may have been partly read into the
            // blocks before its damage showed: start again from the seeded initial state.
            let fresh = try LeffaModel(config: config.model, seed: config.seed)
            values.data.update(from: fresh.parameters.values!.data, count: values.count)
            optimizer.m.data.update(repeating: 0, count: optimizer.m.count)
            optimizer.v.data.update(repeating: 0, count: optimizer.v.count)
            optimizer.step = 0
        }
        emaUpdatesBefore = 0
        var carried = false
        if stageIndex > 0 {
            let prev = config.stages[stageIndex - 1].name
            let url = run.finalWeightsURL(prev)
            guard FileManager.default.fileExists(atPath: url.path) else {
                throw RunError(
                    "\(url.path): stage \(stage.name) starts from stage \(prev)'s final weights, which are missing; finish \(prev) first"
                )
            }
            if let ema, config.ema?.start == .carry {
                // The previous stage's final EMA, read through the weights block (then overwritten).
                emaUpdatesBefore = try carriedEMA(from: prev)
                try model.loadWeights(from: run.finalWeightsURL(prev, ema: true).path)
                ema.data.update(from: values.data, count: values.count)
                carried = true
            }
            try model.loadWeights(from: url.path)
            log(
                "stage \(stage.name) starts from \(prev)'s final weights"
                    + (carried ? ", its EMA from \(prev)'s final EMA (\(emaUpdatesBefore) updates)" : ""))
        } else if let (kind, path) = config.initFrom {
            let p = resolve(path)
            if kind == "leffa" { try model.loadWeights(from: p) } else { try model.importDiffusers(folder: p) }
            log("initial weights from \(kind) \(p)")
        } else {
            log("initial weights: random (seed \(config.seed))")
        }
        if !carried { ema?.data.update(from: values.data, count: values.count) }
    }

    /// `ema_start: carry`: the update count stage `prev`'s final EMA ended at (its metadata), after
    /// checking the file is there.
    func carriedEMA(from prev: String) throws -> Int {
        let url = run.finalWeightsURL(prev, ema: true)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw RunError(
                "\(url.path): stage \(stage.name) carries on stage \(prev)'s EMA (training.ema_start: carry), but its final EMA weights are missing; finish \(prev) again, or set ema_start: fresh"
            )
        }
        let meta = try SafeTensorsFile(path: url.path).metadata
        guard let u = meta[CheckpointNames.emaUpdates].flatMap(Int.init), u >= 0 else {
            throw RunError(
                "\(url.path): metadata field \(CheckpointNames.emaUpdates) is \(meta[CheckpointNames.emaUpdates] ?? "missing"), expected the EMA's update count (files written before ema_start existed lack it); set training.ema_start: fresh"
            )
        }
        return u
    }

    /// Paths in the config are relative to the run directory.
    func resolve(_ path: String) -> String { run.resolve(path) }

    // MARK: The loop

    public enum Outcome: Equatable { case stageFinished(next: String?), stopped(atStep: Int) }

    /// Trains until the stage's last step (or `untilStep`), checkpointing on the way.
    public func train(untilStep: Int? = nil, fixedOrder: Bool = false) throws -> Outcome {
        let dataset = config.openDataset(root: URL(fileURLWithPath: resolve(config.dataRoot)))
        let problems = dataset.check(CheckOptions(decodeImages: false))
        if !problems.errors.isEmpty {
            throw RunError(
                "data at \(resolve(config.dataRoot)) has \(problems.errors.count) problem(s); run `leffa-coord check-data` for the full list:\n"
                    + Array(problems.errors.prefix(5)).report)
        }
        if dataset.count == 0 { throw RunError("data at \(resolve(config.dataRoot)): no samples (empty pairs file?)") }
        // The same data as the checkpoints saw (rank 0 looks; its error ends every rank).
        if collective.rank == 0, let line = try run.checkData(config, accept: acceptDataChange) { log(line) }
        try config.checkRanks(collective.size, fromStage: stageIndex, source: run.configURL.path)
        let builder = BatchBuilder(dataset: dataset, config: config, model: model, cacheRoot: Prepare.cacheURL(run))
        let objective = TrainingObjective(
            leffa: stage.leffa, prediction: config.prediction, activationCheckpointing: config.activationCheckpointing)
        let isRoot = collective.rank == 0
        if isRoot {
            try rewindLogs()
            board = try TrainingBoard(run: run, stage: stage.name, warn: log)
        }
        let metrics = isRoot ? try MetricsLog(url: run.metricsURL(stage.name)) : nil
        var validation: ValidationSet? = nil
        if config.validation.enabled {
            let v = try ValidationSet.open(
                config: config, root: URL(fileURLWithPath: resolve(config.dataRoot)), stage: stage)
            if isRoot {
                log(
                    "validation: the first \(v.count) pair(s) of the \(v.split) split every \(config.validation.every) steps and at step \(stage.steps)"
                )
            }
            validation = v
        }
        let validationLog = isRoot && validation != nil ? try MetricsLog(url: run.validationLogURL(stage.name)) : nil
        let ckpt = try CheckpointDirectory(run.checkpointsURL(stage.name), keepLast: config.keepCheckpoints)
        let ddp = DataParallel(collective: collective, parameters: model.parameters, fixedOrder: fixedOrder)
        let last = min(stage.steps, untilStep ?? stage.steps)
        let started = Date(), startStep = step
        lastCheckpointTime = started
        if isRoot { try setStatus(.running, reason: nil) }

        while step < last {
            let t0 = Date()
            let b = stage.batch
            let micro = ddp.microBatches(of: Array((step * b)..<((step + 1) * b)), accumulation: stage.gradAccum)
            ddp.zeroGrad()
            var losses = StepSums()
            for mb in micro {
                if !mb.isFirst && collective.allReduceSum([stopRequested() ? 1 : 0])[0] > 0 {
                    return try stopBetweenMicroBatches(after: mb.index, of: micro.count, ddp, ckpt)
                }
                if mb.positions.isEmpty { continue }
                let (batch, _) = try builder.batch(
                    step: step, positions: mb.positions, stage: stage, stageIndex: stageIndex)
                let l = try objective.loss(model, batch)
                ddp.backward(l.total, mb)
                losses.add(l, share: mb.share)
                beat(phase: "training")
            }
            ddp.finishGradients()
            // Rank 0's clock decides the time-based checkpoint, so every rank agrees.
            let timeDue =
                isRoot
                && config.checkpointEveryMinutes.map { Date().timeIntervalSince(lastCheckpointTime) >= $0 * 60 } == true
            let agreed = losses.agreed(over: collective, stop: stopRequested(), checkpointDue: timeDue)
            let stopping = agreed.stop, checkpointDue = agreed.checkpointDue
            guard agreed.loss.isFinite else {
                let why =
                    "stage \(stage.name) step \(step + 1): the loss is \(agreed.loss) (diffusion \(agreed.diffusion)); stopping without saving — the last checkpoint is intact. Lower the learning rate or check the data."
                // Failed, not running: a restart would repeat it bit for bit (same seed, same data).
                if isRoot { try? setStatus(.failed, reason: why) }
                throw RunFailed(why)
            }
            let lr = learningRate(step: step)
            let gradNorm = ddp.step(
                optimizer, lr: lr, maxNorm: config.gradClip,
                ema: ema, emaDecay: config.ema?.decay(update: emaUpdatesBefore + step + 1)
            ).gradNorm
            step += 1

            if isRoot {
                let dt = Date().timeIntervalSince(t0)
                let m = StepMetrics(
                    stage: stage.name, step: step, steps: stage.steps, loss: agreed.loss, diffusion: agreed.diffusion,
                    leffa: agreed.leffa, lr: Double(lr), gradNorm: Double(gradNorm),
                    stepSeconds: dt, imagesPerSecond: Double(b) / dt, time: timestamp(), reduceWaitSeconds: ddp.waited)
                if step % config.logEvery == 0 || step == last {
                    try metrics?.append(m)
                    board?.add(m)
                }
                let rate = Date().timeIntervalSince(started) / Double(step - startStep)
                log(progressLine(m, eta: rate * Double(stage.steps - step)))
                try writeHeartbeat(phase: "training")
            }
            // Rank 0's long writes and the validation sampling: the other ranks wait for them at a
            // barrier without the watchdog (at SD1.5 size they can take longer than its limit).
            if config.snapshotEvery > 0 && (step % config.snapshotEvery == 0 || step == stage.steps) {
                try rootThenBarrier(phase: "snapshot") { try FlowSnapshot.write(trainer: self, builder: builder) }
            }
            // Before the checkpoint, so a checkpoint at a due step implies its samples exist; skipped
            // when stopping early (sampling can take minutes and a stop should be prompt).
            if let validation, config.validation.due(step: step, stageSteps: stage.steps) {
                if stopping && step < stage.steps {
                    log("stop requested: validation at step \(step) skipped")
                } else {
                    try collective.patiently { try validate(validation, log: validationLog) }
                }
            }
            if step % config.checkpointEvery == 0 || step == last || stopping || checkpointDue {
                try rootThenBarrier(phase: "checkpoint") { try saveCheckpoint(ckpt) }
                lastCheckpointTime = Date()
            }
            if stopping && step < stage.steps {
                log("stop requested: checkpoint saved at step \(step) of stage \(stage.name)")
                return .stopped(atStep: step)
            }
        }
        guard step >= stage.steps else { return .stopped(atStep: step) }
        var next: String? = nil
        try rootThenBarrier(phase: "final weights") { next = try finishStage() }
        return .stageFinished(
            next: next ?? (stageIndex + 1 < config.stages.count ? config.stages[stageIndex + 1].name : nil))
    }

    /// All ranks agreed to stop before micro-batch `k` (of `count`) of step `step + 1`: drop the
    /// partial gradients and save the state after step `step` (unless that checkpoint exists).
    func stopBetweenMicroBatches(after k: Int, of count: Int, _ ddp: DataParallel, _ ckpt: CheckpointDirectory) throws
        -> Outcome
    {
        ddp.discardGradients()
        log(
            "stop requested during step \(step + 1) of stage \(stage.name), after micro-batch \(k) of \(count): the partial step is dropped (resuming redoes it)"
        )
        try rootThenBarrier(phase: "checkpoint") {
            if step > 0, !(try ckpt.checkpoints().contains { $0.step == step }) { try saveCheckpoint(ckpt) }
        }
        log("stop requested: checkpoint at step \(step) of stage \(stage.name)")
        return .stopped(atStep: step)
    }

    /// Rank 0 does `body` (a heartbeat names the phase) while the other ranks wait for it at a
    /// barrier, without the watchdog: writes that take minutes at SD1.5 size.
    func rootThenBarrier(phase: String, _ body: () throws -> Void) throws {
        try collective.patiently {
            if collective.rank == 0 { beat(phase: phase, force: true); try body() }
            collective.barrier()
        }
    }

    /// Linear warmup, then constant or cosine decay to zero at the stage's last step.
    public func learningRate(step s: Int) -> Float {
        let st = stage
        if st.warmupSteps > 0 && s < st.warmupSteps { return st.lr * Float(s + 1) / Float(st.warmupSteps) }
        guard st.schedule == "cosine" else { return st.lr }
        let span = max(1, st.steps - st.warmupSteps)
        let p = Float(s - st.warmupSteps) / Float(span)
        return st.lr * 0.5 * (1 + cosf(Float.pi * min(max(p, 0), 1)))
    }

    // MARK: Files

    func saveCheckpoint(_ dir: CheckpointDirectory) throws {
        var blocks: [TrainingCheckpoint.Block: Tensor] = [
            .params: model.parameters.values!, .adamM: optimizer.m, .adamV: optimizer.v
        ]
        blocks[.ema] = ema
        let counters = TrainingCheckpoint.Counters(
            step: step, adamStep: optimizer.step, emaUpdates: ema.map { _ in emaUpdatesBefore + step })
        try TrainingCheckpoint(
            counters: counters, stage: stage.name, stageIndex: stageIndex, dataPosition: step * stage.batch,
            seed: config.seed, config: config.text, runID: (try? run.readState().runID) ?? "", blocks: blocks
        )
        .save(to: dir, layout: layout)
    }

    /// Rank 0's heartbeat (`heartbeat.json`): after every step, and from inside long phases
    /// (`beat`), so the coordinator can tell a slow step or a long validation from a hung worker.
    func writeHeartbeat(phase: String) throws {
        try Heartbeat(stage: stage.name, step: step, steps: stage.steps, ranks: collective.size, phase: phase).write(
            run)
        lastBeat = Date()
    }

    /// A heartbeat from inside a long phase (micro-batches, validation sampling steps), at most every
    /// 10 s; rank 0 only. A failed write is not worth stopping training for: the next one retries.
    func beat(phase: String, force: Bool = false) {
        guard collective.rank == 0, force || Date().timeIntervalSince(lastBeat) > 10 else { return }
        try? writeHeartbeat(phase: phase)
    }

    /// Records the status; a reason (a failure) also goes into the history with the time.
    func setStatus(_ status: RunState.Status, reason: String?) throws {
        try run.updateState { $0.setStatus(status, reason: reason) }
    }

    /// Writes the stage's final weights and moves the run to the next stage (or marks it done).
    func finishStage() throws -> String? {
        try StageWeights.saveFinal(
            model, ema: ema, emaUpdates: emaUpdatesBefore + step, run: run, stage: stage.name,
            metadata: ["stage": stage.name, "step": "\(step)"])
        let next = stageIndex + 1 < config.stages.count ? config.stages[stageIndex + 1].name : nil
        try run.updateState {
            $0.complete(stage.name, next: next, reason: "stage \(stage.name) finished at step \(step)")
        }
        log("stage \(stage.name) finished at step \(step); final weights in \(run.finalWeightsURL(stage.name).path)")
        return next
    }
}

/// A step's losses on this rank, weighted by each micro-batch's share of its samples, and then
/// agreed over ranks in one small sum together with the stop and time-based checkpoint votes.
struct StepSums {
    var total = 0.0, diffusion = 0.0, leffa = 0.0, leffaMicroBatches = 0.0

    mutating func add(_ l: StepLosses, share: Float) {
        total += Double(l.total.item) * Double(share)
        diffusion += Double(l.diffusion.item) * Double(share)
        if let le = l.leffa { leffa += Double(le.item) * Double(share); leffaMicroBatches += 1 }
    }

    struct Agreed { var loss: Double, diffusion: Double, leffa: Double?, stop: Bool, checkpointDue: Bool }

    /// The mean over ranks of the losses, and whether any rank asks to stop or to checkpoint.
    func agreed(over c: Collective, stop: Bool, checkpointDue: Bool) -> Agreed {
        let n = Double(c.size)
        let s = c.allReduceSum([total, diffusion, leffa, leffaMicroBatches, stop ? 1 : 0, checkpointDue ? 1 : 0]).map {
            $0 / n
        }
        return Agreed(
            loss: s[0], diffusion: s[1], leffa: s[3] * n > 0 ? s[2] : nil, stop: s[4] > 0, checkpointDue: s[5] > 0)
    }
}
