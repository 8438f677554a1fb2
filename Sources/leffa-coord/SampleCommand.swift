// `leffa-coord sample`: try-on images from a run's weights (or a weights file and a config) with
// DDIM and classifier-free guidance. Argument parsing only; the logic is LeffaTraining.DDIMSampler.
import ArgumentParser
import Foundation
import LeffaData
import LeffaModels
import LeffaTraining

struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Sample try-on images (DDIM, classifier-free guidance) and write PNGs.")
    @Option(name: .customLong("run"), help: "A run directory (its config and a stage's weights).") var runPath: String?
    @Option(help: "Stage (default: the last completed stage).") var stage: String?
    @Option(help: "A checkpoint step of the stage instead of its final weights.") var step: Int?
    @Flag(help: "The EMA weights.") var ema = false
    @Option(help: "Weights in the published layout (instead of --run).") var weights: String?
    @Option(help: "Run config (YAML) for --weights: model sizes, space and resolution of its last stage.") var config: String?
    @Option(help: "Person image.") var person: String
    @Option(help: "Garment (reference) image.") var garment: String
    @Option(help: "Inpainting mask (white = generate).") var mask: String
    @Option(help: "Densepose image.") var densepose: String
    @Option(help: "Output folder.") var out: String
    @Option(help: "DDIM steps.") var steps: Int = 30
    @Option(help: "Classifier-free guidance scale (1 = no guidance).") var guidance: Float = 2.5
    @Option(help: "Noise seed.") var seed: UInt64 = 0
    @Flag(help: "Compute the reference features once (at the middle DDIM timestep) instead of at every step, as the published pipeline's ref_acceleration: about half the time.") var refAcceleration = false
    @Option(help: "Resolution HxW (default: the stage's).") var size: String?
    @OptionGroup var threads: ThreadOptions

    func run() throws {
        threads.apply()
        do {
            let cfg: RunConfig, model: LeffaModel, source: String, stageName: String
            if let runPath {
                let dir = RunDirectory(runPath)
                cfg = try dir.readConfig()
                (stageName, model, source) = try loadStageModel(dir, config: cfg, stage: stage, step: step, ema: ema)
            } else if let weights, let config {
                cfg = try RunConfig.load(path: config)
                model = try LeffaModel(config: cfg.model, seed: cfg.seed)
                try model.loadWeights(from: weights)
                source = weights; stageName = stage ?? cfg.stages.last!.name
            } else { throw RunError("pass --run DIR, or --weights FILE with --config FILE") }
            guard let st = cfg.stages.first(where: { $0.name == stageName }) else { throw RunError("--stage: no stage named \(stageName)") }
            var (h, w) = (st.height, st.width)
            if let size {
                let p = size.lowercased().split(separator: "x").compactMap { Int($0) }
                guard p.count == 2 else { throw RunError("--size: expected HxW, got \(size)") }
                (h, w) = (p[0], p[1])
            }
            guard steps >= 1 else { throw RunError("--steps: expected at least 1, got \(steps)") }
            let cond = try SampleConditions.load(person: URL(fileURLWithPath: person), garment: URL(fileURLWithPath: garment),
                                                 mask: URL(fileURLWithPath: mask), densepose: URL(fileURLWithPath: densepose), height: h, width: w)
            var sampler = DDIMSampler(steps: steps, guidance: guidance, seed: seed)
            sampler.refAcceleration = refAcceleration
            sampler.prediction = cfg.prediction
            let img = try sampler.sample(model: model, space: cfg.space, cond) { k, n in
                FileHandle.standardError.write(Data("\rDDIM step \(k)/\(n)".utf8))
            }
            FileHandle.standardError.write(Data("\n".utf8))
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            let stem = URL(fileURLWithPath: person).deletingPathExtension().lastPathComponent
            let dest = URL(fileURLWithPath: out).appendingPathComponent("\(stem)-seed\(seed).png")
            try ImageIO.write(Image(tensor: img), to: dest)
            print("wrote \(dest.path) (\(h)x\(w), \(steps) DDIM steps, guidance \(guidance), weights \(source))")
        } catch { throw userError(error) }
    }
}
