// The training-step benchmark: both UNets forward + backward + optimizer update, with and without
// the Leffa loss, with and without activation checkpointing, at the fixture's `tiny` size and the
// `small` size. Scripts/bench_train_step_torch.py times the same step in PyTorch/diffusers for the
// ratio.
//
// Peak activation memory: the high-water mark of `Storage.live` (every tensor allocation) during
// one step (zeroing the gradients, loss, backward, clipping, AdamW), minus its level just before
// the step (weights, gradient block, AdamW moments, the batch). So it is the activations kept for
// backward plus the transient gradients and temporaries of the step; not the allocator's slack.
import ArgumentParser
import Foundation
import LeffaTensor
import LeffaLayers
import LeffaModels
import LeffaDiffusion
import LeffaTraining

struct TrainStepBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train-step",
        abstract: "Training step time and peak activation memory with and without the Leffa loss and activation checkpointing.")
    @OptionGroup var options: BenchOptions
    @Option(help: "Model sizes to run, comma-separated (tiny, small, sd15).") var models: String = "tiny,small"
    @Option(help: "Global batch.") var batch: Int = 2
    @Option(help: "Activation checkpointing cases, comma-separated (off, on).") var activationCheckpointing: String = "off"

    struct Row: Encodable {
        var model: String, batch: Int, latent: [Int], leffa: Bool, checkpointing: Bool
        var seconds: Double, bestSeconds: Double, imagesPerSecond: Double, peakActivationBytes: Int
        enum CodingKeys: String, CodingKey {
            case model, batch, latent, leffa, checkpointing = "activation_checkpointing", seconds, bestSeconds = "best_seconds"
            case imagesPerSecond = "images_per_second", peakActivationBytes = "peak_activation_bytes"
        }
    }
    /// Checkpointing on against off, same model and loss.
    struct Effect: Encodable {
        var timeOverhead: Double, memoryReduction: Double
        enum CodingKeys: String, CodingKey { case timeOverhead = "time_overhead", memoryReduction = "memory_reduction" }
    }
    struct Report: Encodable {
        var threads: Int; var rows: [Row]; var leffaOverhead: [String: Double]; var checkpointing: [String: Effect]
        enum CodingKeys: String, CodingKey { case threads, rows, leffaOverhead = "leffa_overhead", checkpointing = "activation_checkpointing" }
    }

    /// The latent size each model is benchmarked at (the issue's: tiny = the fixture's, small 32×24).
    static func latent(_ model: String) -> (Int, Int) { model == "tiny" ? (16, 8) : model == "small" ? (32, 24) : (64, 48) }

    func run() throws {
        options.apply()
        let cases = try activationCheckpointing.split(separator: ",").map { s -> Bool in
            guard s == "on" || s == "off" else { throw ValidationError("--activation-checkpointing: expected off, on or off,on, got \(s)") }
            return s == "on"
        }
        print("leffa-bench train-step: \(Parallel.threads) thread(s), batch \(batch), median of \(options.repeats) steps, "
              + "the cases of a model taking turns\n")
        var rows: [Row] = []
        var overhead: [String: Double] = [:], effects: [String: Effect] = [:]
        print("model   latent   leffa  ckpt  ms/step(med)  ms/step(best)  images/s  peak act. MiB")
        for name in models.split(separator: ",").map(String.init) {
            guard let config = ModelConfig.preset(name) else { throw ValidationError("unknown model \(name)") }
            let (h, w) = Self.latent(name)
            let model = try LeffaModel(config: config, seed: 1)
            let optimizer = AdamW(parameters: model.parameters, training: model.parameters(of: "unet") + model.parameters(of: "unet_encoder"))
            let b = TrainBatch.random(batch, height: h, width: w, seed: 11)
            // Every case of this model takes turns step by step (timeInterleaved).
            let grid = cases.flatMap { checkpointing in [false, true].map { (checkpointing: checkpointing, leffa: $0) } }
            var peaks = [Int](repeating: 0, count: grid.count)
            let steps = grid.enumerated().map { i, c in {
                let objective = TrainingObjective(leffa: c.leffa ? LeffaLossConfig() : nil, activationCheckpointing: c.checkpointing)
                let before = Storage.live.bytes
                Storage.live.resetPeak()
                model.parameters.zeroGrads()
                let l = try! objective.loss(model, b)
                l.total.backward()
                optimizer.clipGradNorm(parameters: model.parameters, maxNorm: 1)
                optimizer.update(parameters: model.parameters, lr: 1e-5)
                peaks[i] = Storage.live.peakBytes - before
            } }
            let times = timeInterleaved(repeats: options.repeats, steps)
            var measured: [String: Row] = [:]
            for (i, c) in grid.enumerated() {
                let t = times[i]
                let row = Row(model: name, batch: batch, latent: [h, w], leffa: c.leffa, checkpointing: c.checkpointing, seconds: t.median,
                              bestSeconds: t.best, imagesPerSecond: Double(batch) / t.median, peakActivationBytes: peaks[i])
                rows.append(row)
                measured["\(c.leffa) \(c.checkpointing)"] = row
                print(name.padding(toLength: 8, withPad: " ", startingAt: 0) + "\(h)x\(w)".padding(toLength: 9, withPad: " ", startingAt: 0)
                      + (c.leffa ? "on     " : "off    ") + (c.checkpointing ? "on    " : "off   ")
                      + String(format: "%12.1f  %13.1f  %8.2f  %13.1f", 1e3 * t.median, 1e3 * t.best, Double(batch) / t.median,
                               Double(peaks[i]) / 1048576))
            }
            for checkpointing in cases {
                let key = cases.count > 1 ? "\(name) checkpointing \(checkpointing ? "on" : "off")" : name
                overhead[key] = measured["true \(checkpointing)"]!.seconds / measured["false \(checkpointing)"]!.seconds - 1
                let which = cases.count > 1 ? " (checkpointing \(checkpointing ? "on" : "off"))" : ""
                print(String(format: "        Leffa loss overhead%@: %+.1f %%", which, 100 * overhead[key]!))
            }
            for leffaOn in [false, true] {
                guard let off = measured["\(leffaOn) false"], let on = measured["\(leffaOn) true"] else { continue }
                let e = Effect(timeOverhead: on.seconds / off.seconds - 1,
                               memoryReduction: Double(off.peakActivationBytes) / Double(on.peakActivationBytes))
                effects["\(name) leffa \(leffaOn ? "on" : "off")"] = e
                print(String(format: "        activation checkpointing, Leffa loss %@: peak activation memory %.2f× lower, step time %+.1f %%",
                             leffaOn ? "on" : "off", e.memoryReduction, 100 * e.timeOverhead))
            }
        }
        let path = options.json == "bench-results/engine.json" ? "bench-results/train-step.json" : options.json
        try writeJSON(Report(threads: Parallel.threads, rows: rows, leffaOverhead: overhead, checkpointing: effects), to: path)
        print("\nwrote \(path)")
    }
}
