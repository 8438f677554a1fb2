// The UNet's blocks (diffusers' CrossAttnDownBlock2D/DownBlock2D, UNetMidBlock2DCrossAttn,
// CrossAttnUpBlock2D/UpBlock2D) and their forward passes: the units activation checkpointing
// recomputes. Each reads the timestep embedding and its reference features through `context`
// (UNet2DConditionModel+Blocks.swift routes those through the block's inputs and outputs).
import LeffaTensor
import LeffaLayers

/// One resolution level going down: resnets (each followed by a transformer where the level has
/// attention), then a stride-2 downsampler except at the last level.
struct DownBlock {
    let resnets: [ResnetBlock2D]
    let attentions: [Transformer2DModel]
    let downsampler: Downsample2D?

    /// x (B, C, H, W), embAct (B, Temb) → every output the up path reads as a skip connection,
    /// in order; the last one is the next block's input.
    func callAsFunction(_ x: Tensor, _ embAct: Tensor, role: UNetRole, context: ReferenceContext) -> [Tensor] {
        var h = x, outputs: [Tensor] = []
        for (j, resnet) in resnets.enumerated() {
            h = resnet(h, embAct)
            if !attentions.isEmpty { h = attentions[j](h, role: role, context: context) }
            outputs.append(h)
        }
        if let downsampler { outputs.append(downsampler(h)) }
        return outputs
    }
}

/// The bottom of the UNet: resnet, transformer, resnet.
struct MidBlock {
    let resnets: [ResnetBlock2D]
    let attention: Transformer2DModel

    func callAsFunction(_ x: Tensor, _ embAct: Tensor, role: UNetRole, context: ReferenceContext) -> Tensor {
        let h = attention(resnets[0](x, embAct), role: role, context: context)
        return resnets[1](h, embAct)
    }
}

/// One level going up: `layers + 1` resnets reading the skip connections, transformers where the
/// level has attention, then nearest ×2 (to `upsampleSize`, the next skip's size) and a
/// convolution except at the last level.
struct UpBlock {
    let resnets: [ResnetBlock2D]
    let attentions: [Transformer2DModel]
    let upsampler: Upsample2D?

    /// x (B, C, H, W), embAct (B, Temb), `skips` one per resnet in the order they are read (the
    /// down path's outputs, newest first) → (B, C', H', W').
    func callAsFunction(
        _ x: Tensor, _ embAct: Tensor, skips: [Tensor], upsampleSize: (Int, Int)?,
        role: UNetRole, context: ReferenceContext
    ) -> Tensor {
        shapeCheck(
            skips.count == resnets.count, "up block skips", [skips.count], [resnets.count],
            expected: "one skip per resnet")
        var h = x
        for (j, resnet) in resnets.enumerated() {
            h = resnet(concat([h, skips[j]], dim: 1), embAct)
            if !attentions.isEmpty { h = attentions[j](h, role: role, context: context) }
        }
        return upsampler.map { $0(h, to: upsampleSize) } ?? h
    }
}
