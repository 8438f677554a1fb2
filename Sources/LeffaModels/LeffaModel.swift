// The Leffa model: generative UNet (`unet.`), reference UNet (`unet_encoder.`) and VAE (`vae.`),
// registered in that order in one parameter set whose names are the published state dict's.
import LeffaTensor
import LeffaLayers

public final class LeffaModel {
    public let config: ModelConfig
    public let parameters = ParameterSet()
    public let unet: UNet2DConditionModel
    public let unet_encoder: UNet2DConditionModel
    public let vae: AutoencoderKL

    /// Builds the model with PyTorch-default random initial values keyed by `seed`.
    public init(config: ModelConfig, seed: UInt64 = 0) throws {
        let problems = config.problems()
        if !problems.isEmpty { throw ModelError.badConfig("model config: " + problems.joined(separator: "; ")) }
        self.config = config
        let root = Scope(parameters, seed: seed)
        unet = UNet2DConditionModel(root / "unet", config: config.unet, role: .generative)
        unet_encoder = UNet2DConditionModel(root / "unet_encoder", config: config.unet, role: .reference)
        vae = AutoencoderKL(root / "vae", config: config.vae)
        parameters.flatten()
    }

    /// One pass of both UNets: the reference UNet reads `refLatent` (B, 4, h, w) and the
    /// generative UNet reads `x` (B, 12, h, w) at `timesteps`; returns the predicted noise and the
    /// context holding reference features and the probed layers' flows.
    /// `checkpointing`: both UNets recompute each block's activations in backward instead of
    /// keeping them (UNet2DConditionModel.callAsFunction).
    public func denoise(
        x: Tensor, refLatent: Tensor, timesteps: [Float], probes: FlowProbes = .none,
        checkpointing: Bool = false
    ) throws -> (eps: Tensor, context: ReferenceContext) {
        try config.checkLatentSize(x.shape[2], x.shape[3])
        shapeCheck(
            refLatent.shape[0] == x.shape[0] && refLatent.shape[2] == x.shape[2] && refLatent.shape[3] == x.shape[3],
            "LeffaModel.denoise", x.shape, refLatent.shape, expected: "reference latent with the same batch and size")
        let ctx = ReferenceContext(flowProbes: probes)
        unet_encoder(refLatent, timesteps: timesteps, context: ctx, checkpointing: checkpointing)
        let eps = unet(x, timesteps: timesteps, context: ctx, checkpointing: checkpointing)!
        return (eps, ctx)
    }

    /// The reference UNet alone: its features for `refLatent` at `timesteps`, to be reused by
    /// `denoise(x:features:timesteps:)` (the published pipeline's `ref_acceleration`).
    public func referenceFeatures(refLatent: Tensor, timesteps: [Float]) -> [Tensor] {
        let ctx = ReferenceContext()
        unet_encoder(refLatent, timesteps: timesteps, context: ctx)
        return ctx.features
    }

    /// The generative UNet on precomputed reference features (same batch as `x`).
    public func denoise(x: Tensor, features: [Tensor], timesteps: [Float]) throws -> Tensor {
        try config.checkLatentSize(x.shape[2], x.shape[3])
        let ctx = ReferenceContext()
        ctx.features = features
        return unet(x, timesteps: timesteps, context: ctx)!
    }

    /// Parameters of one part: "unet", "unet_encoder" or "vae".
    public func parameters(of part: String) -> [Parameter] { parameters.with(prefix: part + ".") }
}
