// The run config (Configs/*.yaml): model, initial weights, data, optimizer and the stages. Parsing
// turns every mistake into an error that names the file, the field and the expected form, and
// refuses keys it does not read (ConfigReader.swift): a misspelt option must not train on the
// default. Nothing here touches the disk beyond reading the file.
import Foundation
import Yams
import LeffaLayers
import LeffaModels
import LeffaDiffusion
import LeffaData

public struct ConfigError: Error, CustomStringConvertible {
    public let file: String, field: String, expected: String
    /// What is wrong, when saying it first reads better than the expected form alone (an unknown
    /// key and the valid key it was probably meant to be).
    public var problem: String? = nil
    public var description: String {
        "\(file): field \(field): " + (problem.map { "\($0); " } ?? "") + "expected \(expected)"
    }
}

/// Where the latents come from: the VAE (SD1.5's latent diffusion) or the images themselves.
public enum Space: String, Sendable { case latent, pixel }

public struct StageConfig: Sendable, Equatable {
    public var name: String
    public var height: Int, width: Int // image resolution
    public var steps: Int
    public var batch: Int // global batch per optimizer step
    public var gradAccum: Int = 1 // micro-steps per optimizer step (each batch/gradAccum samples)
    public var lr: Float
    public var warmupSteps: Int = 0
    public var schedule: String = "constant" // constant | cosine
    public var leffa: LeffaLossConfig? = nil
}

/// Validation sampling during training (`training.validation`): every `every` optimizer steps
/// (0 = off) and at each stage's last step, samples of the first `count` pairs of a fixed split.
public struct ValidationConfig: Sendable, Equatable {
    public var every = 0
    public var count = 4
    /// `ddim` (η = 0) or `ddpm` (ancestral, the published pipeline's).
    public var scheduler: SchedulerKind = .ddim
    /// Sampling steps (1…1000).
    public var steps = 30
    /// Classifier-free guidance scale (1 = none).
    public var guidance: Float = 2.5
    /// φ of the guidance rescaling (0 = off; the published pipeline: φ = guidance).
    public var guidanceRescale: Float = 0
    /// Paste the generated masked region into the original person (the published `repaint`).
    public var repaint = false
    /// "test" or "train"; nil: test when the data has a test split, else the training split.
    public var split: String? = nil
    /// Reference features computed once per sample instead of at every sampling step (the published
    /// pipeline's `ref_acceleration`): about half the cost.
    public var refAcceleration = false
    public init() {}
    public var enabled: Bool { every > 0 }
    /// Whether to sample after optimizer step `step` of a stage of `stageSteps` steps: every
    /// `every` steps and at the stage's last step, so every stage leaves samples.
    public func due(step: Int, stageSteps: Int) -> Bool {
        enabled && step > 0 && (step % every == 0 || step == stageSteps)
    }
    static let example = "a mapping like {every: 1000, count: 4, steps: 30, guidance: 2.5}"
}

public struct RunConfig: Sendable {
    public var source: String
    public var text: String
    /// Every value the config's parser used, from the file or by default, in reading order
    /// (`leffa-coord config` prints them).
    public var settings: [ConfigSetting] = []
    public var name: String
    public var seed: UInt64
    public var model: ModelConfig
    public var space: Space
    /// Initial weights: nil (random), ("leffa", file) or ("diffusers", folder).
    public var initFrom: (kind: String, path: String)?
    public var train: [String] // which parts train: unet, unet_encoder
    public var adam = AdamWConfig()
    public var gradClip: Float = 1.0
    /// The exponential moving average of the weights and its schedule (`training.ema_*`); nil: none.
    public var ema: EMAConfig? = nil
    public var referenceDropout: Float = 0.1
    /// What the generative UNet predicts (`training.prediction_type`, diffusers' name): epsilon as
    /// SD1.5 and the published model, or sample / v_prediction.
    public var prediction: Prediction = .epsilon
    /// `training.activation_checkpointing`: both UNets recompute each block's activations in
    /// backward instead of keeping them; the same gradients bit for bit, in a fraction of the
    /// activation memory, for about one more forward per step.
    public var activationCheckpointing = false
    // data
    public var dataKind: String // synthetic | vitonhd | dresscode | deepfashion
    public var dataRoot: String
    public var dataSplit: String = "train"
    /// `data.synthesize`: the synthetic set `leffa-coord init` makes at `dataRoot` (synthetic data only).
    public var synthesize: SyntheticDataConfig? = nil
    /// `data.densepose`, `data.category`, `data.pairs`, `data.augment` (DataOptions.swift).
    public var data = DataOptions()
    // bookkeeping
    public var checkpointEvery: Int = 100
    /// Also checkpoint when this many minutes have passed since the last checkpoint
    /// (`training.checkpoint_every_minutes`), so a slow step count still bounds the work a crash
    /// loses; nil: by steps only. Rank 0's clock decides, and all ranks follow (Trainer).
    public var checkpointEveryMinutes: Double? = nil
    /// Checkpoints kept per stage (the newest); 0 keeps all.
    public var keepCheckpoints: Int = 3
    public var snapshotEvery: Int = 0
    public var snapshotSamples: Int = 2
    public var snapshotLayers: [String] = []
    public var logEvery: Int = 1
    public var validation = ValidationConfig()
    public var stages: [StageConfig]

    /// Whether the file is a run config (a mapping with `stages`) rather than a model config.
    public static func isRunConfig(path: String) -> Bool {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8),
            let root = (try? Yams.compose(yaml: text))??.mapping
        else { return false }
        return root["stages"] != nil
    }

    /// Reads and validates a run config.
    public static func load(path: String) throws -> RunConfig {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8)
        else {
            throw ConfigError(file: path, field: "(file)", expected: "a readable UTF-8 YAML file")
        }
        return try parse(text, source: path)
    }

    public static func parse(_ text: String, source: String) throws -> RunConfig {
        let root: Yams.Node.Mapping
        do {
            guard let m = try Yams.compose(yaml: text)?.mapping else {
                throw ConfigError(file: source, field: "(top level)", expected: "a mapping")
            }
            root = m
        } catch let e as ConfigError { throw e } catch {
            throw ConfigError(file: source, field: "(syntax)", expected: "valid YAML (\(error))")
        }
        let r = Reader(file: source, root: root)
        var cfg: RunConfig
        do { cfg = try read(r, text: text) } catch {
            try r.checkUnknownKeys() // a misspelt key first: it is often what caused the error
            throw error
        }
        try r.checkUnknownKeys()
        cfg.settings = r.sections.settings
        return cfg
    }

    /// The sections, each marked finished once parsed (see Reader.checkUnknownKeys).
    static func read(_ r: Reader, text: String) throws -> RunConfig {
        let source = r.file
        let run = try r.section("run"),
            modelNode = try r.section("model", expected: "a mapping with preset, unet, vae and init")
        let data = try r.section("data"), training = try r.section("training"), stagesNode = r.value("stages")
        r.finish()

        let name = try run.string("name", default: "leffa")
        let seed = UInt64(try run.int("seed", default: 0, min: 0))
        run.finish()

        // ModelConfig reads preset, unet and vae from the section's text; their keys are checked
        // here first, so a misspelling is named by its full path.
        modelNode.readElsewhere(ModelConfig.keys)
        // The model's sizes come from its preset, changed by the keys given (ModelConfig).
        if modelNode.node[Yams.Node("preset")] == nil { modelNode.usedDefault("preset", "sd15") }
        for (k, v) in modelNode.node where k.string != "init" {
            modelNode.sections.record("model." + (k.string ?? "?"), Reader.yaml(v), fromFile: true)
        }
        for (key, keys) in [("unet", UNetConfig.keys), ("vae", VAEConfig.keys)] {
            if let sizes = try modelNode.optionalSection(key, expected: "a mapping of sizes") {
                sizes.readElsewhere(keys); sizes.finish()
            }
        }
        var initFrom: (String, String)? = nil
        if let i = try modelNode.optionalSection("init", expected: "leffa: FILE.safetensors or diffusers: FOLDER") {
            switch (try i.optionalString("leffa"), try i.optionalString("diffusers")) {
            case (let p?, nil): initFrom = ("leffa", p)
            case (nil, let p?): initFrom = ("diffusers", p)
            default:
                throw ConfigError(
                    file: source, field: "model.init",
                    expected: "exactly one of leffa: FILE.safetensors or diffusers: FOLDER")
            }
            i.finish()
        }
        modelNode.finish()
        var model: ModelConfig
        do {
            let yaml = try Yams.serialize(node: Yams.Node.mapping(modelNode.node))
            model = try ModelConfig.parse(yaml.isEmpty ? "preset: sd15" : yaml, source: source)
        } catch let e as ModelError {
            throw ConfigError(file: source, field: "model", expected: "a valid model config (\(e))")
        }

        let space =
            try Space(rawValue: data.string("space", default: "latent"))
            ?? { throw ConfigError(file: source, field: "data.space", expected: "latent or pixel") }()
        if space == .pixel {
            // No VAE: the UNets read images; latent channels become RGB.
            model.unet.inChannels = 3 + 1 + 3 + 3; model.unet.referenceInChannels = 3; model.unet.outChannels = 3
        }
        let dataKind = try data.string("kind", default: "vitonhd")
        guard ["synthetic", "vitonhd", "dresscode", "deepfashion"].contains(dataKind) else {
            throw ConfigError(
                file: source, field: "data.kind",
                expected: "synthetic, vitonhd, dresscode or deepfashion, got \(dataKind)")
        }
        let dataRoot = try data.string("root"), dataSplit = try data.string("split", default: "train")
        let synthesize = try SyntheticDataConfig.parse(data, kind: dataKind, split: dataSplit, runSeed: seed)
        let dataOptions = try DataOptions.parse(data, kind: dataKind)
        data.finish()

        let opt = try training.section("optimizer")
        var adam = AdamWConfig()
        adam.beta1 = try opt.float("beta1", default: adam.beta1, in: 0..<1)
        adam.beta2 = try opt.float("beta2", default: adam.beta2, in: 0..<1)
        adam.eps = try opt.float("eps", default: adam.eps, in: 0...1)
        adam.weightDecay = try opt.float("weight_decay", default: adam.weightDecay, in: 0...10)
        opt.finish()
        let train = try training.strings("train", default: ["unet", "unet_encoder"])
        for t in train where t != "unet" && t != "unet_encoder" {
            throw ConfigError(
                file: source, field: "training.train", expected: "a list of unet and/or unet_encoder, got \(t)")
        }
        var cfg = RunConfig(
            source: source, text: text, name: name, seed: seed,
            model: model, space: space, initFrom: initFrom, train: train, adam: adam,
            gradClip: try training.float("grad_clip", default: 1.0, in: 0...1e9),
            ema: try EMAConfig.parse(training),
            referenceDropout: try training.float("reference_dropout", default: 0.1, in: 0...1),
            dataKind: dataKind, dataRoot: dataRoot, dataSplit: dataSplit, synthesize: synthesize,
            checkpointEvery: try training.int("checkpoint_every", default: 100, min: 1),
            checkpointEveryMinutes: try training.optionalDouble("checkpoint_every_minutes", above: 0, unit: "minutes"),
            keepCheckpoints: try training.int("keep_checkpoints", default: 3, min: 0),
            snapshotEvery: try training.int("snapshot_every", default: 0, min: 0),
            snapshotSamples: try training.int("snapshot_samples", default: 2, min: 1),
            snapshotLayers: try training.strings("snapshot_layers", default: []),
            logEvery: try training.int("log_every", default: 1, min: 1),
            stages: [])
        cfg.data = dataOptions
        let prediction = try training.string("prediction_type", default: "epsilon")
        guard let p = Prediction(rawValue: prediction) else {
            throw ConfigError(
                file: source, field: "training.prediction_type",
                expected: "epsilon, v_prediction or sample, got \(prediction)")
        }
        cfg.prediction = p
        cfg.activationCheckpointing = try training.bool("activation_checkpointing", default: false)
        if let v = try training.optionalSection("validation", expected: ValidationConfig.example) {
            var vc = ValidationConfig()
            vc.every = try v.int("every", default: 0, min: 0)
            vc.count = try v.int("count", default: vc.count, min: 1)
            vc.steps = try v.int("steps", default: vc.steps, min: 1)
            let schedule = NoiseSchedule().steps
            if vc.steps > schedule {
                throw v.fail("steps", "an integer in 1…\(schedule) (sampling steps), got \(vc.steps)")
            }
            vc.guidance = try v.float("guidance", default: vc.guidance, in: 0...100)
            if let split = try v.optionalString("split") {
                guard split == "test" || split == "train" else { throw v.fail("split", "test or train, got \(split)") }
                vc.split = split
            }
            vc.refAcceleration = try v.bool("ref_acceleration", default: false)
            // How to sample (the README says which settings are the published pipeline's).
            let scheduler = try v.string("scheduler", default: vc.scheduler.rawValue)
            guard let kind = SchedulerKind(rawValue: scheduler) else {
                throw v.fail("scheduler", "ddpm or ddim, got \(scheduler)")
            }
            vc.scheduler = kind
            vc.guidanceRescale = try v.float("guidance_rescale", default: vc.guidanceRescale, in: 0...100)
            vc.repaint = try v.bool("repaint", default: false)
            v.finish()
            cfg.validation = vc
        }
        training.finish()

        let stagesExpected = "a non-empty list of stages (name, resolution, steps, batch, lr)"
        guard let stagesNode else { throw r.missing("stages", stagesExpected) }
        guard let stageNodes = stagesNode.sequence, !stageNodes.isEmpty else {
            throw r.fail(
                "stages",
                "\(stagesExpected), got \(stagesNode.sequence != nil ? "an empty list" : Reader.describe(stagesNode))")
        }
        // The UNet takes any size (diffusers' upsample-to-skip rule); the VAE needs whole latents.
        let factor = space == .latent ? model.vae.downscale : 1
        for (i, node) in stageNodes.enumerated() {
            guard let m = node.mapping else {
                throw ConfigError(
                    file: source, field: "stages[\(i)]", expected: "a mapping, got \(Reader.describe(node))")
            }
            let s = r.child(m, path: "stages[\(i)].")
            let stageName = try s.string("name")
            let (h, w) = try s.size("resolution")
            if h % factor != 0 || w % factor != 0 {
                throw ConfigError(
                    file: source, field: "stages[\(i)].resolution",
                    expected:
                        "H×W with both sides multiples of \(factor) (the VAE's downscale) in latent space, got \(h)x\(w)"
                )
            }
            var st = StageConfig(
                name: stageName, height: h, width: w, steps: try s.int("steps", min: 1),
                batch: try s.int("batch", min: 1), gradAccum: try s.int("grad_accum", default: 1, min: 1),
                lr: try s.float("lr", in: 0...1), warmupSteps: try s.int("warmup_steps", default: 0, min: 0),
                schedule: try s.string("schedule", default: "constant"))
            if !["constant", "cosine"].contains(st.schedule) {
                throw ConfigError(
                    file: source, field: "stages[\(i)].schedule", expected: "constant or cosine, got \(st.schedule)")
            }
            if st.batch % st.gradAccum != 0 {
                throw ConfigError(
                    file: source, field: "stages[\(i)].grad_accum",
                    expected: "a divisor of batch \(st.batch), got \(st.gradAccum)")
            }
            if let l = try s.optionalSection(
                "leffa", expected: "a mapping of Leffa loss settings like {weight: 1.0e-3, tau: 2.0}")
            {
                var lc = LeffaLossConfig()
                lc.tau = try l.float("tau", default: lc.tau, in: 1e-6...1e6)
                lc.weight = try l.float("weight", default: lc.weight, in: 0...1e6)
                lc.timestepThreshold = try l.int("timestep_threshold", default: lc.timestepThreshold, min: 0)
                lc.minResolutionFraction = try l.float(
                    "min_resolution_fraction", default: lc.minResolutionFraction, in: 0...1)
                let layers = try l.strings("layers", default: [])
                if !layers.isEmpty {
                    let known = Set(UNet2DConditionModel.attentionLayers(model.unet).map(\.name))
                    for name in layers where !known.contains(name) {
                        throw ConfigError(
                            file: source, field: "stages[\(i)].leffa.layers",
                            expected:
                                "attention layer names like down_blocks.0.attentions.0.transformer_blocks.0.attn1, got \(name)"
                        )
                    }
                    lc.layers = layers
                }
                l.finish()
                st.leffa = lc
            }
            s.finish()
            cfg.stages.append(st)
        }
        let names = cfg.stages.map(\.name)
        if Set(names).count != names.count {
            throw ConfigError(file: source, field: "stages", expected: "unique stage names, got \(names)")
        }
        return cfg
    }
}

extension RunConfig {
    /// The rank counts that divide the global batch of every stage from `first` on, ascending
    /// (1 always among them).
    public func rankCounts(fromStage first: Int = 0) -> [Int] {
        let batches = stages.dropFirst(first).map(\.batch)
        return (1...max(1, batches.min() ?? 1)).filter { n in batches.allSatisfy { $0 % n == 0 } }
    }

    /// Refuses a rank count that does not split the global batch of every stage from `first` on:
    /// each rank takes an equal share of a step's samples (unequal shares would weight samples
    /// unequally, and the fixed order would need a different number of reductions per rank).
    /// Names the stage, both numbers and the rank counts that would work.
    public func checkRanks(_ ranks: Int, fromStage first: Int = 0, source: String) throws {
        guard let bad = stages.dropFirst(first).first(where: { $0.batch % ranks != 0 }) else { return }
        let fit = rankCounts(fromStage: first)
        let i = self.stages.firstIndex { $0.name == bad.name }!
        throw RunError(
            "\(source): field stages[\(i)].batch (stage \(bad.name)) is \(bad.batch), which \(ranks) ranks cannot split into equal shares; "
                + "rank counts that divide every\(first > 0 ? " remaining" : "") stage's batch: \(fit.map(String.init).joined(separator: ", "))"
        )
    }
}
