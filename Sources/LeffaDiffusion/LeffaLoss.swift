// The Leffa loss (SPEC §3): each selected generative attention layer's target→reference attention,
// averaged over heads, applied to the reference token grid's coordinates is a flow field; the
// reference image warped by that flow (upsampled to image size) should match the target inside
// the mask. The layers compute the per-head flows from their own score tiles (AttentionProbe,
// `attention(sharing:)`), so no n×n attention map is ever held and no Q·Kᵀ is done twice.
import Foundation
import LeffaTensor
import LeffaLayers

public struct LeffaLossConfig: Codable, Equatable, Sendable {
    /// Softmax temperature τ: scores are Q·Kᵀ / (√d · τ).
    public var tau: Float = 2.0
    /// λ in total = diffusion + λ · Leffa.
    public var weight: Float = 1e-3
    /// Samples with t ≥ threshold are gated out.
    public var timestepThreshold: Int = 500
    /// Layers whose token grid is at least this fraction of the image resolution.
    public var minResolutionFraction: Float = 1.0 / 32
    /// Explicit layer names, overriding the resolution cut when set.
    public var layers: [String]? = nil

    public init() {}
    enum CodingKeys: String, CodingKey {
        case tau, weight = "leffa_weight", timestepThreshold = "timestep_threshold"
        case minResolutionFraction = "min_resolution_fraction", layers = "flow_layers"
    }
    public init(from d: Decoder) throws {
        let c = try d.container(keyedBy: CodingKeys.self)
        var s = LeffaLossConfig()
        s.tau = try c.decodeIfPresent(Float.self, forKey: .tau) ?? s.tau
        s.weight = try c.decodeIfPresent(Float.self, forKey: .weight) ?? s.weight
        s.timestepThreshold = try c.decodeIfPresent(Int.self, forKey: .timestepThreshold) ?? s.timestepThreshold
        s.minResolutionFraction =
            try c.decodeIfPresent(Float.self, forKey: .minResolutionFraction) ?? s.minResolutionFraction
        s.layers = try c.decodeIfPresent([String].self, forKey: .layers)
        self = s
    }

    /// The layers the loss uses, from all attention layers (name, downsampling factor vs. the
    /// latent) at a given latent and image height.
    public func selectLayers(_ all: [(name: String, factor: Int)], latentHeight: Int, imageHeight: Int) -> [String] {
        if let layers { return layers }
        return all.filter {
            // The layer's token rows: each stride-2 downsampler (3×3, padding 1) takes ⌈n/2⌉.
            var grid = latentHeight, f = $0.factor
            while f > 1 { grid = (grid + 1) / 2; f /= 2 }
            return Float(grid) / Float(imageHeight) >= minResolutionFraction - 1e-7
        }.map(\.name)
    }
}

public struct LeffaLossResult {
    /// Mean over the batch of gate · Σ_layers loss, shape [1].
    public let loss: Tensor
    /// Each layer's flow field (B, h_l, w_l, 2), (x, y) in [−1, 1].
    public let flows: [(layer: String, flow: Tensor)]
    /// Each layer's reference warped by its upsampled flow (B, 3, H, W).
    public let warped: [(layer: String, image: Tensor)]
}

/// The flow field of one probed layer: mean over heads of its per-head flows → (B, h, w, 2).
public func flowField(_ probe: AttentionProbe) -> Tensor {
    let b = probe.flow.shape[0], n = probe.flow.shape[1]
    shapeCheck(
        probe.flow.rank == 3 && n == probe.height * probe.width && probe.flow.shape[2] == probe.heads * 2,
        "flowField(\(probe.layer))", probe.flow.shape,
        expected: "per-head flows (B, \(probe.height)·\(probe.width), \(probe.heads)·2)")
    let flow = mean(probe.flow.reshaped([b, n, probe.heads, 2]), axes: [2]) // (B, n, 2)
    return flow.reshaped([b, probe.height, probe.width, 2])
}

/// Leffa loss over the probes of one forward pass.
/// refImage, tgtImage (B, 3, H, W) in [−1, 1]; mask (B, 1, H, W); timesteps (B).
public func leffaLoss(
    _ probes: [AttentionProbe], refImage: Tensor, tgtImage: Tensor, mask: Tensor,
    timesteps: [Int], config: LeffaLossConfig, keep: Bool = false
) -> LeffaLossResult {
    let b = refImage.shape[0], hh = refImage.shape[2], ww = refImage.shape[3]
    shapeCheck(
        tgtImage.shape == refImage.shape && mask.shape == [b, 1, hh, ww] && timesteps.count == b,
        "leffaLoss", refImage.shape, tgtImage.shape, mask.shape,
        expected: "images (B,3,H,W), mask (B,1,H,W), B timesteps")
    let gate = Tensor(timesteps.map { $0 < config.timestepThreshold ? Float(1) : 0 }, shape: [b])
    var total: Tensor? = nil
    var flows: [(String, Tensor)] = [], warped: [(String, Tensor)] = []
    for probe in probes {
        precondition(
            probe.tau == config.tau,
            "leffaLoss: \(probe.layer) was probed at τ = \(probe.tau), the loss is configured with τ = \(config.tau)")
        let flow = flowField(probe) // (B, h, w, 2)
        // Steps 4–6 fused: upsample, warp, masked squared error, no image-sized temporaries.
        let perSample = flowWarpLoss(flow: flow, reference: refImage, target: tgtImage, mask: mask) // (B)
        total = total.map { $0 + perSample } ?? perSample
        if keep {
            // The warped image only for inspection (snapshots, golden checks): no graph.
            let warp = GradMode.withoutGrad {
                gridSample(refImage, resizeBilinear(flow.permuted([0, 3, 1, 2]), size: (hh, ww)).permuted([0, 2, 3, 1]))
            } // (B, 3, H, W)
            flows.append((probe.layer, flow)); warped.append((probe.layer, warp))
        }
    }
    let loss = total.map { mean($0 * gate) } ?? Tensor(zeros: [1])
    return LeffaLossResult(loss: loss, flows: flows, warped: warped)
}

extension LeffaLossConfig {
    /// Reads loss settings from a JSON/YAML file's top level or its `leffa:` section; absent
    /// fields keep their defaults.
    public static func load(path: String) throws -> LeffaLossConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw LeffaLossConfigError(message: "\(path): cannot read the config")
        }
        if let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
            let section = (json["leffa"] as? [String: Any]) ?? json
            do {
                return try JSONDecoder().decode(
                    LeffaLossConfig.self, from: JSONSerialization.data(withJSONObject: section))
            } catch { throw LeffaLossConfigError(message: "\(path): loss settings: \(error)") }
        }
        return LeffaLossConfig()
    }
}

public struct LeffaLossConfigError: Error, CustomStringConvertible {
    public let message: String; public var description: String { message }
}
