// Weights of a run outside the training loop: a stage's final weights written from one of its
// checkpoints (what `stage advance` does), and a model filled from a stage's final weights or a
// checkpoint step (what `export` and `sample` start from). Checkpoints are read through
// TrainingCheckpoint; the file names are RunDirectory's.
import Foundation
import LeffaTensor
import LeffaLayers
import LeffaModels
import LeffaCheckpoint
import SafeTensors

public enum StageWeights {
    /// The flat layout of a model's parameters, as the trainer writes it into checkpoints.
    public static func layout(_ model: LeffaModel) -> [FlatEntry] {
        model.parameters.all.map { FlatEntry(name: $0.name, offset: $0.offset, shape: $0.shape) }
    }

    /// Metadata of a final EMA file: the update count goes along, so a next stage with
    /// `ema_start: carry` goes on from it.
    public static func emaMetadata(_ meta: [String: String], updates: Int?) -> [String: String] {
        var m = meta.merging(["ema": "true"]) { $1 }
        if let updates { m[CheckpointNames.emaUpdates] = "\(updates)" }
        return m
    }

    /// Writes a model's weights as `stage`'s final weights, and `ema`, when given, as its final EMA.
    public static func saveFinal(
        _ model: LeffaModel, ema: Tensor?, emaUpdates: Int?, run: RunDirectory, stage: String,
        metadata meta: [String: String]
    ) throws {
        let weights = run.finalWeightsURL(stage)
        try model.saveWeights(to: weights.path, metadata: meta)
        guard let ema else { return }
        do {
            try withEMAWeights(model.parameters.values!, ema) {
                try model.saveWeights(
                    to: run.finalWeightsURL(stage, ema: true).path, metadata: emaMetadata(meta, updates: emaUpdates))
            }
        } catch {
            // Both or neither: a final.safetensors alone would look like a finished stage.
            unlink(weights.path)
            throw error
        }
    }

    /// Ends `stage` at its newest valid checkpoint: writes its params as the stage's
    /// final.safetensors (and its EMA, when present, as final-ema.safetensors). Returns the step.
    /// A damaged newest checkpoint is skipped (and moved aside) like the trainer does.
    @discardableResult
    public static func writeFinal(run: RunDirectory, config: RunConfig, stage: String, log: (String) -> Void = { _ in })
        throws -> Int
    {
        let model = try LeffaModel(config: config.model, seed: config.seed)
        let values = model.parameters.values!, lay = layout(model)
        let ckpts = try CheckpointDirectory(run.checkpointsURL(stage), keepLast: 0)
        var ema: Tensor? = nil
        guard
            let found = try ckpts.latestValid({ r -> TrainingCheckpoint.Counters in
                try TrainingCheckpoint.read(r, .params, into: values, layout: lay)
                ema = nil
                if TrainingCheckpoint.has(r, .ema) {
                    let e = Tensor(zeros: [values.count])
                    try TrainingCheckpoint.read(r, .ema, into: e, layout: lay)
                    ema = e
                }
                return try TrainingCheckpoint.counters(r)
            })
        else {
            for w in ckpts.warnings { log("warning: \(w)") }
            throw RunError(
                "\(ckpts.url.path): stage \(stage) has no valid checkpoint to end at; train it for at least checkpoint_every (\(config.checkpointEvery)) steps, or use `stage set` to skip it deliberately"
            )
        }
        for w in ckpts.warnings { log("warning: \(w)") }
        let step = found.value.step
        try saveFinal(
            model, ema: ema, emaUpdates: found.value.emaUpdates, run: run, stage: stage,
            metadata: ["stage": stage, "step": "\(step)", "from": found.url.lastPathComponent])
        return step
    }

    /// The model of a run's stage, or by default of its last completed stage (with `step`, else
    /// the current one). Returns the stage's name, the model and where its weights came from.
    public static func load(run: RunDirectory, config: RunConfig, stage: String?, step: Int?, ema: Bool) throws -> (
        String, LeffaModel, String
    ) {
        let state = try run.readState()
        let name: String
        if let stage {
            guard config.stages.contains(where: { $0.name == stage }) else {
                throw RunError("--stage: no stage named \(stage); the config's stages are \(config.stages.map(\.name))")
            }
            name = stage
        } else if let last = config.stages.last(where: { state.completedStages.contains($0.name) }) {
            name = last.name
        } else {
            guard step != nil else {
                throw RunError(
                    "\(run.stateURL.path): no stage is completed yet; pass --stage S --step N to use a checkpoint")
            }
            name = state.stage
        }
        let (model, source) = try load(run: run, config: config, stage: name, step: step, ema: ema)
        return (name, model, source)
    }

    /// The step a stage's final weights were written at (their metadata `step`); nil when the file
    /// is missing or older than that field.
    public static func finalStep(run: RunDirectory, stage: String, ema: Bool) -> Int? {
        (try? SafeTensorsFile(url: run.finalWeightsURL(stage, ema: ema)))?.metadata["step"].flatMap { Int($0) }
    }

    /// A model holding a stage's weights: its final weights (step nil) or checkpoint `step`
    /// (params, or the EMA group with `ema`). Returns the model and a description of the source.
    public static func load(run: RunDirectory, config: RunConfig, stage: String, step: Int?, ema: Bool) throws -> (
        LeffaModel, String
    ) {
        let model = try LeffaModel(config: config.model, seed: config.seed)
        guard let step else {
            let url = run.finalWeightsURL(stage, ema: ema)
            guard FileManager.default.fileExists(atPath: url.path) else {
                let why = ema && config.ema == nil ? " (the config has no training.ema_decay, so there is no EMA)" : ""
                throw RunError(
                    "\(url.path): stage \(stage) has no final\(ema ? " EMA" : "") weights\(why); finish the stage (`leffa-coord run` or `stage advance`) or pass --step N of one of its checkpoints"
                )
            }
            try model.loadWeights(from: url.path)
            return (model, url.path)
        }
        let dir = try CheckpointDirectory(run.checkpointsURL(stage), keepLast: 0)
        let url = dir.url(step: step)
        guard FileManager.default.fileExists(atPath: url.path) else {
            let have = (try? dir.checkpoints().map(\.step)) ?? []
            throw RunError("\(url.path): stage \(stage) has no checkpoint at step \(step); it has steps \(have)")
        }
        let reader = try CheckpointReader(url: url)
        defer { reader.close() }
        let block: TrainingCheckpoint.Block = ema ? .ema : .params
        guard TrainingCheckpoint.has(reader, block) else {
            throw RunError("\(url.path): no group '\(block.group)' in this checkpoint (groups: \(reader.groupPaths))")
        }
        try TrainingCheckpoint.read(reader, block, into: model.parameters.values!, layout: layout(model))
        return (model, "\(url.path) (\(block.group))")
    }
}
