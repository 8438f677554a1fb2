// Which weights a command samples with: a run's stage (final weights or a checkpoint step, EMA or
// trained), or a weights file in the published layout with the run config that describes it.
// Shared by `sample` and `eval`.
import ArgumentParser
import LeffaCLI
import Foundation
import LeffaModels
import LeffaRunFormat

struct ModelSource: ParsableArguments {
    @Option(name: .customLong("run"), help: "A run directory (its config and a stage's weights).") var runPath: String?
    @Option(help: "Stage (default: the last completed stage; with --weights, the config's last stage).") var stage:
        String?
    @Option(help: "A checkpoint step of the stage instead of its final weights.") var step: Int?
    @Flag(help: "The EMA weights.") var ema = false
    @Option(help: "Weights in the published layout (instead of --run).") var weights: String?
    @Option(help: "Run config (YAML) for --weights: model sizes, space, data and stage resolutions.") var config:
        String?

    /// The config, the model with its weights, where they came from, and the stage.
    func load() throws -> (config: RunConfig, model: LeffaModel, source: String, stage: StageConfig) {
        if let runPath {
            let dir = RunDirectory(runPath)
            let cfg = try dir.readConfig()
            let (name, model, source) = try StageWeights.load(run: dir, config: cfg, stage: stage, step: step, ema: ema)
            return (cfg, model, source, cfg.stages.first { $0.name == name }!)
        }
        guard let weights, let config else { throw RunError("pass --run DIR, or --weights FILE with --config FILE") }
        let cfg = try RunConfig.load(path: config)
        let name = stage ?? cfg.stages.last!.name
        guard let st = cfg.stages.first(where: { $0.name == name }) else {
            throw RunError("--stage: no stage named \(name); \(config) has \(cfg.stages.map(\.name))")
        }
        let model = try LeffaModel(config: cfg.model, seed: cfg.seed)
        do { try model.loadWeights(from: weights) } catch {
            throw RunError("\(weights): cannot load as weights of the model \(config) describes: \(error)")
        }
        return (cfg, model, weights, st)
    }
}
