// Weights for inference: the published Leffa layout (one safetensors file, `unet.*`,
// `unet_encoder.*`, `vae.*`) or diffusers folders (`unet/`, `unet_encoder/`, `vae/`, each with
// diffusion_pytorch_model.safetensors and a config.json diffusers can read), and the import of
// such folders back into a model; values in float32, float16 or bfloat16 (readers convert back to
// float32). Not the SD1.5 initialisation (Weights.swift: importDiffusers).
import Foundation
import LeffaTensor
import SafeTensors
import LeffaModels

public enum ExportFormat: String, Sendable, CaseIterable { case leffa, diffusers }

/// The element type an export is written in. Training is float32; published SD1.5 weights ship in
/// float16, which halves the files. Readers here convert either back to float32 exactly.
public enum ExportDType: String, Sendable, CaseIterable {
    case float32, float16, bfloat16

    public var safeTensors: SafeTensorsDType {
        switch self {
        case .float32: return .f32
        case .float16: return .f16
        case .bfloat16: return .bf16
        }
    }

    /// The smallest magnitude that rounds to ±inf in this type (round to nearest, ties to even:
    /// halfway between the largest finite value and the next power of two); nil for float32.
    public var overflowThreshold: Float? {
        switch self {
        case .float32: return nil
        case .float16: return 65520 // 65504 + half an ulp (16)
        case .bfloat16: return Float(bitPattern: 0x7F7F_8000) // 0x1.FEp127 + half an ulp
        }
    }

    /// The largest finite value, for messages.
    public var largestFinite: Float {
        switch self {
        case .float32: return .greatestFiniteMagnitude
        case .float16: return 65504
        case .bfloat16: return Float(bitPattern: 0x7F7F_0000)
        }
    }
}

/// One safetensors file an export wrote (what `export --json` reports).
public struct ExportedFile: Sendable, Equatable, Encodable {
    public var path: String
    public var tensors: Int
    public var bytes: Int
}

extension LeffaModel {
    /// Writes the model in `format` at `path` (a file for leffa, a folder for diffusers), its
    /// values stored as `dtype` (recorded as metadata `dtype`). `sampleSize` is the latent (or
    /// pixel) side diffusers records as `sample_size`. Returns the weights files written.
    /// Refuses, before writing anything, weights `dtype` cannot hold (`checkRange`).
    @discardableResult
    public func export(
        format: ExportFormat, to path: String, sampleSize: Int, dtype: ExportDType = .float32,
        metadata: [String: String] = [:]
    ) throws -> [ExportedFile] {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue != (format == .diffusers)
        {
            throw RunError(
                "\(path): --out exists and is a \(isDir.boolValue ? "folder" : "file"); expected \(format == .diffusers ? "a folder (or a new path) for --format diffusers" : "a file path for --format leffa")"
            )
        }
        try checkRange(for: dtype)
        let metadata = metadata.merging(["dtype": dtype.rawValue]) { $1 }
        let files: [(path: String, tensors: Int)]
        switch format {
        case .leffa:
            let dir = URL(fileURLWithPath: path).deletingLastPathComponent()
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            try saveWeights(to: path, dtype: dtype.safeTensors, metadata: metadata)
            files = [(path, parameters.all.count)]
        case .diffusers:
            try exportDiffusers(folder: path, sampleSize: sampleSize, dtype: dtype, metadata: metadata)
            files = Self.diffusersParts.map {
                (path + "/\($0)/diffusion_pytorch_model.safetensors", parameters(of: $0).count)
            }
        }
        return try files.map { f in
            let size = try FileManager.default.attributesOfItem(atPath: f.path)[.size] as? Int ?? 0
            return ExportedFile(path: f.path, tensors: f.tensors, bytes: size)
        }
    }

    /// The diffusers folders, one per model part.
    static let diffusersParts = ["unet", "unet_encoder", "vae"]

    /// Refuses weights that `dtype` would store as ±inf (a model sampling NaNs, found only later),
    /// naming the first tensor with such values, its count and largest magnitude, and the totals.
    public func checkRange(for dtype: ExportDType) throws {
        guard let limit = dtype.overflowThreshold else { return }
        var first: (name: String, count: Int, largest: Float)? = nil
        var total = 0, tensors = 0, largest: Float = 0
        for p in parameters.all {
            let v = p.value.data
            var n = 0, m: Float = 0
            for i in 0..<p.count {
                let a = abs(v[i])
                if a >= limit && a.isFinite { n += 1; m = max(m, a) }
            }
            guard n > 0 else { continue }
            if first == nil { first = (p.name, n, m) }
            total += n; tensors += 1; largest = max(largest, m)
        }
        guard let first else { return }
        let others =
            tensors > 1 ? "; \(total) values in \(tensors) tensors in all (largest |value| \(largest))" : ""
        let values = first.count == 1 ? "1 value of \(first.name) is" : "\(first.count) values of \(first.name) are"
        throw RunError(
            "cannot export as \(dtype.rawValue): \(values) beyond its range (largest |value| \(first.largest), \(dtype.rawValue) holds up to \(dtype.largestFinite)) and would be written as inf\(others). Export as float32\(dtype == .float16 ? " or bfloat16" : "")"
        )
    }

    /// Diffusers folders: `unet/` (generative), `unet_encoder/` (reference), `vae/`; keys without
    /// the part prefix, as diffusers' `from_pretrained` reads them.
    /// Everything is written into a temporary sibling folder first and moved into place at the
    /// end, so a failure (a full disk) leaves no half-written part behind.
    public func exportDiffusers(
        folder: String, sampleSize: Int, dtype: ExportDType = .float32, metadata: [String: String] = [:]
    ) throws {
        let fm = FileManager.default
        let dest = URL(fileURLWithPath: folder).standardizedFileURL
        let root = dest.deletingLastPathComponent().appendingPathComponent(
            ".\(dest.lastPathComponent).partial-\(getpid())")
        try? fm.removeItem(at: root)
        defer { try? fm.removeItem(at: root) }
        try writeDiffusers(into: root, sampleSize: sampleSize, dtype: dtype, metadata: metadata)
        try fm.createDirectory(at: dest, withIntermediateDirectories: true)
        for part in try fm.contentsOfDirectory(atPath: root.path) {
            let target = dest.appendingPathComponent(part)
            if fm.fileExists(atPath: target.path) { try fm.removeItem(at: target) }
            try fm.moveItem(at: root.appendingPathComponent(part), to: target)
        }
    }

    func writeDiffusers(into root: URL, sampleSize: Int, dtype: ExportDType, metadata: [String: String]) throws {
        let configs = diffusersConfigs(sampleSize: sampleSize)
        for part in Self.diffusersParts {
            let dir = root.appendingPathComponent(part)
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            var w = SafeTensorsWriter(metadata: metadata.merging(["format": "pt"]) { $1 })
            for p in parameters(of: part) {
                w.add(String(p.name.dropFirst(part.count + 1)), p.value, as: dtype.safeTensors)
            }
            try w.write(to: dir.appendingPathComponent("diffusion_pytorch_model.safetensors"))
            let json = try JSONSerialization.data(
                withJSONObject: configs[part]!, options: [.prettyPrinted, .sortedKeys])
            try atomicWrite(json, to: dir.appendingPathComponent("config.json"))
        }
        // The noise schedule the model was trained with (SPEC §2), and what it predicts, so a
        // diffusers pipeline samples it as trained: DDPMScheduler.from_pretrained(folder/scheduler).
        let scheduler: [String: Any] = [
            "_class_name": "DDPMScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
            "beta_schedule": "scaled_linear", "prediction_type": metadata["prediction_type"] ?? "epsilon",
            "steps_offset": 1, "clip_sample": false, "set_alpha_to_one": false
        ]
        let dir = root.appendingPathComponent("scheduler")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try atomicWrite(
            try JSONSerialization.data(withJSONObject: scheduler, options: [.prettyPrinted, .sortedKeys]),
            to: dir.appendingPathComponent("scheduler_config.json"))
    }

    /// Loads folders written by `exportDiffusers`, in any dtype: every key of each part exactly (no
    /// conv_in surgery), after checking each config.json against this model's sizes.
    public func loadDiffusersExport(folder: String) throws {
        let want = diffusersConfigs(sampleSize: 0)
        for part in Self.diffusersParts {
            let dir = folder + "/" + part
            if let data = FileManager.default.contents(atPath: dir + "/config.json") {
                guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                    throw WeightsError.incompatible("\(dir)/config.json: not a JSON object")
                }
                for key in [
                    "in_channels", "out_channels", "block_out_channels", "layers_per_block", "norm_num_groups",
                    "attention_head_dim", "latent_channels"
                ] {
                    guard let mine = want[part]![key], let theirs = json[key] else { continue }
                    if plain(mine) != plain(theirs) {
                        throw WeightsError.incompatible(
                            "\(dir)/config.json: field \(key) is \(theirs), the model config expects \(mine)")
                    }
                }
            }
            let file = try SafeTensorsFile(path: dir + "/diffusion_pytorch_model.safetensors")
            let ps = parameters(of: part)
            try file.checkKeys(expected: ps.map { String($0.name.dropFirst(part.count + 1)) })
            for p in ps { try file.load(String(p.name.dropFirst(part.count + 1)), into: p.value) }
        }
    }

    /// Ints and lists of ints as text, whether they come from Swift or from JSON.
    private func plain(_ x: Any) -> String {
        if let a = x as? [Int] { return a.map(String.init).joined(separator: ",") }
        if let i = x as? Int { return String(i) }
        return "\(x)"
    }

    /// diffusers-style config.json contents for the three parts.
    public func diffusersConfigs(sampleSize: Int) -> [String: [String: Any]] {
        let u = config.unet, v = config.vae, n = u.levels
        let down = (0..<n).map { $0 < n - 1 ? "CrossAttnDownBlock2D" : "DownBlock2D" }
        let up = (0..<n).map { $0 == 0 ? "UpBlock2D" : "CrossAttnUpBlock2D" }
        func unet(inChannels: Int, role: String) -> [String: Any] {
            [
                "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.25.0", "leffa_role": role,
                "in_channels": inChannels, "out_channels": u.outChannels, "block_out_channels": u.blockOutChannels,
                "layers_per_block": u.layersPerBlock, "attention_head_dim": u.attentionHeads,
                "norm_num_groups": u.normNumGroups,
                "cross_attention_dim": u.crossAttentionDim, "down_block_types": down, "up_block_types": up,
                "mid_block_type": "UNetMidBlock2DCrossAttn", "sample_size": sampleSize, "act_fn": "silu",
                "norm_eps": 1e-5,
                "center_input_sample": false, "flip_sin_to_cos": true, "freq_shift": 0, "downsample_padding": 1,
                "mid_block_scale_factor": 1, "use_linear_projection": false, "only_cross_attention": false,
                "upcast_attention": false, "dual_cross_attention": false
            ]
        }
        let vae: [String: Any] = [
            "_class_name": "AutoencoderKL", "_diffusers_version": "0.25.0",
            "in_channels": v.inChannels, "out_channels": v.inChannels, "block_out_channels": v.blockOutChannels,
            "layers_per_block": v.layersPerBlock, "latent_channels": v.latentChannels,
            "norm_num_groups": v.normNumGroups,
            "down_block_types": Array(repeating: "DownEncoderBlock2D", count: v.blockOutChannels.count),
            "up_block_types": Array(repeating: "UpDecoderBlock2D", count: v.blockOutChannels.count),
            "act_fn": "silu", "sample_size": sampleSize * v.downscale, "scaling_factor": v.scalingFactor
        ]
        return [
            "unet": unet(inChannels: u.inChannels, role: "generative"),
            "unet_encoder": unet(inChannels: u.referenceInChannels, role: "reference"), "vae": vae
        ]
    }
}
