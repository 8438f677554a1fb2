// `leffa-coord export`: a stage's weights for inference, in the published layout or as diffusers
// folders, in float32, float16 or bfloat16. Argument parsing and the report only; the logic is
// LeffaRunFormat's StageWeights and Export.
import ArgumentParser
import LeffaCLI
import Foundation
import LeffaModels
import LeffaRunFormat

extension ExportFormat: ExpressibleByArgument {}
extension ExportDType: ExpressibleByArgument {}

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a stage's weights for inference (leffa file or diffusers folders).")
    @Option(name: .customLong("run"), help: "The run directory.") var runPath: String
    @Option(help: "Stage (default: the last completed stage).") var stage: String?
    @Option(help: "A checkpoint step of the stage instead of its final weights.") var step: Int?
    @Flag(help: "The EMA weights instead of the trained ones.") var ema = false
    @Option(help: "leffa (one safetensors file, published names) or diffusers (folders).") var format: ExportFormat =
        .leffa
    @Option(
        help:
            "Element type of the written weights: float32 (as trained), float16 (as published SD1.5 weights ship) or bfloat16."
    )
    var dtype: ExportDType = .float32
    @Option(help: "Output file (leffa) or folder (diffusers).") var out: String
    @Flag(help: "Print one JSON object (files, format, dtype, stage, step, tensors, bytes) instead of text.")
    var json = false

    func run() throws {
        do {
            let dir = RunDirectory(runPath)
            let config = try dir.readConfig()
            let (name, model, source) = try StageWeights.load(
                run: dir, config: config, stage: stage, step: step, ema: ema)
            let st = config.stages.first { $0.name == name }!
            let side = config.space == .latent ? st.height / config.model.vae.downscale : st.height
            // Final weights record the step they were written at; a checkpoint's is --step.
            let atStep = step ?? StageWeights.finalStep(run: dir, stage: name, ema: ema)
            var metadata = [
                "stage": name, "source": source, "run": dir.url.path, "prediction_type": config.prediction.rawValue
            ]
            if let atStep { metadata["step"] = "\(atStep)" }
            let files = try model.export(format: format, to: out, sampleSize: side, dtype: dtype, metadata: metadata)
            if json {
                let report = ExportReport(
                    out: out, format: format.rawValue, dtype: dtype.rawValue, stage: name, step: atStep, ema: ema,
                    source: source, tensors: files.reduce(0) { $0 + $1.tensors },
                    bytes: files.reduce(0) { $0 + $1.bytes }, files: files)
                let enc = JSONEncoder()
                enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                print(String(decoding: try enc.encode(report), as: UTF8.self))
            } else {
                print("exported stage \(name) from \(source) as \(format.rawValue) (\(dtype.rawValue)) to \(out)")
            }
        } catch { throw userError(error) }
    }
}

/// `export --json`: what was written, for scripts (file sizes to check a float16 export halved).
struct ExportReport: Encodable {
    let out: String, format: String, dtype: String, stage: String
    let step: Int?
    let ema: Bool, source: String, tensors: Int, bytes: Int
    let files: [ExportedFile]

    /// Writes `step: null` rather than leaving the key out, so every report has the same keys.
    func encode(to encoder: Encoder) throws {
        enum K: String, CodingKey { case out, format, dtype, stage, step, ema, source, tensors, bytes, files }
        var c = encoder.container(keyedBy: K.self)
        try c.encode(out, forKey: .out); try c.encode(format, forKey: .format); try c.encode(dtype, forKey: .dtype)
        try c.encode(stage, forKey: .stage); try c.encode(step, forKey: .step); try c.encode(ema, forKey: .ema)
        try c.encode(source, forKey: .source); try c.encode(tensors, forKey: .tensors)
        try c.encode(bytes, forKey: .bytes); try c.encode(files, forKey: .files)
    }
}
