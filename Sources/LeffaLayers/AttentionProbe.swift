// What an attention layer exposes to a loss that supervises its attention: the Leffa flow field,
// the layer's target→reference attention applied to the reference grid's coordinates. The layer
// computes it from its own score tiles (`attention(sharing:)`), so the loss never repeats the
// attention's Q·Kᵀ work; the loss turns the flows into its value without knowing which model
// produced them.
import LeffaTensor

/// Which generative self-attention layers to read a flow from, and the flow's softmax
/// temperature τ (its scores are the layer's own, Q·Kᵀ/√d, divided by τ).
public struct FlowProbes: Sendable {
    public var layers: Set<String>
    public var tau: Float
    public init(layers: Set<String>, tau: Float) { self.layers = layers; self.tau = tau }
    /// No layer probed.
    public static let none = FlowProbes(layers: [], tau: 1)
}

/// One probed layer's flow: per head, softmax(Q·K_refᵀ/(√d·τ)) · C for the target queries Q, the
/// reference keys K_ref and the reference grid's coordinates C.
public struct AttentionProbe {
    public let layer: String // e.g. "down_blocks.0.attentions.0.transformer_blocks.0.attn1"
    public let flow: Tensor // (B, n, heads·2): (x, y) in [−1, 1] per head
    public let heads: Int
    public let height: Int, width: Int // token grid h_l × w_l, n = h_l·w_l
    public let tau: Float

    public init(layer: String, flow: Tensor, heads: Int, height: Int, width: Int, tau: Float) {
        self.layer = layer; self.flow = flow; self.heads = heads; self.height = height; self.width = width;
        self.tau = tau
    }
}

/// Token coordinates of an h×w grid, row-major, (x, y) with x, y = linspace(−1, 1), repeated
/// for `heads` heads: (B, h·w, heads·2), the values of a flow probe's softmax.
public func coordinateValues(batch: Int, height h: Int, width w: Int, heads: Int) -> Tensor {
    let out = Tensor(zeros: [batch, h * w, heads * 2])
    func lin(_ i: Int, _ n: Int) -> Float { n == 1 ? -1 : -1 + 2 * Float(i) / Float(n - 1) }
    let p = out.data
    for b in 0..<batch {
        for r in 0..<h {
            for c in 0..<w {
                let row = p + (b * h * w + r * w + c) * heads * 2
                for k in 0..<heads { row[2 * k] = lin(c, w); row[2 * k + 1] = lin(r, h) }
            }
        }
    }
    return out
}
