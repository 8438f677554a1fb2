// The training-step benchmark: both UNets forward + backward + optimizer update, with and without
// the Leffa loss, with and without activation checkpointing, at the fixture's `tiny` size, the
// `small` size and SD1.5's (latent 64×48, image 512×384). Scripts/bench_train_step_torch.py times
// the same step in PyTorch/diffusers for the ratio.
//
// `--train unet` freezes the reference UNet (SD1.5 with both UNets trained needs ~29 GB for
// weights, gradients and moments alone): it runs forward only, and its gradients and moments are
// never touched (allocated on demand, never resident).
// Peak activation memory: the high-water mark of `Storage.live` (every tensor allocation) during
// one step (zeroing the gradients, loss, backward, clipping, AdamW), minus its level just before
// the step (weights, gradient block, AdamW moments, the batch). So it is the activations kept for
// backward plus the transient gradients and temporaries of the step; not the allocator's slack.
// Peak RSS: the process's resident peak (VmHWM) over all cases of a model, which take turns.
import ArgumentParser
import Foundation
import LeffaTensor
import LeffaLayers
import LeffaModels
import LeffaDiffusion
import LeffaTraining
import LeffaRunFormat

struct TrainStepBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train-step", abstract: "Training step time with and without the Leffa loss.")
    @OptionGroup var options: BenchOptions
    @Option(help: "Model sizes to run, comma-separated (tiny, small, sd15).") var models: String = "tiny,small"
    @Option(help: "Global batch.") var batch: Int = 2
    @Option(help: "Parts that train, comma-separated: unet (the reference UNet frozen) or unet,unet_encoder.")
    var train: String = "unet,unet_encoder"
    @Option(help: "Leffa loss cases, comma-separated (off, on).") var leffa: String = "off,on"
    @Option(help: "Activation checkpointing cases, comma-separated (off, on).") var activationCheckpointing: String =
        "off"
    @Option(
        help: "Image size H×W (multiples of 8), instead of each model's own (tiny 128x64, small 256x192, sd15 512x384)."
    )
    var size: String?

    struct Row: Encodable {
        var model: String, batch: Int, latent: [Int], leffa: Bool, checkpointing: Bool, train: [String]
        var seconds: Double, bestSeconds: Double, imagesPerSecond: Double, peakActivationBytes: Int, peakRSSBytes: Int
        enum CodingKeys: String, CodingKey {
            case model, batch, latent, leffa, checkpointing = "activation_checkpointing", train, seconds, bestSeconds =
                "best_seconds"
            case imagesPerSecond = "images_per_second", peakActivationBytes = "peak_activation_bytes", peakRSSBytes =
                "peak_rss_bytes"
        }
    }
    /// Checkpointing on against off, same model and loss.
    struct Effect: Encodable {
        var timeOverhead: Double, memoryReduction: Double
        enum CodingKeys: String, CodingKey { case timeOverhead = "time_overhead", memoryReduction = "memory_reduction" }
    }
    struct Report: Encodable {
        var threads: Int; var rows: [Row]; var leffaOverhead: [String: Double]; var checkpointing: [String: Effect]
        enum CodingKeys: String, CodingKey {
            case threads, rows, leffaOverhead = "leffa_overhead", checkpointing = "activation_checkpointing"
        }
    }

    /// The latent size each model is benchmarked at (the issue's: tiny = the fixture's, small 32×24).
    static func latent(_ model: String) -> (Int, Int) {
        model == "tiny" ? (16, 8) : model == "small" ? (32, 24) : (64, 48)
    }

    /// "off,on"-style cases of `option`.
    static func switches(_ value: String, _ option: String) throws -> [Bool] {
        try value.split(separator: ",").map { s -> Bool in
            guard s == "on" || s == "off" else {
                throw ValidationError("--\(option): expected off, on or off,on, got \(s)")
            }
            return s == "on"
        }
    }

    func run() throws {
        options.apply()
        let parts = train.split(separator: ",").map(String.init)
        guard !parts.isEmpty, parts.allSatisfy({ $0 == "unet" || $0 == "unet_encoder" }) else {
            throw ValidationError("--train: expected unet or unet,unet_encoder, got \(train)")
        }
        let image = try size.map { try imageSize($0, multiple: 64) }
        let leffaCases = try Self.switches(leffa, "leffa"),
            checkpointingCases = try Self.switches(activationCheckpointing, "activation-checkpointing")
        print(
            "leffa-bench train-step: \(Parallel.threads) thread(s), batch \(batch), training \(parts.joined(separator: " + ")), "
                + "median of \(options.repeats) steps, the cases of a model taking turns\n")
        var rows: [Row] = []
        var overhead: [String: Double] = [:], effects: [String: Effect] = [:]
        print("model   latent   leffa  ckpt  ms/step(med)  ms/step(best)  images/s  peak act. MiB  peak RSS GiB")
        for name in models.split(separator: ",").map(String.init) {
            guard let config = ModelConfig.preset(name) else { throw ValidationError("unknown model \(name)") }
            let (h, w) = image.map { ($0.height / 8, $0.width / 8) } ?? Self.latent(name)
            let model = try LeffaModel(config: config, seed: 1)
            let trained = parts.flatMap { model.parameters(of: $0) }
            let optimizer = AdamW(parameters: model.parameters, training: trained)
            model.parameters.freeze(except: trained)
            let b = LatentBatch.random(batch, height: h, width: w, seed: 11)
            // Every case of this model takes turns step by step (timeInterleaved).
            let grid = checkpointingCases.flatMap { checkpointing in
                leffaCases.map { (checkpointing: checkpointing, leffa: $0) }
            }
            var peaks = [Int](repeating: 0, count: grid.count)
            let steps = grid.enumerated().map { i, c in
                {
                    let objective = TrainingObjective(
                        leffa: c.leffa ? LeffaLossConfig() : nil, activationCheckpointing: c.checkpointing)
                    let before = Storage.live.bytes
                    Storage.live.resetPeak()
                    model.parameters.zeroGrads()
                    let l = try! objective.loss(model, b)
                    l.total.backward()
                    optimizer.clipGradNorm(parameters: model.parameters, maxNorm: 1)
                    optimizer.update(parameters: model.parameters, lr: 1e-5)
                    peaks[i] = Storage.live.peakBytes - before
                }
            }
            resetPeakRSS()
            let times = timeInterleaved(repeats: options.repeats, steps)
            let rss = peakRSS()
            var measured: [String: Row] = [:]
            for (i, c) in grid.enumerated() {
                let t = times[i]
                let row = Row(
                    model: name, batch: batch, latent: [h, w], leffa: c.leffa, checkpointing: c.checkpointing,
                    train: parts,
                    seconds: t.median, bestSeconds: t.best, imagesPerSecond: Double(batch) / t.median,
                    peakActivationBytes: peaks[i], peakRSSBytes: rss)
                rows.append(row)
                measured["\(c.leffa) \(c.checkpointing)"] = row
                print(
                    name.padding(toLength: 8, withPad: " ", startingAt: 0)
                        + "\(h)x\(w)".padding(toLength: 9, withPad: " ", startingAt: 0)
                        + (c.leffa ? "on     " : "off    ") + (c.checkpointing ? "on    " : "off   ")
                        + String(
                            format: "%12.1f  %13.1f  %8.2f  %13.1f  %12.2f", 1e3 * t.median, 1e3 * t.best,
                            Double(batch) / t.median,
                            Double(peaks[i]) / 1048576, Double(rss) / 1073741824))
            }
            for checkpointing in checkpointingCases {
                guard let on = measured["true \(checkpointing)"], let off = measured["false \(checkpointing)"] else {
                    continue
                }
                let key = checkpointingCases.count > 1 ? "\(name) checkpointing \(checkpointing ? "on" : "off")" : name
                overhead[key] = on.seconds / off.seconds - 1
                let which = checkpointingCases.count > 1 ? " (checkpointing \(checkpointing ? "on" : "off"))" : ""
                print(String(format: "        Leffa loss overhead%@: %+.1f %%", which, 100 * overhead[key]!))
            }
            for leffaOn in leffaCases {
                guard let off = measured["\(leffaOn) false"], let on = measured["\(leffaOn) true"] else { continue }
                let e = Effect(
                    timeOverhead: on.seconds / off.seconds - 1,
                    memoryReduction: Double(off.peakActivationBytes) / Double(on.peakActivationBytes))
                effects["\(name) leffa \(leffaOn ? "on" : "off")"] = e
                print(
                    String(
                        format:
                            "        activation checkpointing, Leffa loss %@: peak activation memory %.2f× lower, step time %+.1f %%",
                        leffaOn ? "on" : "off", e.memoryReduction, 100 * e.timeOverhead))
            }
        }
        let path = options.jsonPath("train-step")
        try writeJSON(
            Report(threads: Parallel.threads, rows: rows, leffaOverhead: overhead, checkpointing: effects), to: path)
        print("\nwrote \(path)")
    }
}
