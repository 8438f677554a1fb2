// diffusers' AutoencoderKL (the SD1.5 VAE): an encoder to a diagonal-Gaussian posterior over
// latents and a decoder back to pixels. Training reads posterior moments (often cached by
// `prepare`); sampling decodes.
import Foundation
import LeffaTensor
import LeffaLayers

/// The VAE's mid-block attention: GroupNorm, one head over all pixels, residual.
struct VAEAttention {
    let group_norm: GroupNorm
    let to_q: Linear, to_k: Linear, to_v: Linear, to_out: Linear
    init(_ s: Scope, channels: Int, groups: Int) {
        group_norm = GroupNorm(s / "group_norm", groups: groups, channels: channels, eps: 1e-6)
        to_q = Linear(s / "to_q", channels, channels)
        to_k = Linear(s / "to_k", channels, channels)
        to_v = Linear(s / "to_v", channels, channels)
        to_out = Linear(s / "to_out" / 0, channels, channels)
    }
    func callAsFunction(_ x: Tensor) -> Tensor {
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let t = group_norm(x).reshaped([b, c, h * w]).permuted([0, 2, 1])
        let o = to_out(attention(to_q(t), to_k(t), to_v(t), heads: 1))
        return o.permuted([0, 2, 1]).reshaped([b, c, h, w]) + x
    }
}

/// UNetMidBlock2D without timestep: resnet, attention, resnet.
struct VAEMidBlock {
    let resnets: [ResnetBlock2D]
    let attention: VAEAttention
    init(_ s: Scope, channels: Int, groups: Int) {
        resnets = (0..<2).map {
            ResnetBlock2D(s / "resnets" / $0, in: channels, out: channels, tembChannels: nil, groups: groups, eps: 1e-6)
        }
        attention = VAEAttention(s / "attentions" / 0, channels: channels, groups: groups)
    }
    func callAsFunction(_ x: Tensor) -> Tensor { resnets[1](attention(resnets[0](x, nil)), nil) }
}

public struct VAEEncoder {
    let conv_in: Conv2d
    let down: [(resnets: [ResnetBlock2D], downsampler: Downsample2D?)]
    let mid: VAEMidBlock
    let conv_norm_out: GroupNorm, conv_out: Conv2d

    init(_ s: Scope, _ c: VAEConfig) {
        let ch = c.blockOutChannels, g = c.normNumGroups
        conv_in = Conv2d(s / "conv_in", c.inChannels, ch[0], kernel: 3, padding: 1)
        var blocks: [([ResnetBlock2D], Downsample2D?)] = []
        var prev = ch[0]
        for i in 0..<ch.count {
            let bs = s / "down_blocks" / i
            let rs = (0..<c.layersPerBlock).map { j in
                ResnetBlock2D(
                    bs / "resnets" / j, in: j == 0 ? prev : ch[i], out: ch[i], tembChannels: nil, groups: g, eps: 1e-6)
            }
            blocks.append(
                (rs, i < ch.count - 1 ? Downsample2D(bs / "downsamplers" / 0, channels: ch[i], vaeStyle: true) : nil))
            prev = ch[i]
        }
        down = blocks
        mid = VAEMidBlock(s / "mid_block", channels: ch.last!, groups: g)
        conv_norm_out = GroupNorm(s / "conv_norm_out", groups: g, channels: ch.last!, eps: 1e-6)
        conv_out = Conv2d(s / "conv_out", ch.last!, 2 * c.latentChannels, kernel: 3, padding: 1)
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        var h = conv_in(x)
        for block in down {
            for r in block.resnets { h = r(h, nil) }
            if let d = block.downsampler { h = d(h) }
        }
        return conv_out(silu(conv_norm_out(mid(h))))
    }
}

public struct VAEDecoder {
    let conv_in: Conv2d
    let mid: VAEMidBlock
    let up: [(resnets: [ResnetBlock2D], upsampler: Upsample2D?)]
    let conv_norm_out: GroupNorm, conv_out: Conv2d

    init(_ s: Scope, _ c: VAEConfig) {
        let rev = Array(c.blockOutChannels.reversed()), g = c.normNumGroups
        conv_in = Conv2d(s / "conv_in", c.latentChannels, rev[0], kernel: 3, padding: 1)
        mid = VAEMidBlock(s / "mid_block", channels: rev[0], groups: g)
        var blocks: [([ResnetBlock2D], Upsample2D?)] = []
        var prev = rev[0]
        for i in 0..<rev.count {
            let bs = s / "up_blocks" / i
            let rs = (0...c.layersPerBlock).map { j in
                ResnetBlock2D(
                    bs / "resnets" / j, in: j == 0 ? prev : rev[i], out: rev[i], tembChannels: nil, groups: g, eps: 1e-6
                )
            }
            blocks.append((rs, i < rev.count - 1 ? Upsample2D(bs / "upsamplers" / 0, channels: rev[i]) : nil))
            prev = rev[i]
        }
        up = blocks
        conv_norm_out = GroupNorm(s / "conv_norm_out", groups: g, channels: rev.last!, eps: 1e-6)
        conv_out = Conv2d(s / "conv_out", rev.last!, c.inChannels, kernel: 3, padding: 1)
    }

    func callAsFunction(_ z: Tensor) -> Tensor {
        var h = mid(conv_in(z))
        for block in up {
            for r in block.resnets { h = r(h, nil) }
            if let u = block.upsampler { h = u(h) }
        }
        return conv_out(silu(conv_norm_out(h)))
    }
}

/// The posterior q(z | x): per-pixel Gaussian with mean and log-variance (clamped to [−30, 20]).
public struct Posterior {
    public let mean: Tensor, logvar: Tensor // (B, latent, h, w), before the scaling factor
    /// mean + exp(logvar / 2) · ε.
    public func sample(noise: Tensor) -> Tensor {
        shapeCheck(noise.shape == mean.shape, "Posterior.sample", noise.shape, mean.shape)
        let std = Tensor(zeros: logvar.shape)
        for i in 0..<std.count { std[i] = Foundation.exp(0.5 * logvar[i]) }
        return mean + std.detached() * noise
    }
}

public struct AutoencoderKL {
    public let config: VAEConfig
    let encoder: VAEEncoder, decoder: VAEDecoder
    let quant_conv: Conv2d, post_quant_conv: Conv2d

    public init(_ s: Scope, config c: VAEConfig) {
        config = c
        encoder = VAEEncoder(s / "encoder", c)
        decoder = VAEDecoder(s / "decoder", c)
        quant_conv = Conv2d(s / "quant_conv", 2 * c.latentChannels, 2 * c.latentChannels, kernel: 1)
        post_quant_conv = Conv2d(s / "post_quant_conv", c.latentChannels, c.latentChannels, kernel: 1)
    }

    /// Images (B, 3, H, W) in [−1, 1] → posterior over latents (B, 4, H/8, W/8).
    public func encode(_ x: Tensor) -> Posterior {
        let moments = quant_conv(encoder(x))
        let halves = split(moments, sizes: [config.latentChannels, config.latentChannels], dim: 1)
        // The clamp is applied without a gradient: the VAE is frozen in Leffa training.
        let lv = halves[1].detached().copy()
        for i in 0..<lv.count { lv[i] = min(max(lv[i], -30), 20) }
        return Posterior(mean: halves[0], logvar: lv)
    }

    /// Latents (B, 4, h, w), already divided by the scaling factor → images (B, 3, 8h, 8w).
    public func decode(_ z: Tensor) -> Tensor { decoder(post_quant_conv(z)) }
}
