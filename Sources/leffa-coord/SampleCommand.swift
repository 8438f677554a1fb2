// `leffa-coord sample`: try-on images from a run's weights (or a weights file and a config) with
// classifier-free guidance and a DDIM or DDPM scheduler (SamplerOptions). Argument parsing only;
// the logic is LeffaTraining.Sampler and Repaint.
import ArgumentParser
import LeffaCLI
import Foundation
import LeffaData
import LeffaModels
import LeffaTraining
import LeffaRunFormat

struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sample try-on images (DDIM or DDPM, classifier-free guidance) and write PNGs.")
    @OptionGroup var source: ModelSource
    @Option(help: "Person image.") var person: String
    @Option(help: "Garment (reference) image.") var garment: String
    @Option(help: "Inpainting mask (white = generate).") var mask: String
    @Option(help: "Densepose image (read as the config's data.densepose says: rgb or iuv).") var densepose: String
    @Option(help: "Output folder.") var out: String
    @OptionGroup var sampling: SamplerOptions
    @Option(help: "Noise seed (the starting noise and every DDPM step's noise).") var seed: UInt64 = 0
    @Option(help: "Resolution HxW (default: the stage's).") var size: ImageSize?
    @OptionGroup var threads: ThreadOptions

    func run() throws {
        threads.apply()
        do {
            try sampling.check()
            let (cfg, model, from, st) = try source.load()
            let (h, w) = size.map { ($0.height, $0.width) } ?? (st.height, st.width)
            let cond = try SampleConditions.load(
                person: URL(fileURLWithPath: person), garment: URL(fileURLWithPath: garment),
                mask: URL(fileURLWithPath: mask), densepose: URL(fileURLWithPath: densepose),
                denseposeEncoding: cfg.data.densepose, height: h, width: w)
            let sampler = sampling.sampler(seed: seed, prediction: cfg.prediction)
            let name = sampling.scheduler.rawValue.uppercased()
            let bar = ProgressBar("sample")
            let sample = try sampler.sample(model: model, space: cfg.space, cond) { k, n in bar.update(k, n, name) }
            bar.finish()
            let img = sampling.repaint ? cond.repainted(Image(tensor: sample)) : Image(tensor: sample)
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            let stem = URL(fileURLWithPath: person).deletingPathExtension().lastPathComponent
            let dest = URL(fileURLWithPath: out).appendingPathComponent("\(stem)-seed\(seed).png")
            try ImageIO.write(img, to: dest)
            print("wrote \(dest.path) (\(h)x\(w), \(sampling.summary), weights \(from))")
        } catch { throw userError(error) }
    }
}
