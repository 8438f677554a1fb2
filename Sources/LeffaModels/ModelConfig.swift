// Sizes of the Leffa model: the UNets' and the VAE's widths, depths, heads and groups. Presets
// `sd15` (the published model) and `tiny` (the golden fixture's); any custom sizes also work.
import Foundation

public struct UNetConfig: Codable, Equatable, Sendable {
    /// Generative UNet input: noisy latent 4, mask 1, masked-image latent 4, densepose 3.
    public var inChannels = 12
    /// Reference UNet input: a latent.
    public var referenceInChannels = 4
    public var outChannels = 4
    public var blockOutChannels = [320, 640, 1280, 1280]
    public var layersPerBlock = 2
    /// Heads per attention layer (diffusers spells this `attention_head_dim`); head size = width / heads.
    public var attentionHeads = 8
    public var normNumGroups = 32
    /// Width of the unused cross-attention keys/values (kept so `attn2` weights round-trip).
    public var crossAttentionDim = 768

    enum CodingKeys: String, CodingKey, CaseIterable {
        case inChannels = "in_channels", referenceInChannels = "reference_in_channels", outChannels = "out_channels"
        case blockOutChannels = "block_out_channels", layersPerBlock = "layers_per_block"
        case attentionHeads = "attention_heads", normNumGroups = "norm_num_groups", crossAttentionDim =
            "cross_attention_dim"
    }
    public init() {}
    public init(from d: Decoder) throws {
        let c = try d.container(keyedBy: CodingKeys.self)
        var s = UNetConfig()
        s.inChannels = try c.decodeIfPresent(Int.self, forKey: .inChannels) ?? s.inChannels
        s.referenceInChannels = try c.decodeIfPresent(Int.self, forKey: .referenceInChannels) ?? s.referenceInChannels
        s.outChannels = try c.decodeIfPresent(Int.self, forKey: .outChannels) ?? s.outChannels
        s.blockOutChannels = try c.decodeIfPresent([Int].self, forKey: .blockOutChannels) ?? s.blockOutChannels
        s.layersPerBlock = try c.decodeIfPresent(Int.self, forKey: .layersPerBlock) ?? s.layersPerBlock
        s.attentionHeads = try c.decodeIfPresent(Int.self, forKey: .attentionHeads) ?? s.attentionHeads
        s.normNumGroups = try c.decodeIfPresent(Int.self, forKey: .normNumGroups) ?? s.normNumGroups
        s.crossAttentionDim = try c.decodeIfPresent(Int.self, forKey: .crossAttentionDim) ?? s.crossAttentionDim
        self = s
    }

    /// The keys a `unet:` section may have: exactly those decoded (any other is refused).
    public static var keys: [String] { CodingKeys.allCases.map(\.rawValue) }

    public var timeEmbedDim: Int { 4 * blockOutChannels[0] }
    public var levels: Int { blockOutChannels.count }
}

public struct VAEConfig: Codable, Equatable, Sendable {
    public var blockOutChannels = [128, 256, 512, 512]
    public var layersPerBlock = 2
    public var normNumGroups = 32
    public var latentChannels = 4
    public var inChannels = 3
    public var scalingFactor: Float = 0.18215

    enum CodingKeys: String, CodingKey, CaseIterable {
        case blockOutChannels = "block_out_channels", layersPerBlock = "layers_per_block", normNumGroups =
            "norm_num_groups"
        case latentChannels = "latent_channels", inChannels = "in_channels", scalingFactor = "scaling_factor"
    }
    public init() {}
    public init(from d: Decoder) throws {
        let c = try d.container(keyedBy: CodingKeys.self)
        var s = VAEConfig()
        s.blockOutChannels = try c.decodeIfPresent([Int].self, forKey: .blockOutChannels) ?? s.blockOutChannels
        s.layersPerBlock = try c.decodeIfPresent(Int.self, forKey: .layersPerBlock) ?? s.layersPerBlock
        s.normNumGroups = try c.decodeIfPresent(Int.self, forKey: .normNumGroups) ?? s.normNumGroups
        s.latentChannels = try c.decodeIfPresent(Int.self, forKey: .latentChannels) ?? s.latentChannels
        s.inChannels = try c.decodeIfPresent(Int.self, forKey: .inChannels) ?? s.inChannels
        s.scalingFactor = try c.decodeIfPresent(Float.self, forKey: .scalingFactor) ?? s.scalingFactor
        self = s
    }
    /// The keys a `vae:` section may have: exactly those decoded (any other is refused).
    public static var keys: [String] { CodingKeys.allCases.map(\.rawValue) }

    /// Image pixels per latent pixel along each side.
    public var downscale: Int { 1 << (blockOutChannels.count - 1) }
}

/// The whole model: both UNets and the VAE.
public struct ModelConfig: Codable, Equatable, Sendable {
    public var unet = UNetConfig()
    public var vae = VAEConfig()
    public init(unet: UNetConfig = UNetConfig(), vae: VAEConfig = VAEConfig()) { self.unet = unet; self.vae = vae }

    /// SD1.5-inpainting sizes, as the published Leffa model.
    public static let sd15 = ModelConfig()

    /// The golden fixture's sizes (shared/fixtures/leffa_tiny/config.json).
    public static var tiny: ModelConfig {
        var u = UNetConfig()
        u.blockOutChannels = [32, 64, 64, 64]; u.layersPerBlock = 2; u.attentionHeads = 2
        u.normNumGroups = 8; u.crossAttentionDim = 32
        var v = VAEConfig()
        v.blockOutChannels = [16, 32, 32, 32]; v.layersPerBlock = 1; v.normNumGroups = 8
        return ModelConfig(unet: u, vae: v)
    }

    /// The benchmark's `small` size: widths 64,128,256,256; 2 layers; 8 heads; 32 groups.
    public static var small: ModelConfig {
        var u = UNetConfig()
        u.blockOutChannels = [64, 128, 256, 256]; u.layersPerBlock = 2; u.attentionHeads = 8
        u.normNumGroups = 32; u.crossAttentionDim = 64
        var v = VAEConfig()
        v.blockOutChannels = [32, 64, 64, 64]; v.layersPerBlock = 1; v.normNumGroups = 32
        return ModelConfig(unet: u, vae: v)
    }

    public static func preset(_ name: String) -> ModelConfig? {
        switch name {
        case "sd15": return .sd15;
        case "tiny": return .tiny;
        case "small": return .small;
        default: return nil
        }
    }

    /// Every reason these sizes cannot make a model, each naming the field.
    public func problems() -> [String] {
        var out: [String] = []
        let u = unet, v = vae
        if u.blockOutChannels.isEmpty { out.append("unet.block_out_channels: expected at least one width") }
        for (i, c) in u.blockOutChannels.enumerated() {
            if c <= 0 { out.append("unet.block_out_channels[\(i)]: expected a positive width, got \(c)") }
            if u.normNumGroups > 0 && c % u.normNumGroups != 0 {
                out.append(
                    "unet.block_out_channels[\(i)] = \(c): expected a multiple of norm_num_groups = \(u.normNumGroups)")
            }
            if u.attentionHeads > 0 && c % u.attentionHeads != 0 {
                out.append(
                    "unet.block_out_channels[\(i)] = \(c): expected a multiple of attention_heads = \(u.attentionHeads)"
                )
            }
        }
        if u.layersPerBlock < 1 { out.append("unet.layers_per_block: expected ≥ 1, got \(u.layersPerBlock)") }
        if u.attentionHeads < 1 { out.append("unet.attention_heads: expected ≥ 1, got \(u.attentionHeads)") }
        if u.normNumGroups < 1 { out.append("unet.norm_num_groups: expected ≥ 1, got \(u.normNumGroups)") }
        if u.inChannels < 1 || u.referenceInChannels < 1 || u.outChannels < 1 {
            out.append("unet.in_channels/reference_in_channels/out_channels: expected ≥ 1")
        }
        if u.crossAttentionDim < 1 { out.append("unet.cross_attention_dim: expected ≥ 1, got \(u.crossAttentionDim)") }
        if v.blockOutChannels.isEmpty { out.append("vae.block_out_channels: expected at least one width") }
        for (i, c) in v.blockOutChannels.enumerated() where v.normNumGroups > 0 && c % v.normNumGroups != 0 {
            out.append(
                "vae.block_out_channels[\(i)] = \(c): expected a multiple of norm_num_groups = \(v.normNumGroups)")
        }
        if v.layersPerBlock < 1 { out.append("vae.layers_per_block: expected ≥ 1, got \(v.layersPerBlock)") }
        return out
    }

    /// Checks that a latent of h×w fits the UNet: any positive size does (odd sides are rounded up
    /// going down and resized back going up, as diffusers' UNet does).
    public func checkLatentSize(_ h: Int, _ w: Int) throws {
        if h <= 0 || w <= 0 {
            throw ModelError.badSize("latent size \(h)×\(w): expected both sides ≥ 1")
        }
    }
}

public enum ModelError: Error, CustomStringConvertible {
    case badSize(String)
    case badConfig(String)
    public var description: String {
        switch self {
        case .badSize(let s), .badConfig(let s): return s
        }
    }
}

// MARK: - Loading

import Yams

extension ModelConfig {
    /// The keys of a model section this parser reads: a preset and the overrides of its sizes.
    public static let keys = ["preset", "unet", "vae"]

    /// Reads a model config from YAML or JSON (JSON is YAML): either the fixture's `config.json`
    /// layout (`unet:` and `vae:` sections) or `preset: sd15|tiny|small` with optional overrides
    /// in `unet:`/`vae:`. A `model:` section is read if the file has one (run configs nest it).
    /// Unknown keys inside `unet:` and `vae:` are refused; other top-level keys are left alone,
    /// because the fixture's config.json keeps the golden test's loss settings beside the sizes
    /// (run configs check their model section's keys themselves).
    public static func load(path: String) throws -> ModelConfig {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw ModelError.badConfig("\(path): cannot read the model config (\(error.localizedDescription))")
        }
        return try parse(text, source: path)
    }

    public static func parse(_ text: String, source: String) throws -> ModelConfig {
        let node: Yams.Node?
        do { node = try Yams.compose(yaml: text) } catch {
            throw ModelError.badConfig("\(source): not valid YAML/JSON: \(error)")
        }
        guard var root = node?.mapping else {
            throw ModelError.badConfig("\(source): expected a mapping with unet/vae sections or a preset")
        }
        if let model = root["model"]?.mapping { root = model }
        var config = ModelConfig.sd15
        if let presetNode = root["preset"] {
            guard let name = presetNode.string, let p = ModelConfig.preset(name) else {
                throw ModelError.badConfig(
                    "\(source): field preset: expected one of sd15, tiny, small, got \(root["preset"]?.string ?? "?")")
            }
            config = p
        }
        func decode<T: Decodable>(
            _ key: String, _ type: T.Type, keys: [String], over base: T, encoded: (T) throws -> Yams.Node
        ) throws -> T {
            guard let section = root[Yams.Node(key)] else { return base }
            // Overlay the section onto the base so unspecified fields keep the preset's values.
            var merged = try encoded(base).mapping ?? Yams.Node.Mapping([])
            guard let m = section.mapping else {
                throw ModelError.badConfig("\(source): field \(key): expected a mapping")
            }
            for (k, v) in m {
                let name = k.string ?? "?"
                guard keys.contains(name) else {
                    throw ModelError.badConfig(
                        "\(source): field \(key).\(name): \(ConfigKeys.unknown(name, valid: keys)); expected \(ConfigKeys.expected(keys))"
                    )
                }
                merged[k] = v
            }
            do { return try YAMLDecoder().decode(T.self, from: Yams.Node.mapping(merged)) } catch let e as DecodingError
            {
                throw ModelError.badConfig("\(source): field \(key).\(describe(e))")
            }
        }
        config.unet = try decode("unet", UNetConfig.self, keys: UNetConfig.keys, over: config.unet) {
            try Yams.compose(yaml: try YAMLEncoder().encode($0))!
        }
        config.vae = try decode("vae", VAEConfig.self, keys: VAEConfig.keys, over: config.vae) {
            try Yams.compose(yaml: try YAMLEncoder().encode($0))!
        }
        let problems = config.problems()
        if !problems.isEmpty { throw ModelError.badConfig("\(source): " + problems.joined(separator: "; ")) }
        return config
    }
}

/// "field: what was expected" from a decoding error.
func describe(_ e: DecodingError) -> String {
    func path(_ p: [CodingKey]) -> String {
        p.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    }
    switch e {
    case .typeMismatch(let t, let c): return "\(path(c.codingPath)): expected \(t)"
    case .valueNotFound(let t, let c): return "\(path(c.codingPath)): expected a \(t) value"
    case .keyNotFound(let k, let c): return "\(path(c.codingPath + [k])): missing"
    case .dataCorrupted(let c): return "\(path(c.codingPath)): \(c.debugDescription)"
    @unknown default: return "\(e)"
    }
}
