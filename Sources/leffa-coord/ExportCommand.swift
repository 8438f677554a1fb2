// `leffa-coord export`: a stage's weights for inference, in the published layout or as diffusers
// folders. Argument parsing only; the logic is LeffaTraining's StageWeights and Export.
import ArgumentParser
import Foundation
import LeffaModels
import LeffaRunFormat

extension ExportFormat: ExpressibleByArgument {}

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Write a stage's weights for inference (leffa file or diffusers folders).")
    @Option(name: .customLong("run"), help: "The run directory.") var runPath: String
    @Option(help: "Stage (default: the last completed stage).") var stage: String?
    @Option(help: "A checkpoint step of the stage instead of its final weights.") var step: Int?
    @Flag(help: "The EMA weights instead of the trained ones.") var ema = false
    @Option(help: "leffa (one safetensors file, published names) or diffusers (folders).") var format: ExportFormat = .leffa
    @Option(help: "Output file (leffa) or folder (diffusers).") var out: String

    func run() throws {
        do {
            let dir = RunDirectory(runPath)
            let config = try dir.readConfig()
            let (name, model, source) = try loadStageModel(dir, config: config, stage: stage, step: step, ema: ema)
            let st = config.stages.first { $0.name == name }!
            let side = config.space == .latent ? st.height / config.model.vae.downscale : st.height
            try model.export(format: format, to: out, sampleSize: side, metadata: ["stage": name, "source": source, "run": dir.url.path,
                                                                                       "prediction_type": config.prediction.rawValue])
            print("exported stage \(name) from \(source) as \(format.rawValue) to \(out)")
        } catch { throw userError(error) }
    }
}

/// The model of a run's stage (default: the last completed one, else the current one).
func loadStageModel(_ dir: RunDirectory, config: RunConfig, stage: String?, step: Int?, ema: Bool) throws -> (String, LeffaModel, String) {
    let state = try dir.readState()
    let name: String
    if let stage {
        guard config.stages.contains(where: { $0.name == stage }) else {
            throw RunError("--stage: no stage named \(stage); the config's stages are \(config.stages.map(\.name))")
        }
        name = stage
    } else if let last = config.stages.last(where: { state.completedStages.contains($0.name) }) {
        name = last.name
    } else {
        guard step != nil else { throw RunError("\(dir.stateURL.path): no stage is completed yet; pass --stage S --step N to use a checkpoint") }
        name = state.stage
    }
    let (model, source) = try StageWeights.load(run: dir, config: config, stage: name, step: step, ema: ema)
    return (name, model, source)
}
