// The training objective: the diffusion loss of one batch (predict the noise, or the clean
// latent, from the noised target and the reference), plus λ·Leffa when the stage enables it. The
// trainer, the benchmarks and the golden pass all build their loss here, so the golden test
// covers the trainer's own loss.
import LeffaTensor
import LeffaLayers
import LeffaModels
import LeffaDiffusion

/// What the objective reads: the generative UNet's input and target, and what the Leffa loss needs.
public struct ObjectiveInput {
    /// (B, 12, h, w): the noised target latent, mask, masked-image latent, densepose.
    public var x: Tensor
    /// (B, 4, h, w) and the timestep of each sample.
    public var refLatent: Tensor
    public var timesteps: [Int]
    /// What the generative UNet should output (the noise, the clean latent or v).
    public var target: Tensor
    /// (B, 3, H, W) in [−1, 1], and the loss mask (B, 1, H, W).
    public var imgRef: Tensor, imgTgt: Tensor, lossMask: Tensor
    /// False for samples whose reference was dropped: no Leffa term for them.
    public var referenceKept: [Bool]
    public init(
        x: Tensor, refLatent: Tensor, timesteps: [Int], target: Tensor, imgRef: Tensor, imgTgt: Tensor,
        lossMask: Tensor,
        referenceKept: [Bool]
    ) {
        self.x = x; self.refLatent = refLatent; self.timesteps = timesteps; self.target = target
        self.imgRef = imgRef; self.imgTgt = imgTgt; self.lossMask = lossMask; self.referenceKept = referenceKept
    }
}

/// The loss graph of one batch and its parts.
public struct StepLosses {
    /// The loss to call `backward()` on: diffusion + λ·Leffa.
    public var total: Tensor
    public var diffusion: Tensor
    /// nil when the stage has no Leffa term.
    public var leffa: Tensor?
    /// The generative UNet's output, the reference UNet's features and, with `keepFlows`, each
    /// probed layer's flow field (B, h, w, 2).
    public var prediction: Tensor
    public var features: [Tensor]
    public var flows: [(layer: String, flow: Tensor)]
}

public struct TrainingObjective {
    public var schedule = NoiseSchedule()
    public var leffa: LeffaLossConfig? = nil
    /// What the generative UNet outputs (the diffusion MSE's target).
    public var prediction: Prediction = .epsilon
    /// Recompute each UNet block's activations in backward instead of keeping them
    /// (`training.activation_checkpointing`): the same gradients in less memory, for one more forward.
    public var activationCheckpointing = false
    public init(
        schedule: NoiseSchedule = NoiseSchedule(), leffa: LeffaLossConfig? = nil, prediction: Prediction = .epsilon,
        activationCheckpointing: Bool = false
    ) {
        self.schedule = schedule; self.leffa = leffa; self.prediction = prediction;
        self.activationCheckpointing = activationCheckpointing
    }

    /// The objective's input for a batch: the target latent noised at each sample's timestep.
    public func input(_ b: LatentBatch) -> ObjectiveInput {
        let target =
            prediction == .epsilon
            ? b.noise : prediction.target(b.latent, noise: b.noise, timesteps: b.timesteps, schedule: schedule)
        return ObjectiveInput(
            x: b.generativeInput(schedule), refLatent: b.refLatent, timesteps: b.timesteps, target: target,
            imgRef: b.imgRef, imgTgt: b.imgTgt, lossMask: b.lossMask, referenceKept: b.referenceKept)
    }

    /// Builds the graph of the batch's loss (call `backward()` on `total`).
    public func loss(_ model: LeffaModel, _ b: LatentBatch) throws -> StepLosses { try loss(model, input(b)) }

    /// The loss of an objective input; `keepFlows` also returns the probed layers' flow fields.
    public func loss(_ model: LeffaModel, _ i: ObjectiveInput, keepFlows: Bool = false) throws -> StepLosses {
        var layers: Set<String> = []
        if let leffa {
            layers = Set(
                leffa.selectLayers(
                    UNet2DConditionModel.attentionLayers(model.config.unet),
                    latentHeight: i.x.shape[2], imageHeight: i.imgTgt.shape[2]))
        }
        let (out, ctx) = try model.denoise(
            x: i.x, refLatent: i.refLatent, timesteps: i.timesteps.map(Float.init),
            probes: FlowProbes(layers: layers, tau: leffa?.tau ?? 1), checkpointing: activationCheckpointing)
        let diffusion = mse(out, i.target)
        guard let leffa else {
            return StepLosses(
                total: diffusion, diffusion: diffusion, leffa: nil, prediction: out, features: ctx.features, flows: [])
        }
        // Dropped references count as gated out: their timesteps are moved past the threshold.
        let gated = zip(i.timesteps, i.referenceKept).map { $1 ? $0 : Int.max }
        let l = leffaLoss(
            ctx.probes, refImage: i.imgRef, tgtImage: i.imgTgt, mask: i.lossMask, timesteps: gated, config: leffa,
            keep: keepFlows)
        return StepLosses(
            total: diffusion + l.loss * leffa.weight, diffusion: diffusion, leffa: l.loss, prediction: out,
            features: ctx.features, flows: l.flows)
    }
}
