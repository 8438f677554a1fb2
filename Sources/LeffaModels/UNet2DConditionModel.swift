// The UNet of SD1.5 (diffusers' UNet2DConditionModel, names and order kept), in one of two roles:
// the reference UNet records the normalised input of every transformer block; the generative UNet
// attends over its own tokens and those recorded features, and predicts the noise.
import LeffaTensor
import LeffaLayers

public struct UNet2DConditionModel {
    public let role: UNetRole
    public let config: UNetConfig
    let conv_in: Conv2d
    let linear_1: Linear, linear_2: Linear // time_embedding
    let down_blocks: [DownBlock]
    let mid_block: MidBlock
    let up_blocks: [UpBlock]
    let conv_norm_out: GroupNorm, conv_out: Conv2d

    /// Registers every parameter under `s` (e.g. `unet` or `unet_encoder`).
    public init(_ s: Scope, config c: UNetConfig, role: UNetRole) {
        self.role = role
        self.config = c
        let ch = c.blockOutChannels, g = c.normNumGroups, heads = c.attentionHeads, temb = c.timeEmbedDim
        let levels = ch.count, cross = c.crossAttentionDim
        conv_in = Conv2d(
            s / "conv_in", role == .generative ? c.inChannels : c.referenceInChannels, ch[0], kernel: 3, padding: 1)
        linear_1 = Linear(s / "time_embedding" / "linear_1", ch[0], temb)
        linear_2 = Linear(s / "time_embedding" / "linear_2", temb, temb)

        // SD1.5: levels 0…L−2 are CrossAttnDownBlock2D, the last a plain DownBlock2D.
        var downs: [DownBlock] = []
        var prev = ch[0]
        for i in 0..<levels {
            let bs = s / "down_blocks" / i, hasAttn = i < levels - 1
            var rs: [ResnetBlock2D] = [], ats: [Transformer2DModel] = []
            for j in 0..<c.layersPerBlock {
                rs.append(
                    ResnetBlock2D(
                        bs / "resnets" / j, in: j == 0 ? prev : ch[i], out: ch[i], tembChannels: temb, groups: g,
                        eps: 1e-5))
                if hasAttn {
                    ats.append(
                        Transformer2DModel(
                            bs / "attentions" / j, channels: ch[i], heads: heads, groups: g, crossAttentionDim: cross,
                            name: "down_blocks.\(i).attentions.\(j)"))
                }
            }
            let down = i < levels - 1 ? Downsample2D(bs / "downsamplers" / 0, channels: ch[i], vaeStyle: false) : nil
            downs.append(DownBlock(resnets: rs, attentions: ats, downsampler: down))
            prev = ch[i]
        }
        down_blocks = downs

        let top = ch[levels - 1]
        let midResnets = (0..<2).map {
            ResnetBlock2D(s / "mid_block" / "resnets" / $0, in: top, out: top, tembChannels: temb, groups: g, eps: 1e-5)
        }
        mid_block = MidBlock(
            resnets: midResnets,
            attention: Transformer2DModel(
                s / "mid_block" / "attentions" / 0, channels: top, heads: heads, groups: g,
                crossAttentionDim: cross, name: "mid_block.attentions.0"))

        // Up path mirrors diffusers: up block i works at width reversed[i]; its resnet j reads the
        // previous output (or its own width) plus a skip of width reversed[i+1] at the last resnet.
        let rev = Array(ch.reversed())
        var ups: [UpBlock] = []
        var prevOut = top
        for i in 0..<levels {
            let bs = s / "up_blocks" / i, out = rev[i], input = rev[min(i + 1, levels - 1)], hasAttn = i > 0
            var rs: [ResnetBlock2D] = [], ats: [Transformer2DModel] = []
            for j in 0...c.layersPerBlock {
                let skip = j == c.layersPerBlock ? input : out
                let resIn = j == 0 ? prevOut : out
                rs.append(
                    ResnetBlock2D(
                        bs / "resnets" / j, in: resIn + skip, out: out, tembChannels: temb, groups: g, eps: 1e-5))
                if hasAttn {
                    ats.append(
                        Transformer2DModel(
                            bs / "attentions" / j, channels: out, heads: heads, groups: g, crossAttentionDim: cross,
                            name: "up_blocks.\(i).attentions.\(j)"))
                }
            }
            let up = i < levels - 1 ? Upsample2D(bs / "upsamplers" / 0, channels: out) : nil
            ups.append(UpBlock(resnets: rs, attentions: ats, upsampler: up))
            prevOut = out
        }
        up_blocks = ups
        conv_norm_out = GroupNorm(s / "conv_norm_out", groups: g, channels: ch[0], eps: 1e-5)
        conv_out = Conv2d(s / "conv_out", ch[0], c.outChannels, kernel: 3, padding: 1)
    }

    /// Names of the transformer blocks' self-attention layers in execution order (down, mid, up),
    /// with their downsampling factor relative to the latent.
    public static func attentionLayers(_ c: UNetConfig) -> [(name: String, factor: Int)] {
        let levels = c.levels
        var out: [(String, Int)] = []
        for i in 0..<(levels - 1) {
            for j in 0..<c.layersPerBlock {
                out.append(("down_blocks.\(i).attentions.\(j).transformer_blocks.0.attn1", 1 << i))
            }
        }
        out.append(("mid_block.attentions.0.transformer_blocks.0.attn1", 1 << (levels - 1)))
        for i in 1..<levels {
            for j in 0...c.layersPerBlock {
                out.append(("up_blocks.\(i).attentions.\(j).transformer_blocks.0.attn1", 1 << (levels - 1 - i)))
            }
        }
        return out
    }

    /// x (B, Cin, h, w), timesteps (B) → noise prediction (B, Cout, h, w) for the generative role;
    /// for the reference role the features land in `context` and the output is nil (its
    /// `conv_norm_out`/`conv_out` are never used by Leffa, so they are not run). With
    /// `checkpointing`, each down block, the mid block and each up block keeps only its outputs
    /// and is recomputed in backward (diffusers' gradient_checkpointing): the same gradients, bit
    /// for bit, in a fraction of the activation memory, for one more forward.
    @discardableResult
    public func callAsFunction(_ x: Tensor, timesteps: [Float], context: ReferenceContext, checkpointing: Bool = false)
        -> Tensor?
    {
        shapeCheck(
            x.rank == 4 && x.shape[1] == conv_in.weight.shape[1], "\(role) UNet input", x.shape, conv_in.weight.shape,
            expected: "(B, \(conv_in.weight.shape[1]), h, w)")
        shapeCheck(
            timesteps.count == x.shape[0], "\(role) UNet timesteps", [timesteps.count], x.shape,
            expected: "one timestep per sample")
        shapeCheck(x.shape[2] > 0 && x.shape[3] > 0, "\(role) UNet latent size", x.shape, expected: "h, w ≥ 1")
        let tEmb = timestepEmbedding(
            timesteps, dim: config.blockOutChannels[0], flipSinToCos: true, downscaleFreqShift: 0)
        let emb = linear_2(silu(linear_1(tEmb)))
        let embAct = silu(emb) // every resnet applies SiLU to the embedding first

        let role = role
        var h = conv_in(x)
        var skips = [h]
        for block in down_blocks {
            let outputs = runBlock(
                attentions: block.attentions.count, [h, embAct], context: context, checkpointing: checkpointing
            ) { t, ctx in
                block(t[0], t[1], role: role, context: ctx)
            }
            skips += outputs
            h = outputs.last!
        }
        h =
            runBlock(attentions: 1, [h, embAct], context: context, checkpointing: checkpointing) { [mid_block] t, ctx in
                [mid_block(t[0], t[1], role: role, context: ctx)]
            }[0]
        for block in up_blocks {
            let read = Array(skips.suffix(block.resnets.count).reversed())
            skips.removeLast(block.resnets.count)
            let size = skips.last.map { ($0.shape[2], $0.shape[3]) }
            h =
                runBlock(
                    attentions: block.attentions.count, [h, embAct] + read, context: context,
                    checkpointing: checkpointing
                ) { t, ctx in
                    [block(t[0], t[1], skips: Array(t[2...]), upsampleSize: size, role: role, context: ctx)]
                }[0]
        }
        if role == .reference { return nil }
        return conv_out(silu(conv_norm_out(h)))
    }
}
