// Weights of a run outside the training loop: a stage's final weights written from one of its
// checkpoints (what `stage advance` does), and a model filled from a stage's final weights or a
// checkpoint step (what `export` and `sample` start from). Not the loop's own checkpointing
// (Trainer) and not the run state (LeffaRun).
import Foundation
import LeffaTensor
import LeffaModels
import LeffaCheckpoint

public enum StageWeights {
    /// The flat layout of a model's parameters, as the trainer writes it into checkpoints.
    public static func layout(_ model: LeffaModel) -> [FlatEntry] {
        model.parameters.all.map { FlatEntry(name: $0.name, offset: $0.offset, shape: $0.shape) }
    }

    /// The final-weights file of a stage: `final.safetensors` or, for the EMA, `final-ema.safetensors`.
    public static func finalURL(_ run: RunDirectory, stage: String, ema: Bool) -> URL {
        ema ? run.stageURL(stage).appendingPathComponent("final-ema.safetensors") : run.finalWeightsURL(stage)
    }

    /// Ends `stage` at its newest valid checkpoint: writes its params as the stage's
    /// final.safetensors (and its EMA, when present, as final-ema.safetensors). Returns the step.
    /// A damaged newest checkpoint is skipped (and moved aside) like the trainer does.
    @discardableResult
    public static func writeFinal(run: RunDirectory, config: RunConfig, stage: String, log: (String) -> Void = { _ in }) throws -> Int {
        let model = try LeffaModel(config: config.model, seed: config.seed)
        let values = model.parameters.values!, lay = layout(model)
        let ckpts = try CheckpointDirectory(run.checkpointsURL(stage), keepLast: 0)
        var ema: Tensor? = nil, emaUpdates: Int64? = nil
        guard let found = try ckpts.latestValid({ r -> Int in
            if case .int64(let u)? = r.meta[CheckpointNames.emaUpdates] { emaUpdates = u } else { emaUpdates = nil }
            try r.readGroup(CheckpointNames.params, into: values, layout: lay)
            if r.groupPaths.contains(CheckpointNames.ema) {
                let e = Tensor(zeros: [values.count])
                try r.readGroup(CheckpointNames.ema, into: e, layout: lay)
                ema = e
            } else { ema = nil }
            return Int(try r.int64(CheckpointNames.step))
        }) else {
            for w in ckpts.warnings { log("warning: \(w)") }
            throw RunError("\(ckpts.url.path): stage \(stage) has no valid checkpoint to end at; train it for at least checkpoint_every (\(config.checkpointEvery)) steps, or use `stage set` to skip it deliberately")
        }
        for w in ckpts.warnings { log("warning: \(w)") }
        let meta = ["stage": stage, "step": "\(found.value)", "from": found.url.lastPathComponent]
        try model.saveWeights(to: finalURL(run, stage: stage, ema: false).path, metadata: meta)
        if let ema {
            values.data.update(from: ema.data, count: values.count)
            // The update count goes along: a next stage with `ema_start: carry` goes on from it.
            var emaMeta = meta.merging(["ema": "true"]) { $1 }
            if let emaUpdates { emaMeta[CheckpointNames.emaUpdates] = "\(emaUpdates)" }
            try model.saveWeights(to: finalURL(run, stage: stage, ema: true).path, metadata: emaMeta)
        }
        return found.value
    }

    /// A model holding a stage's weights: its final weights (step nil) or checkpoint `step`
    /// (params, or the EMA group with `ema`). Returns the model and a description of the source.
    public static func load(run: RunDirectory, config: RunConfig, stage: String, step: Int?, ema: Bool) throws -> (LeffaModel, String) {
        let model = try LeffaModel(config: config.model, seed: config.seed)
        guard let step else {
            let url = finalURL(run, stage: stage, ema: ema)
            guard FileManager.default.fileExists(atPath: url.path) else {
                let why = ema && config.ema == nil ? " (the config has no training.ema_decay, so there is no EMA)" : ""
                throw RunError("\(url.path): stage \(stage) has no final\(ema ? " EMA" : "") weights\(why); finish the stage (`leffa-coord run` or `stage advance`) or pass --step N of one of its checkpoints")
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
        let group = ema ? CheckpointNames.ema : CheckpointNames.params
        guard reader.groupPaths.contains(group) else {
            throw RunError("\(url.path): no group '\(group)' in this checkpoint (groups: \(reader.groupPaths))")
        }
        try reader.readGroup(group, into: model.parameters.values!, layout: layout(model))
        return (model, "\(url.path) (\(group))")
    }
}
