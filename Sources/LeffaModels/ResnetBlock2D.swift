// diffusers' ResnetBlock2D: GroupNorm–SiLU–conv, plus the projected timestep embedding, twice,
// with a 1×1 `conv_shortcut` when the width changes. The VAE's copy has no timestep input.
import LeffaTensor
import LeffaLayers

public struct ResnetBlock2D {
    let norm1: GroupNorm, conv1: Conv2d
    let time_emb_proj: Linear?
    let norm2: GroupNorm, conv2: Conv2d
    let conv_shortcut: Conv2d?

    public init(_ s: Scope, in inC: Int, out outC: Int, tembChannels: Int?, groups: Int, eps: Float) {
        norm1 = GroupNorm(s / "norm1", groups: groups, channels: inC, eps: eps)
        conv1 = Conv2d(s / "conv1", inC, outC, kernel: 3, padding: 1)
        time_emb_proj = tembChannels.map { Linear(s / "time_emb_proj", $0, outC) }
        norm2 = GroupNorm(s / "norm2", groups: groups, channels: outC, eps: eps)
        conv2 = Conv2d(s / "conv2", outC, outC, kernel: 3, padding: 1)
        conv_shortcut = inC != outC ? Conv2d(s / "conv_shortcut", inC, outC, kernel: 1) : nil
    }

    /// x (B, Cin, H, W); `embAct` = SiLU(timestep embedding) (B, Temb) → (B, Cout, H, W).
    public func callAsFunction(_ x: Tensor, _ embAct: Tensor?) -> Tensor {
        var h = conv1(silu(norm1(x)))
        if let proj = time_emb_proj, let embAct {
            let t = proj(embAct) // (B, Cout)
            h = h + t.reshaped([t.shape[0], t.shape[1], 1, 1])
        }
        h = conv2(silu(norm2(h)))
        return (conv_shortcut?(x) ?? x) + h
    }
}

/// Downsample2D: a 3×3 stride-2 convolution. The UNet pads 1 on every side; the VAE pads
/// (top 0, bottom 1, left 0, right 1) and convolves with padding 0.
public struct Downsample2D {
    let conv: Conv2d
    public init(_ s: Scope, channels: Int, vaeStyle: Bool) {
        conv =
            vaeStyle
            ? Conv2d(
                s / "conv", channels, channels, kernel: 3, stride: 2,
                padding: Padding2D(top: 0, bottom: 1, left: 0, right: 1))
            : Conv2d(s / "conv", channels, channels, kernel: 3, stride: 2, padding: 1)
    }
    public func callAsFunction(_ x: Tensor) -> Tensor { conv(x) }
}

/// Upsample2D: nearest ×2, then a 3×3 convolution. In the UNet the ×2 is "to the size of the
/// skip connection read next" (diffusers' `upsample_size`): a side that the stride-2 downsampler
/// rounded up (11 → 6) comes back to 11, not 12, by PyTorch's nearest rule.
public struct Upsample2D {
    let conv: Conv2d
    public init(_ s: Scope, channels: Int) { conv = Conv2d(s / "conv", channels, channels, kernel: 3, padding: 1) }
    public func callAsFunction(_ x: Tensor, to size: (Int, Int)? = nil) -> Tensor {
        guard let size, size != (2 * x.shape[2], 2 * x.shape[3]) else { return conv(upsampleNearest(x, scale: 2)) }
        return conv(resizeNearest(x, size: size))
    }
}
