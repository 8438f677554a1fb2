// Weights for inference: the published Leffa layout (one safetensors file, `unet.*`,
// `unet_encoder.*`, `vae.*`) or diffusers folders (`unet/`, `unet_encoder/`, `vae/`, each with
// diffusion_pytorch_model.safetensors and a config.json diffusers can read), and the import of
// such folders back into a model. Not the SD1.5 initialisation (Weights.swift: importDiffusers).
import Foundation
import LeffaTensor
import SafeTensors
import LeffaModels

public enum ExportFormat: String, Sendable, CaseIterable { case leffa, diffusers }

extension LeffaModel {
    /// Writes the model in `format` at `path` (a file for leffa, a folder for diffusers).
    /// `sampleSize` is the latent (or pixel) side diffusers records as `sample_size`.
    public func export(format: ExportFormat, to path: String, sampleSize: Int, metadata: [String: String] = [:]) throws
    {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue != (format == .diffusers)
        {
            throw RunError(
                "\(path): --out exists and is a \(isDir.boolValue ? "folder" : "file"); expected \(format == .diffusers ? "a folder (or a new path) for --format diffusers" : "a file path for --format leffa")"
            )
        }
        switch format {
        case .leffa:
            let dir = URL(fileURLWithPath: path).deletingLastPathComponent()
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            try saveWeights(to: path, metadata: metadata)
        case .diffusers:
            try exportDiffusers(folder: path, sampleSize: sampleSize, metadata: metadata)
        }
    }

    /// Diffusers folders: `unet/` (generative), `unet_encoder/` (reference), `vae/`; keys without
    /// the part prefix, as diffusers' `from_pretrained` reads them.
    /// Everything is written into a temporary sibling folder first and moved into place at the
    /// end, so a failure (a full disk) leaves no half-written part behind.
    public func exportDiffusers(folder: String, sampleSize: Int, metadata: [String: String] = [:]) throws {
        let fm = FileManager.default
        let dest = URL(fileURLWithPath: folder).standardizedFileURL
        let root = dest.deletingLastPathComponent().appendingPathComponent(
            ".\(dest.lastPathComponent).partial-\(getpid())")
        try? fm.removeItem(at: root)
        defer { try? fm.removeItem(at: root) }
        try writeDiffusers(into: root, sampleSize: sampleSize, metadata: metadata)
        try fm.createDirectory(at: dest, withIntermediateDirectories: true)
        for part in try fm.contentsOfDirectory(atPath: root.path) {
            let target = dest.appendingPathComponent(part)
            if fm.fileExists(atPath: target.path) { try fm.removeItem(at: target) }
            try fm.moveItem(at: root.appendingPathComponent(part), to: target)
        }
    }

    func writeDiffusers(into root: URL, sampleSize: Int, metadata: [String: String]) throws {
        let configs = diffusersConfigs(sampleSize: sampleSize)
        for part in ["unet", "unet_encoder", "vae"] {
            let dir = root.appendingPathComponent(part)
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            var w = SafeTensorsWriter(metadata: metadata.merging(["format": "pt"]) { $1 })
            for p in parameters(of: part) { w.add(String(p.name.dropFirst(part.count + 1)), p.value, as: .f32) }
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

    /// Loads folders written by `exportDiffusers`: every key of each part exactly (no conv_in
    /// surgery), after checking each config.json against this model's sizes.
    public func loadDiffusersExport(folder: String) throws {
        let want = diffusersConfigs(sampleSize: 0)
        for part in ["unet", "unet_encoder", "vae"] {
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
