// The run config (Configs/*.yaml): model, initial weights, data, optimizer and the stages. Parsing
// turns every mistake into an error that names the file, the field and the expected form; nothing
// here touches the disk beyond reading the file.
import Foundation
import Yams
import LeffaLayers
import LeffaModels
import LeffaDiffusion

public struct ConfigError: Error, CustomStringConvertible {
    public let file: String, field: String, expected: String
    public var description: String { "\(file): field \(field): expected \(expected)" }
}

/// Where the latents come from: the VAE (SD1.5's latent diffusion) or the images themselves.
public enum Space: String, Sendable { case latent, pixel }

public struct StageConfig: Sendable, Equatable {
    public var name: String
    public var height: Int, width: Int      // image resolution
    public var steps: Int
    public var batch: Int                   // global batch per optimizer step
    public var gradAccum: Int = 1           // micro-steps per optimizer step (each batch/gradAccum samples)
    public var lr: Float
    public var warmupSteps: Int = 0
    public var schedule: String = "constant" // constant | cosine
    public var leffa: LeffaLossConfig? = nil
}

/// Validation sampling during training (`training.validation`): every `every` optimizer steps
/// (0 = off) and at each stage's last step, DDIM samples of the first `count` pairs of a fixed split.
public struct ValidationConfig: Sendable, Equatable {
    public var every = 0
    public var count = 4
    /// DDIM steps (1…1000).
    public var steps = 30
    /// Classifier-free guidance scale (1 = none).
    public var guidance: Float = 2.5
    /// "test" or "train"; nil: test when the data has a test split, else the training split.
    public var split: String? = nil
    /// Reference features computed once per sample instead of at every DDIM step (the published
    /// pipeline's `ref_acceleration`): about half the cost.
    public var refAcceleration = false
    public init() {}
    public var enabled: Bool { every > 0 }
    /// Whether to sample after optimizer step `step` of a stage of `stageSteps` steps: every
    /// `every` steps and at the stage's last step, so every stage leaves samples.
    public func due(step: Int, stageSteps: Int) -> Bool { enabled && step > 0 && (step % every == 0 || step == stageSteps) }
    static let keys = ["every", "count", "steps", "guidance", "split", "ref_acceleration"]
    static let example = "a mapping like {every: 1000, count: 4, steps: 30, guidance: 2.5}"
}

public struct RunConfig: Sendable {
    public var source: String
    public var text: String
    public var name: String
    public var seed: UInt64
    public var model: ModelConfig
    public var space: Space
    /// Initial weights: nil (random), ("leffa", file) or ("diffusers", folder).
    public var initFrom: (kind: String, path: String)?
    public var train: [String]              // which parts train: unet, unet_encoder
    public var adam = AdamWConfig()
    public var gradClip: Float = 1.0
    public var emaDecay: Float? = nil
    public var referenceDropout: Float = 0.1
    /// What the generative UNet predicts (`training.prediction_type`, diffusers' name): epsilon as
    /// SD1.5 and the published model, or sample / v_prediction.
    public var prediction: Prediction = .epsilon
    // data
    public var dataKind: String             // synthetic | vitonhd | dresscode | deepfashion
    public var dataRoot: String
    public var dataSplit: String = "train"
    public var synthCount: Int = 0, synthHeight: Int = 0, synthWidth: Int = 0
    // bookkeeping
    public var checkpointEvery: Int = 100
    /// Also checkpoint when this many minutes passed since the last one (nil: steps only).
    public var checkpointEveryMinutes: Double? = nil
    public var keepCheckpoints: Int = 3
    public var snapshotEvery: Int = 0
    public var snapshotSamples: Int = 2
    public var snapshotLayers: [String] = []
    public var logEvery: Int = 1
    public var validation = ValidationConfig()
    public var stages: [StageConfig]

    /// Reads and validates a run config.
    public static func load(path: String) throws -> RunConfig {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(file: path, field: "(file)", expected: "a readable UTF-8 YAML file")
        }
        return try parse(text, source: path)
    }

    public static func parse(_ text: String, source: String) throws -> RunConfig {
        let root: Yams.Node.Mapping
        do {
            guard let m = try Yams.compose(yaml: text)?.mapping else { throw ConfigError(file: source, field: "(top level)", expected: "a mapping") }
            root = m
        } catch let e as ConfigError { throw e } catch {
            throw ConfigError(file: source, field: "(syntax)", expected: "valid YAML (\(error))")
        }
        let r = Reader(file: source, node: root, path: "")
        let run = r.section("run")
        let modelNode = r.section("model")
        var model: ModelConfig
        do {
            let yaml = try Yams.serialize(node: Yams.Node.mapping(modelNode.node))
            model = try ModelConfig.parse(yaml.isEmpty ? "preset: sd15" : yaml, source: source)
        } catch let e as ModelError { throw ConfigError(file: source, field: "model", expected: "a valid model config (\(e))") }
        let data = r.section("data")
        let space = try Space(rawValue: data.string("space", default: "latent")) ?? { throw ConfigError(file: source, field: "data.space", expected: "latent or pixel") }()
        if space == .pixel {
            // No VAE: the UNets read images; latent channels become RGB.
            model.unet.inChannels = 3 + 1 + 3 + 3; model.unet.referenceInChannels = 3; model.unet.outChannels = 3
        }
        var initFrom: (String, String)? = nil
        if let i = modelNode.optionalSection("init") {
            if let p = try i.optionalString("leffa") { initFrom = ("leffa", p) }
            else if let p = try i.optionalString("diffusers") { initFrom = ("diffusers", p) }
            else { throw ConfigError(file: source, field: "model.init", expected: "leffa: FILE.safetensors or diffusers: FOLDER") }
        }
        let training = r.section("training")
        let opt = training.section("optimizer")
        var adam = AdamWConfig()
        adam.beta1 = try opt.float("beta1", default: adam.beta1, in: 0..<1)
        adam.beta2 = try opt.float("beta2", default: adam.beta2, in: 0..<1)
        adam.eps = try opt.float("eps", default: adam.eps, in: 0...1)
        adam.weightDecay = try opt.float("weight_decay", default: adam.weightDecay, in: 0...10)
        let train = try training.strings("train", default: ["unet", "unet_encoder"])
        for t in train where t != "unet" && t != "unet_encoder" {
            throw ConfigError(file: source, field: "training.train", expected: "a list of unet and/or unet_encoder, got \(t)")
        }
        let dataKind = try data.string("kind", default: "vitonhd")
        guard ["synthetic", "vitonhd", "dresscode", "deepfashion"].contains(dataKind) else {
            throw ConfigError(file: source, field: "data.kind", expected: "synthetic, vitonhd, dresscode or deepfashion, got \(dataKind)")
        }
        var cfg = RunConfig(
            source: source, text: text,
            name: try run.string("name", default: "leffa"),
            seed: UInt64(try run.int("seed", default: 0, min: 0)),
            model: model, space: space, initFrom: initFrom, train: train, adam: adam,
            gradClip: try training.float("grad_clip", default: 1.0, in: 0...1e9),
            emaDecay: try training.optionalFloat("ema_decay", in: 0..<1),
            referenceDropout: try training.float("reference_dropout", default: 0.1, in: 0...1),
            dataKind: dataKind, dataRoot: try data.string("root"), dataSplit: try data.string("split", default: "train"),
            checkpointEvery: try training.int("checkpoint_every", default: 100, min: 1),
            keepCheckpoints: try training.int("keep_checkpoints", default: 3, min: 1),
            snapshotEvery: try training.int("snapshot_every", default: 0, min: 0),
            snapshotSamples: try training.int("snapshot_samples", default: 2, min: 1),
            snapshotLayers: try training.strings("snapshot_layers", default: []),
            logEvery: try training.int("log_every", default: 1, min: 1),
            stages: [])
        let prediction = try training.string("prediction_type", default: "epsilon")
        guard let p = Prediction(rawValue: prediction) else {
            throw ConfigError(file: source, field: "training.prediction_type", expected: "epsilon, v_prediction or sample, got \(prediction)")
        }
        cfg.prediction = p
        cfg.checkpointEveryMinutes = try training.optionalFloat("checkpoint_every_minutes", in: 1e-6...1e7).map(Double.init)
        if let v = try training.optionalMapping("validation", expected: ValidationConfig.example) {
            try v.onlyKeys(ValidationConfig.keys)
            var vc = ValidationConfig()
            vc.every = try v.int("every", default: 0, min: 0)
            vc.count = try v.int("count", default: vc.count, min: 1)
            vc.steps = try v.int("steps", default: vc.steps, min: 1)
            let schedule = NoiseSchedule().steps
            if vc.steps > schedule { throw v.fail("steps", "an integer in 1…\(schedule) (DDIM steps), got \(vc.steps)") }
            vc.guidance = try v.float("guidance", default: vc.guidance, in: 0...100)
            if let split = try v.optionalString("split") {
                guard split == "test" || split == "train" else { throw v.fail("split", "test or train, got \(split)") }
                vc.split = split
            }
            vc.refAcceleration = try v.bool("ref_acceleration", default: false)
            cfg.validation = vc
        }
        if dataKind == "synthetic", let s = data.optionalSection("synthesize") {
            cfg.synthCount = try s.int("count", min: 1)
            (cfg.synthHeight, cfg.synthWidth) = try s.size("size")
        }
        guard let stageNodes = root["stages"]?.sequence, !stageNodes.isEmpty else {
            throw ConfigError(file: source, field: "stages", expected: "a non-empty list of stages (name, resolution, steps, batch, lr)")
        }
        let factor = space == .latent ? model.vae.downscale * model.unet.sizeMultiple : model.unet.sizeMultiple
        for (i, node) in stageNodes.enumerated() {
            guard let m = node.mapping else { throw ConfigError(file: source, field: "stages[\(i)]", expected: "a mapping") }
            let s = Reader(file: source, node: m, path: "stages[\(i)].")
            let (h, w) = try s.size("resolution")
            if h % factor != 0 || w % factor != 0 {
                throw ConfigError(file: source, field: "stages[\(i)].resolution", expected: "H×W with both sides multiples of \(factor) for this model, got \(h)x\(w)")
            }
            var st = StageConfig(name: try s.string("name"), height: h, width: w, steps: try s.int("steps", min: 1),
                                 batch: try s.int("batch", min: 1), gradAccum: try s.int("grad_accum", default: 1, min: 1),
                                 lr: try s.float("lr", in: 0...1), warmupSteps: try s.int("warmup_steps", default: 0, min: 0),
                                 schedule: try s.string("schedule", default: "constant"))
            if !["constant", "cosine"].contains(st.schedule) {
                throw ConfigError(file: source, field: "stages[\(i)].schedule", expected: "constant or cosine, got \(st.schedule)")
            }
            if st.batch % st.gradAccum != 0 {
                throw ConfigError(file: source, field: "stages[\(i)].grad_accum", expected: "a divisor of batch \(st.batch), got \(st.gradAccum)")
            }
            if let l = s.optionalSection("leffa") {
                var lc = LeffaLossConfig()
                lc.tau = try l.float("tau", default: lc.tau, in: 1e-6...1e6)
                lc.weight = try l.float("weight", default: lc.weight, in: 0...1e6)
                lc.timestepThreshold = try l.int("timestep_threshold", default: lc.timestepThreshold, min: 0)
                lc.minResolutionFraction = try l.float("min_resolution_fraction", default: lc.minResolutionFraction, in: 0...1)
                let layers = try l.strings("layers", default: [])
                if !layers.isEmpty {
                    let known = Set(UNet2DConditionModel.attentionLayers(model.unet).map(\.name))
                    for name in layers where !known.contains(name) {
                        throw ConfigError(file: source, field: "stages[\(i)].leffa.layers", expected: "attention layer names like down_blocks.0.attentions.0.transformer_blocks.0.attn1, got \(name)")
                    }
                    lc.layers = layers
                }
                st.leffa = lc
            }
            cfg.stages.append(st)
        }
        let names = cfg.stages.map(\.name)
        if Set(names).count != names.count { throw ConfigError(file: source, field: "stages", expected: "unique stage names, got \(names)") }
        return cfg
    }
}

/// Typed access to one YAML mapping with errors that carry the field's full path.
struct Reader {
    let file: String
    let node: Yams.Node.Mapping
    let path: String

    func section(_ key: String) -> Reader {
        Reader(file: file, node: node[Yams.Node(key)]?.mapping ?? Yams.Node.Mapping([]), path: path + key + ".")
    }
    func optionalSection(_ key: String) -> Reader? {
        node[Yams.Node(key)]?.mapping.map { Reader(file: file, node: $0, path: path + key + ".") }
    }
    /// A sub-mapping that may be absent (or null); present as anything else is an error.
    func optionalMapping(_ key: String, expected: String) throws -> Reader? {
        guard let n = node[Yams.Node(key)], n.null == nil else { return nil }
        guard let m = n.mapping else { throw fail(key, "\(expected), got \(n.string ?? "a list")") }
        return Reader(file: file, node: m, path: path + key + ".")
    }
    /// Refuses keys outside `allowed` (a misspelt option would otherwise be silently ignored).
    func onlyKeys(_ allowed: [String]) throws {
        for k in node.keys {
            let name = k.string ?? "?"
            if !allowed.contains(name) { throw fail(name, "one of the keys \(allowed.joined(separator: ", ")), got unknown key \(name)") }
        }
    }
    func fail(_ key: String, _ expected: String) -> ConfigError { ConfigError(file: file, field: path + key, expected: expected) }

    func optionalString(_ key: String) throws -> String? {
        guard let n = node[Yams.Node(key)] else { return nil }
        guard let s = n.string, n.scalar != nil else { throw fail(key, "a string") }
        return s
    }
    func string(_ key: String, default d: String? = nil) throws -> String {
        if let s = try optionalString(key) { return s }
        if let d { return d }
        throw fail(key, "a string (required)")
    }
    func bool(_ key: String, default d: Bool) throws -> Bool {
        guard let n = node[Yams.Node(key)] else { return d }
        guard let v = n.bool else { throw fail(key, "true or false, got \(n.string ?? "?")") }
        return v
    }
    func int(_ key: String, default d: Int? = nil, min: Int) throws -> Int {
        guard let n = node[Yams.Node(key)] else { if let d { return d }; throw fail(key, "an integer ≥ \(min) (required)") }
        guard let v = n.int, v >= min else { throw fail(key, "an integer ≥ \(min), got \(n.string ?? "?")") }
        return v
    }
    func optionalFloat(_ key: String, in range: ClosedRange<Float>) throws -> Float? {
        guard let n = node[Yams.Node(key)] else { return nil }
        if n.null != nil { return nil }
        guard let v = n.float.map(Float.init), range.contains(v) else { throw fail(key, "a number in \(range.lowerBound)…\(range.upperBound), got \(n.string ?? "?")") }
        return v
    }
    func optionalFloat(_ key: String, in range: Range<Float>) throws -> Float? {
        guard let n = node[Yams.Node(key)] else { return nil }
        if n.null != nil { return nil }
        guard let v = n.float.map(Float.init), range.contains(v) else { throw fail(key, "a number in [\(range.lowerBound), \(range.upperBound)), got \(n.string ?? "?")") }
        return v
    }
    func float(_ key: String, default d: Float? = nil, in range: ClosedRange<Float>) throws -> Float {
        if let v = try optionalFloat(key, in: range) { return v }
        if let d { return d }
        throw fail(key, "a number in \(range.lowerBound)…\(range.upperBound) (required)")
    }
    func float(_ key: String, default d: Float, in range: Range<Float>) throws -> Float {
        try optionalFloat(key, in: range) ?? d
    }
    func strings(_ key: String, default d: [String]) throws -> [String] {
        guard let n = node[Yams.Node(key)] else { return d }
        guard let seq = n.sequence else { throw fail(key, "a list of strings") }
        return try seq.map { guard let s = $0.string else { throw fail(key, "a list of strings") }; return s }
    }
    /// "512x384" (height × width).
    func size(_ key: String) throws -> (Int, Int) {
        let s = try string(key)
        let parts = s.lowercased().split(separator: "x").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard parts.count == 2, parts[0] > 0, parts[1] > 0 else { throw fail(key, "HEIGHTxWIDTH like 512x384, got \(s)") }
        return (parts[0], parts[1])
    }
}
