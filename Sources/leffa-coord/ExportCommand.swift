// `leffa-coord export`: a stage's weights for inference, in the published layout or as diffusers
// folders. Argument parsing only; the logic is LeffaRunFormat's StageWeights and Export.
import ArgumentParser
import LeffaCLI
import Foundation
import LeffaModels
import LeffaRunFormat

extension ExportFormat: ExpressibleByArgument {}

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a stage's weights for inference (leffa file or diffusers folders).")
    @Option(name: .customLong("run"), help: "The run directory.") var runPath: String
    @Option(help: "Stage (default: the last completed stage).") var stage: String?
    @Option(help: "A checkpoint step of the stage instead of its final weights.") var step: Int?
    @Flag(help: "The EMA weights instead of the trained ones.") var ema = false
    @Option(help: "leffa (one safetensors file, published names) or diffusers (folders).") var format: ExportFormat =
        .leffa
    @Option(help: "Output file (leffa) or folder (diffusers).") var out: String

    func run() throws {
        do {
            let dir = RunDirectory(runPath)
            let config = try dir.readConfig()
            let (name, model, source) = try StageWeights.load(
                run: dir, config: config, stage: stage, step: step, ema: ema)
            let st = config.stages.first { $0.name == name }!
            let side = config.space == .latent ? st.height / config.model.vae.downscale : st.height
            try model.export(
                format: format, to: out, sampleSize: side,
                metadata: [
                    "stage": name, "source": source, "run": dir.url.path,
                    "prediction_type": config.prediction.rawValue
                ])
            print("exported stage \(name) from \(source) as \(format.rawValue) to \(out)")
        } catch { throw userError(error) }
    }
}
