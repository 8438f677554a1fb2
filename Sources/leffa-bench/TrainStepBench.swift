// The training-step benchmark: both UNets forward + backward + optimizer update, with and without
// the Leffa loss, at the fixture's `tiny` size, the `small` size and SD1.5's (latent 64×48, image
// 512×384). Scripts/bench_train_step_torch.py times the same step in PyTorch/diffusers for the ratio.
// `--train unet` freezes the reference UNet (SD1.5 with both UNets trained needs ~29 GB for weights,
// gradients and moments alone): it runs forward only, and its gradients and moments are never
// touched. Peak memory per case: the process's resident peak (VmHWM, reset before each case) and
// the tensors' high-water mark during the step.
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
    @Option(help: "Parts that train, comma-separated: unet (the reference UNet frozen) or unet,unet_encoder.")
    var train: String = "unet,unet_encoder"
    @Option(help: "Leffa loss cases, comma-separated: off, on.") var leffa: String = "off,on"
    @Option(help: "Image size H×W (multiples of 64), instead of each model's own (tiny 128x64, small 256x192, sd15 512x384).")
    var size: String?

    struct Row: Encodable {
        var model: String, batch: Int, latent: [Int], leffa: Bool, train: [String], seconds: Double, bestSeconds: Double
        var imagesPerSecond: Double, peakRSSBytes: Int, peakTensorBytes: Int
        enum CodingKeys: String, CodingKey {
            case model, batch, latent, leffa, train, seconds, bestSeconds = "best_seconds", imagesPerSecond = "images_per_second"
            case peakRSSBytes = "peak_rss_bytes", peakTensorBytes = "peak_tensor_bytes"
        }
    }
    struct Report: Encodable { var threads: Int; var rows: [Row]; var leffaOverhead: [String: Double]
        enum CodingKeys: String, CodingKey { case threads, rows, leffaOverhead = "leffa_overhead" } }

    /// Starts a new resident-set peak (Linux: writing 5 to clear_refs resets VmHWM), so each case
    /// reports its own.
    static func resetPeakRSS() {
        try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)
    }

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
        let parts = train.split(separator: ",").map(String.init)
        guard !parts.isEmpty, parts.allSatisfy({ $0 == "unet" || $0 == "unet_encoder" }) else {
            throw ValidationError("--train: expected unet or unet,unet_encoder, got \(train)")
        }
        let cases = try leffa.split(separator: ",").map { c -> Bool in
            guard c == "on" || c == "off" else { throw ValidationError("--leffa: expected off, on or off,on, got \(leffa)") }
            return c == "on"
        }
        print("leffa-bench train-step: \(Parallel.threads) thread(s), batch \(batch), training \(parts.joined(separator: " + ")), "
              + "median of \(options.repeats) steps\n")
        var rows: [Row] = []
        var overhead: [String: Double] = [:]
        print("model   latent   leffa   ms/step(med)  ms/step(best)  images/s  peak RSS GiB  peak tensors GiB")
        for name in models.split(separator: ",").map(String.init) {
            guard let config = ModelConfig.preset(name) else { throw ValidationError("unknown model \(name)") }
            var (h, w) = Self.latent(name)
            if let size {
                let hw = size.split(separator: "x").compactMap { Int($0) }
                guard hw.count == 2, hw.allSatisfy({ $0 > 0 && $0 % 64 == 0 }) else { throw ValidationError("--size: expected H x W in multiples of 64, like 512x384") }
                (h, w) = (hw[0] / 8, hw[1] / 8)
            }
            let model = try LeffaModel(config: config, seed: 1)
            let trained = parts.flatMap { model.parameters(of: $0) }
            let optimizer = AdamW(parameters: model.parameters, training: trained)
            model.parameters.freeze(except: trained)
            let b = Self.batch(batch, h, w, seed: 11)
            var times: [Bool: Double] = [:]
            for leffaOn in cases {
                let objective = TrainingObjective(leffa: leffaOn ? LeffaLossConfig() : nil)
                Self.resetPeakRSS()
                Storage.live.resetPeak()
                let t = timeit(repeats: options.repeats) {
                    model.parameters.zeroGrads()
                    let l = try! objective.loss(model, b)
                    l.total.backward()
                    optimizer.clipGradNorm(parameters: model.parameters, maxNorm: 1)
                    optimizer.update(parameters: model.parameters, lr: 1e-5)
                }
                times[leffaOn] = t.median
                let row = Row(model: name, batch: batch, latent: [h, w], leffa: leffaOn, train: parts, seconds: t.median, bestSeconds: t.best,
                              imagesPerSecond: Double(batch) / t.median, peakRSSBytes: peakRSS(), peakTensorBytes: Storage.live.peakBytes)
                rows.append(row)
                print(name.padding(toLength: 8, withPad: " ", startingAt: 0) + "\(h)x\(w)".padding(toLength: 9, withPad: " ", startingAt: 0)
                      + (leffaOn ? "on      " : "off     ") + String(format: "%12.1f  %13.1f  %8.2f  %12.2f  %16.2f", 1e3 * t.median, 1e3 * t.best,
                      Double(batch) / t.median, Double(row.peakRSSBytes) / 1073741824, Double(row.peakTensorBytes) / 1073741824))
            }
            if let on = times[true], let off = times[false] {
                overhead[name] = on / off - 1
                print(String(format: "        Leffa loss overhead: %+.1f %%", 100 * overhead[name]!))
            }
        }
        let path = options.json == "bench-results/engine.json" ? "bench-results/train-step.json" : options.json
        try writeJSON(Report(threads: Parallel.threads, rows: rows, leffaOverhead: overhead), to: path)
        print("\nwrote \(path)")
    }
}
