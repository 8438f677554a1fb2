// What an attention layer exposes to a loss that supervises its attention: the Leffa loss turns
// these queries and keys into a flow field without knowing which model produced them.
import LeffaTensor

/// The target queries and reference keys of one generative self-attention layer, exactly as the
/// layer projects them: what the Leffa loss turns into a flow field.
public struct AttentionProbe {
    public let layer: String          // e.g. "down_blocks.0.attentions.0.transformer_blocks.0.attn1"
    public let query: Tensor          // (B, n, C), the target tokens' queries
    public let key: Tensor            // (B, n, C), the reference tokens' keys
    public let heads: Int
    public let height: Int, width: Int // token grid h_l × w_l

    public init(layer: String, query: Tensor, key: Tensor, heads: Int, height: Int, width: Int) {
        self.layer = layer; self.query = query; self.key = key; self.heads = heads; self.height = height; self.width = width
    }
}

