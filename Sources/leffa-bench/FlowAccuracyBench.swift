// The flow-accuracy benchmark: does the Leffa loss teach attention where the garment comes from?
// On synthetic try-on data with known warps, a tiny pixel-space model is warmed up without the
// Leffa loss (saved), then trained N more steps WITH the loss and, from the same weights, N steps
// WITHOUT it (same data order and randomness). For each layer the Leffa loss uses, the endpoint
// error (pixels) between its attention flow and the ground-truth flow, inside the garment mask,
// is measured on every sample at fixed timesteps and noise, for the warm-up weights and both runs
// (all with the benchmark's τ). The Leffa run should end clearly below both.
//
// Defaults and why (measured at 32x24, 8 pairs; the centre flow, i.e. uniform attention, is 7.66 px):
// - texture ramp: with the synthetic set's fine stripes/checks, Leffa's warp loss is a colour
//   match with minima everywhere — a free flow optimised from the centre lowers the term 7× while
//   its error stays at 7.7 px, so no model could show anything. With the smooth colour ramp the
//   same descent reaches 0.7 px (the loss's minimum is the true flow).
// - λ 1000: at the warm-up weights attention is near uniform, and the λ = 10 term's gradient on
//   the generative q/k projections is ~25× smaller than the diffusion loss's (~70× on the
//   reference keys); Adam normalises per weight, so the diffusion noise decided the step. λ 1000
//   makes the two comparable (grad clipping scales both alike and is not the cause).
// - τ 0.5: sharper softmax, larger gradients through it (τ 2 → 6.3 px, 0.5 → 5.9, 0.25 → 6.8 at
//   40 steps); lr 3e-3 (1e-2 is worse: 6.9 px at 40 steps); 80 compared steps (40 → 5.9 px, 80 → 4.8).
// - all layers of the resolution cut (every layer at this size), timestep threshold 500, no
//   reference dropout: the SPEC's loss as configured for training, only λ and τ changed.
// Runs in about 2–3 minutes with 2 threads (1 min 47 s measured; the result does not depend on
// the thread count).
import ArgumentParser
import Foundation
import LeffaTensor
import LeffaData
import LeffaModels
import LeffaDiffusion
import LeffaTraining
import LeffaRunFormat

struct FlowAccuracyBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flow-accuracy",
        abstract:
            "Attention-flow endpoint error vs ground truth after N steps with and without the Leffa loss, from the same weights."
    )
    @Option(help: "Kernel threads (default: LEFFA_THREADS, else cores ÷ local MPI ranks).") var threads: Int?
    @Option(help: "Image size HxW (pixel space; multiples of 8).") var size: String = "32x24"
    @Option(help: "Synthetic pairs.") var count: Int = 8
    @Option(help: "Garment texture of the synthetic data: ramp or pattern.") var texture: String = "ramp"
    @Option(help: "Reference dropout of both runs.") var dropout: Float = 0
    @Option(help: "Gradient-norm clip of both runs.") var clip: Float = 1.0
    @Option(help: "Seed of the model initialisation and the training randomness.") var seed: Int = 0
    @Option(help: "Warm-up steps without the Leffa loss (shared).") var warmup: Int = 10
    @Option(help: "Steps of each compared run.") var steps: Int = 80
    @Option(help: "Global batch.") var batch: Int = 4
    @Option(help: "Learning rate.") var lr: Float = 3e-3
    @Option(name: .customLong("lambda"), help: "Weight of the Leffa loss.") var lambda: Float = 1000
    @Option(help: "Leffa temperature τ.") var tau: Float = 0.5
    @Option(help: "Timesteps the flows are measured at (comma-separated).") var evalTimesteps: String = "100,250,400"
    @Option(help: "Working folder (default: a temp folder, removed at the end).") var work: String?
    @Option(help: "Where to write the JSON results.") var json: String = "bench-results/flow-accuracy.json"

    struct LayerRow: Encodable { var layer: String; var leffa: Double; var plain: Double; var warmup: Double }
    struct Report: Encodable {
        var size: [Int], count: Int, batch: Int, warmupSteps: Int, steps: Int, lr: Float, lambda: Float, tau: Float,
            timesteps: [Int]
        var layers: [LayerRow], meanLeffa: Double, meanPlain: Double, meanWarmup: Double, leffaLower: Bool,
            seconds: Double
        var truthLossTerm: Double, centreLossTerm: Double
        var texture: String
        enum CodingKeys: String, CodingKey {
            case truthLossTerm = "loss_term_with_ground_truth_flow", centreLossTerm = "loss_term_with_centre_flow"
            case size, count, texture, batch, steps, lr, lambda, tau, timesteps, layers, seconds
            case warmupSteps = "warmup_steps", meanLeffa = "mean_epe_leffa", meanPlain = "mean_epe_plain", meanWarmup =
                "mean_epe_warmup", leffaLower = "leffa_lower"
        }
    }

    func config(leffa: Bool) -> String {
        let leffaPart = leffa ? ", leffa: {weight: \(lambda), tau: \(tau), timestep_threshold: 500}" : ""
        return """
            run: {name: flow-accuracy, seed: \(seed)}
            model: {preset: tiny}
            data: {kind: synthetic, root: data, space: pixel}
            training:
              train: [unet, unet_encoder]
              grad_clip: \(clip)
              reference_dropout: \(dropout)
              checkpoint_every: 100000
              keep_checkpoints: 1
            stages:
              - {name: warmup, resolution: \(size), steps: \(warmup), batch: \(batch), lr: \(lr)}
              - {name: compare, resolution: \(size), steps: \(steps), batch: \(batch), lr: \(lr)\(leffaPart)}
            """
    }

    func run() throws {
        if let threads { Parallel.threads = max(1, threads) }
        let parts = try imageSize(size)
        guard let tex = SyntheticTexture(rawValue: texture) else {
            throw ValidationError("--texture: expected ramp or pattern, got \(texture)")
        }
        let timesteps = evalTimesteps.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        let started = Date()
        let root = URL(
            fileURLWithPath: work
                ?? FileManager.default.temporaryDirectory.appendingPathComponent("leffa-flow-\(getpid())").path)
        defer { if work == nil { try? FileManager.default.removeItem(at: root) } }
        try? FileManager.default.removeItem(at: root)
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        let quiet: (String) -> Void = { line in
            if line.hasPrefix("warning") || line.contains("finished") {
                FileHandle.standardError.write(Data((line + "\n").utf8))
            }
        }

        // Two runs that differ only in the compared stage; the warm-up runs once and is shared.
        var runs: [RunDirectory] = []
        for (name, leffa) in [("leffa", true), ("plain", false)] {
            let cfgURL = root.appendingPathComponent("\(name).yaml")
            try config(leffa: leffa).write(to: cfgURL, atomically: true, encoding: .utf8)
            let run = try RunDirectory.create(
                at: root.appendingPathComponent(name).path, config: try RunConfig.load(path: cfgURL.path))
            try generateSynthetic(
                out: run.url.appendingPathComponent("data"), count: count, height: parts.height, width: parts.width,
                seed: 3, texture: tex)
            runs.append(run)
        }
        print(
            "leffa-bench flow-accuracy: \(count) synthetic pairs \(size) (\(texture) texture), tiny model in pixel space, batch \(batch), lr \(lr), λ \(lambda), τ \(tau), \(Parallel.threads) thread(s)"
        )
        print("warm-up: \(warmup) steps without the Leffa loss …")
        let w = try Trainer(run: runs[0], log: quiet)
        _ = try w.train()
        let warmWeights = runs[0].finalWeightsURL("warmup")
        try FileManager.default.copyItem(at: warmWeights, to: runs[1].finalWeightsURL("warmup"))
        var state = try runs[1].readState()
        state.stage = "compare"; state.completedStages = ["warmup"]
        try runs[1].writeState(state)

        let (truthError, centreError) = try checkTruth(runs[0], stage: w.config.stages[1], model: w.model)
        print(
            String(
                format: "check: the Leffa loss term is %.5f with the ground-truth flow, %.5f with the centre flow",
                truthError, centreError))
        var results: [[String: Double]] = []
        var layerNames: [String] = []
        for (i, run) in runs.enumerated() {
            let t = try Trainer(run: run, log: quiet)
            if i == 0 { // the warm-up weights, measured once
                layerNames = layersUsed(t)
                results.append(try measure(t, layers: layerNames, timesteps: timesteps))
            }
            print("\(i == 0 ? "with" : "without") the Leffa loss: \(steps) steps …")
            _ = try t.train()
            results.append(try measure(t, layers: layerNames, timesteps: timesteps))
        }
        let (warm, withL, without) = (results[0], results[1], results[2])
        print("\nendpoint error (pixels) of attention flow vs ground truth, inside the garment mask")
        print("layer".padding(toLength: 48, withPad: " ", startingAt: 0) + "   warm-up   +Leffa   no Leffa")
        var rows: [LayerRow] = []
        for l in layerNames {
            rows.append(LayerRow(layer: l, leffa: withL[l]!, plain: without[l]!, warmup: warm[l]!))
            print(
                l.replacingOccurrences(of: ".transformer_blocks.0.attn1", with: "").padding(
                    toLength: 48, withPad: " ", startingAt: 0)
                    + String(format: "  %8.3f %8.3f  %8.3f", warm[l]!, withL[l]!, without[l]!))
        }
        func mean(_ d: [String: Double]) -> Double { layerNames.map { d[$0]! }.reduce(0, +) / Double(layerNames.count) }
        let (ml, mp, mw) = (mean(withL), mean(without), mean(warm))
        print(
            "mean".padding(toLength: 48, withPad: " ", startingAt: 0)
                + String(format: "  %8.3f %8.3f  %8.3f", mw, ml, mp))
        print(
            ml < mp
                ? String(
                    format:
                        "\nthe Leffa loss lowers the flow error by %.1f %% vs the same steps without it, by %.1f %% vs the warm-up",
                    100 * (1 - ml / mp), 100 * (1 - ml / mw))
                : "\nWARNING: the Leffa run did NOT end lower")
        try writeJSON(
            Report(
                size: [parts.height, parts.width], count: count, batch: batch, warmupSteps: warmup, steps: steps,
                lr: lr, lambda: lambda, tau: tau,
                timesteps: timesteps, layers: rows, meanLeffa: ml, meanPlain: mp, meanWarmup: mw, leffaLower: ml < mp,
                seconds: Date().timeIntervalSince(started), truthLossTerm: truthError, centreLossTerm: centreError,
                texture: texture), to: json)
        print("wrote \(json)")
    }

    /// The ground truth in the loss's convention: warping the reference by it reproduces the target
    /// inside the mask (Leffa's objective at its minimum). Returns that error and the centre flow's.
    func checkTruth(_ run: RunDirectory, stage: StageConfig, model: LeffaModel) throws -> (Double, Double) {
        let ds = openDataset(.synthetic, root: run.url.appendingPathComponent("data"))
        let cfg = try run.readConfig()
        let data = try BatchBuilder(dataset: ds, config: cfg, model: model).load(
            indices: Array(0..<ds.count), stage: stage)
        guard let truth = data.flow, let valid = data.flowValid else {
            throw ValidationError("the synthetic data has no ground-truth flow")
        }
        let inside = valid * data.lossMask
        func err(_ grid: Tensor) -> Double {
            GradMode.withoutGrad {
                let d = (data.image - gridSample(data.reference, grid)) * inside
                return Double(mean(d * d, axes: [0, 1, 2, 3]).item)
            }
        }
        return (err(truth), err(Tensor(zeros: truth.shape)))
    }

    /// The layers the Leffa loss uses at this size.
    func layersUsed(_ t: Trainer) -> [String] {
        let st = t.config.stages[1]
        return (st.leffa ?? LeffaLossConfig()).selectLayers(
            UNet2DConditionModel.attentionLayers(t.config.model.unet),
            latentHeight: st.height, imageHeight: st.height)
    }

    /// Mean endpoint error per layer over every sample and the given timesteps (fixed noise).
    func measure(_ t: Trainer, layers: [String], timesteps: [Int]) throws -> [String: Double] {
        let st = t.config.stages[1]
        let ds = openDataset(.synthetic, root: t.run.url.appendingPathComponent("data"))
        let builder = BatchBuilder(dataset: ds, config: t.config, model: t.model)
        let indices = Array(0..<ds.count)
        let data = try builder.load(indices: indices, stage: st)
        guard let truth = data.flow, let valid = data.flowValid else {
            throw ValidationError("the synthetic data has no ground-truth flow")
        }
        let inside = valid * data.lossMask // where the truth holds and the garment is
        var sums: [String: Double] = [:]
        for ts in timesteps {
            let inputs = try builder.inputs(data, step: 0, positions: indices, timestepOverride: ts, dropout: false)
            // The benchmark's τ for every run: the plain run's config has no Leffa section, and its
            // default τ would measure it with a different softmax than the others.
            for (layer, flow, _) in try FlowSnapshot.flows(model: t.model, inputs: inputs, layers: layers, tau: tau) {
                sums[layer, default: 0] +=
                    FlowSnapshot.endpointError(flow, truth: truth, valid: inside) / Double(timesteps.count)
            }
        }
        return sums
    }
}
