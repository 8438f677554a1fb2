// diffusers' Transformer2DModel as Leffa uses it: GroupNorm, 1×1 `proj_in`, one
// BasicTransformerBlock, 1×1 `proj_out`, residual. In the reference UNet a block records its
// normalised input; in the generative UNet the block's self-attention runs over its own tokens
// concatenated with that recorded reference feature (SPEC §2).
import LeffaTensor
import LeffaLayers

/// diffusers' `Attention` (to_q, to_k, to_v without bias, to_out.0 with bias).
public struct Attention {
    let to_q: Linear, to_k: Linear, to_v: Linear, to_out: Linear
    public let heads: Int

    public init(_ s: Scope, queryDim: Int, kvDim: Int? = nil, heads: Int, bias: Bool = false) {
        to_q = Linear(s / "to_q", queryDim, queryDim, bias: bias)
        to_k = Linear(s / "to_k", kvDim ?? queryDim, queryDim, bias: bias)
        to_v = Linear(s / "to_v", kvDim ?? queryDim, queryDim, bias: bias)
        to_out = Linear(s / "to_out" / 0, queryDim, queryDim)
        self.heads = heads
    }
}

/// GEGLU feed-forward: `net.0.proj` (C → 2·4C), value × GELU(gate), `net.2` (4C → C).
public struct FeedForward {
    let proj: Linear, out: Linear
    public init(_ s: Scope, _ dim: Int) {
        proj = Linear(s / "net" / 0 / "proj", dim, 2 * 4 * dim)
        out = Linear(s / "net" / 2, 4 * dim, dim)
    }
    public func callAsFunction(_ x: Tensor) -> Tensor { out(geglu(proj(x))) }
}

/// What flows between the two UNets during one forward pass.
public final class ReferenceContext {
    /// `norm1` outputs of the reference UNet's transformer blocks, in execution order (B, n, C).
    public var features: [Tensor] = []
    /// Next feature the generative UNet consumes.
    var cursor = 0
    /// The generative attention layers whose flow to keep, and its temperature.
    public var flowProbes: FlowProbes
    /// The probed layers' flows, in execution order.
    public var probes: [AttentionProbe] = []
    public init(flowProbes: FlowProbes = .none) { self.flowProbes = flowProbes }

    /// The next `count` reference features, for the generative layer or block `reader`.
    func take(_ count: Int, for reader: String) -> [Tensor] {
        precondition(
            cursor + count <= features.count,
            "\(reader): the reference UNet recorded \(features.count) features, the generative UNet needs more")
        defer { cursor += count }
        return Array(features[cursor..<(cursor + count)])
    }
}

public enum UNetRole { case reference, generative }

/// BasicTransformerBlock with the cross-attention removed (its `attn2` weights stay, unused).
public struct BasicTransformerBlock {
    let norm1: LayerNorm, attn1: Attention
    let norm2: LayerNorm, attn2: Attention
    let norm3: LayerNorm, ff: FeedForward
    let name: String // dotted path inside the UNet, for probes

    public init(_ s: Scope, dim: Int, heads: Int, crossAttentionDim: Int, name: String) {
        norm1 = LayerNorm(s / "norm1", dim)
        attn1 = Attention(s / "attn1", queryDim: dim, heads: heads)
        norm2 = LayerNorm(s / "norm2", dim)
        attn2 = Attention(s / "attn2", queryDim: dim, kvDim: crossAttentionDim, heads: heads)
        norm3 = LayerNorm(s / "norm3", dim)
        ff = FeedForward(s / "ff", dim)
        self.name = name
    }

    /// h (B, n, C) tokens of an h×w grid.
    func callAsFunction(_ h0: Tensor, role: UNetRole, context: ReferenceContext, grid: (Int, Int)) -> Tensor {
        var h = h0
        let x = norm1(h)
        let a = attn1
        switch role {
        case .reference:
            context.features.append(x)
            h = h + a.to_out(attention(a.to_q(x), a.to_k(x), a.to_v(x), heads: a.heads))
        case .generative:
            let ref = context.take(1, for: name)[0]
            shapeCheck(
                ref.shape == x.shape, "\(name).attn1 (reference feature)", x.shape, ref.shape,
                expected: "matching reference tokens")
            let both = concat([x, ref], dim: 1) // (B, 2n, C)
            let q = a.to_q(x) // only the target's n outputs are kept
            let k = a.to_k(both), v = a.to_v(both)
            if context.flowProbes.layers.contains(name + ".attn1") {
                // The flow reads the reference half of these very scores (SPEC §3).
                let n = x.shape[1], tau = context.flowProbes.tau
                let coords = coordinateValues(batch: x.shape[0], height: grid.0, width: grid.1, heads: a.heads)
                let (o, flow) = attention(
                    q, k, v, heads: a.heads, sharing: SharedScores(keys: n..<(2 * n), temperature: tau, values: coords))
                context.probes.append(
                    AttentionProbe(
                        layer: name + ".attn1", flow: flow, heads: a.heads,
                        height: grid.0, width: grid.1, tau: tau))
                h = h + a.to_out(o)
            } else {
                h = h + a.to_out(attention(q, k, v, heads: a.heads))
            }
        }
        h = h + norm2(h) // cross-attention replaced by a processor returning its input
        h = h + ff(norm3(h))
        return h
    }
}

public struct Transformer2DModel {
    let norm: GroupNorm, proj_in: Conv2d, block: BasicTransformerBlock, proj_out: Conv2d

    public init(_ s: Scope, channels: Int, heads: Int, groups: Int, crossAttentionDim: Int, name: String) {
        norm = GroupNorm(s / "norm", groups: groups, channels: channels, eps: 1e-6)
        proj_in = Conv2d(s / "proj_in", channels, channels, kernel: 1)
        block = BasicTransformerBlock(
            s / "transformer_blocks" / 0, dim: channels, heads: heads,
            crossAttentionDim: crossAttentionDim, name: name + ".transformer_blocks.0")
        proj_out = Conv2d(s / "proj_out", channels, channels, kernel: 1)
    }

    /// x (B, C, H, W) → (B, C, H, W).
    func callAsFunction(_ x: Tensor, role: UNetRole, context: ReferenceContext) -> Tensor {
        let (b, c, hh, ww) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        var h = proj_in(norm(x))
        h = h.permuted([0, 2, 3, 1]).reshaped([b, hh * ww, c])
        h = block(h, role: role, context: context, grid: (hh, ww))
        h = h.reshaped([b, hh, ww, c]).permuted([0, 3, 1, 2])
        return proj_out(h) + x
    }
}
