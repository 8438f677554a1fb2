// `leffa-coord sample`: try-on images from a run's weights (or a weights file and a config) with
// DDIM and classifier-free guidance. Argument parsing only; the logic is LeffaTraining.DDIMSampler.
import ArgumentParser
import Foundation
import LeffaData
import LeffaModels
import LeffaTraining

struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Sample try-on images (DDIM, classifier-free guidance) and write PNGs.")
    @OptionGroup var source: ModelSource
    @Option(help: "Person image.") var person: String
    @Option(help: "Garment (reference) image.") var garment: String
    @Option(help: "Inpainting mask (white = generate).") var mask: String
    @Option(help: "Densepose image (read as the config's data.densepose says: rgb or iuv).") var densepose: String
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
            let (cfg, model, from, st) = try source.load()
            let (h, w) = try size.map { try parseSize($0, option: "--size") } ?? (st.height, st.width)
            guard steps >= 1 else { throw RunError("--steps: expected at least 1, got \(steps)") }
            let cond = try SampleConditions.load(person: URL(fileURLWithPath: person), garment: URL(fileURLWithPath: garment),
                                                 mask: URL(fileURLWithPath: mask), densepose: URL(fileURLWithPath: densepose),
                                                 denseposeEncoding: cfg.data.densepose, height: h, width: w)
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
            print("wrote \(dest.path) (\(h)x\(w), \(steps) DDIM steps, guidance \(guidance), weights \(from))")
        } catch { throw userError(error) }
    }
}
