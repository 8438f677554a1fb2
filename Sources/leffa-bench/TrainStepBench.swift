// The training-step benchmark: both UNets forward + backward + optimizer update, with and without
// the Leffa loss, at the fixture's `tiny` size and the `small` size. Scripts/bench_train_step_torch.py
// times the same step in PyTorch/diffusers for the ratio.
import ArgumentParser
import Foundation
import LeffaTensor
import LeffaLayers
import LeffaModels
import LeffaDiffusion
import LeffaTraining

struct TrainStepBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "train-step", abstract: "Training step time with and without the Leffa loss.")
    @OptionGroup var options: BenchOptions
    @Option(help: "Model sizes to run, comma-separated (tiny, small, sd15).") var models: String = "tiny,small"
    @Option(help: "Global batch.") var batch: Int = 2

    struct Row: Encodable {
        var model: String, batch: Int, latent: [Int], leffa: Bool, seconds: Double, bestSeconds: Double, imagesPerSecond: Double
        enum CodingKeys: String, CodingKey { case model, batch, latent, leffa, seconds, bestSeconds = "best_seconds", imagesPerSecond = "images_per_second" }
    }
    struct Report: Encodable { var threads: Int; var rows: [Row]; var leffaOverhead: [String: Double]
        enum CodingKeys: String, CodingKey { case threads, rows, leffaOverhead = "leffa_overhead" } }

    /// The latent size each model is benchmarked at (the issue's: tiny = the fixture's, small 32×24).
    static func latent(_ model: String) -> (Int, Int) { model == "tiny" ? (16, 8) : model == "small" ? (32, 24) : (64, 48) }

    /// A random batch of the right shapes, deterministic.
    static func batch(_ b: Int, _ h: Int, _ w: Int, seed: UInt64) -> TrainBatch {
        let H = 8 * h, W = 8 * w
        let mask = Tensor.uniform([b, 1, H, W], seed: seed + 7).scalars.map { $0 > 0.5 ? Float(1) : 0 }
        return TrainBatch(
            latent: Tensor.randn([b, 4, h, w], seed: seed), maskLatent: Tensor.uniform([b, 1, h, w], seed: seed + 1),
            maskedLatent: Tensor.randn([b, 4, h, w], seed: seed + 2), denseposeLatent: Tensor.uniform([b, 3, h, w], seed: seed + 3, in: -1...1),
            refLatent: Tensor.randn([b, 4, h, w], seed: seed + 4), imgRef: Tensor.uniform([b, 3, H, W], seed: seed + 5, in: -1...1),
            imgTgt: Tensor.uniform([b, 3, H, W], seed: seed + 6, in: -1...1), lossMask: Tensor(mask, shape: [b, 1, H, W]),
            timesteps: (0..<b).map { 100 + 300 * $0 % 499 }, noise: Tensor.randn([b, 4, h, w], seed: seed + 8), referenceKept: Array(repeating: true, count: b))
    }

    func run() throws {
        options.apply()
        print("leffa-bench train-step: \(Parallel.threads) thread(s), batch \(batch), median of \(options.repeats) steps\n")
        var rows: [Row] = []
        var overhead: [String: Double] = [:]
        print("model   latent   leffa   ms/step(med)  ms/step(best)  images/s")
        for name in models.split(separator: ",").map(String.init) {
            guard let config = ModelConfig.preset(name) else { throw ValidationError("unknown model \(name)") }
            let (h, w) = Self.latent(name)
            let model = try LeffaModel(config: config, seed: 1)
            let optimizer = AdamW(parameters: model.parameters, training: model.parameters(of: "unet") + model.parameters(of: "unet_encoder"))
            let b = Self.batch(batch, h, w, seed: 11)
            var times: [Bool: Double] = [:]
            for leffaOn in [false, true] {
                let objective = TrainingObjective(leffa: leffaOn ? LeffaLossConfig() : nil)
                let t = timeit(repeats: options.repeats) {
                    model.parameters.zeroGrads()
                    let l = try! objective.loss(model, b)
                    l.total.backward()
                    optimizer.clipGradNorm(parameters: model.parameters, maxNorm: 1)
                    optimizer.update(parameters: model.parameters, lr: 1e-5)
                }
                times[leffaOn] = t.median
                rows.append(Row(model: name, batch: batch, latent: [h, w], leffa: leffaOn, seconds: t.median, bestSeconds: t.best,
                                imagesPerSecond: Double(batch) / t.median))
                print(name.padding(toLength: 8, withPad: " ", startingAt: 0) + "\(h)x\(w)".padding(toLength: 9, withPad: " ", startingAt: 0)
                      + (leffaOn ? "on      " : "off     ") + String(format: "%12.1f  %13.1f  %8.2f", 1e3 * t.median, 1e3 * t.best, Double(batch) / t.median))
            }
            overhead[name] = times[true]! / times[false]! - 1
            print(String(format: "        Leffa loss overhead: %+.1f %%", 100 * overhead[name]!))
        }
        let path = options.json == "bench-results/engine.json" ? "bench-results/train-step.json" : options.json
        try writeJSON(Report(threads: Parallel.threads, rows: rows, leffaOverhead: overhead), to: path)
        print("\nwrote \(path)")
    }
}
