// One complete forward and backward pass of the Leffa model on given inputs, through the
// trainer's objective (TrainingObjective), producing every tensor the golden fixture holds
// (`out.*`, `grad.*`). `leffa-coord debug forward` writes it to safetensors; the golden test
// compares it with ../shared/fixtures/leffa_tiny.
import LeffaTensor
import LeffaRunFormat
import LeffaLayers
import LeffaModels
import LeffaDiffusion

public enum GoldenPass {
    /// Inputs named like the fixture's: in.x (B,12,h,w), in.ref_latent (B,4,h,w), in.img_ref,
    /// in.img_tgt (B,3,H,W), in.mask (B,1,H,W), in.noise (B,4,h,w); timesteps (in.t) as integers.
    public struct Inputs {
        public var x, refLatent, imgRef, imgTgt, mask, noise: Tensor
        public var timesteps: [Int]
        public init(
            x: Tensor, refLatent: Tensor, imgRef: Tensor, imgTgt: Tensor, mask: Tensor, noise: Tensor, timesteps: [Int]
        ) {
            self.x = x; self.refLatent = refLatent; self.imgRef = imgRef; self.imgTgt = imgTgt
            self.mask = mask; self.noise = noise; self.timesteps = timesteps
        }
        /// The input names this pass reads.
        public static let names = ["in.x", "in.ref_latent", "in.t", "in.img_ref", "in.img_tgt", "in.mask", "in.noise"]
    }

    /// Runs the pass; outputs in a stable order. `grads` adds grad.unet.* and grad.unet_encoder.*
    /// for every parameter of the two UNets.
    public static func run(_ model: LeffaModel, loss config: LeffaLossConfig, inputs i: Inputs, grads: Bool = true)
        throws -> [(String, Tensor)]
    {
        var out: [(String, Tensor)] = []
        if grads { model.parameters.enableGradients() }
        model.parameters.zeroGrads()

        // The trainer's own objective (ε-prediction, every reference kept), its flows kept.
        let input = ObjectiveInput(
            x: i.x, refLatent: i.refLatent, timesteps: i.timesteps, target: i.noise, imgRef: i.imgRef,
            imgTgt: i.imgTgt, lossMask: i.mask, referenceKept: Array(repeating: true, count: i.x.shape[0]))
        let l = try TrainingObjective(leffa: config).loss(model, input, keepFlows: true)
        let total = l.total

        for (k, f) in l.features.enumerated() { out.append(("out.ref_feature.\(k)", f.detached())) }
        out.append(("out.eps", l.prediction.detached()))
        for (layer, flow) in l.flows { out.append(("out.flow.\(layer)", flow.detached())) }
        out.append(("out.diffusion_loss", l.diffusion.detached()))
        out.append(("out.leffa_loss", l.leffa!.detached()))
        out.append(("out.total_loss", total.detached()))

        if grads {
            total.backward()
            for p in model.parameters(of: "unet") + model.parameters(of: "unet_encoder") {
                out.append(("grad." + p.name, (p.grad ?? Tensor(zeros: p.shape)).copy()))
            }
        }
        // The VAE outputs exist in latent space only (a pixel-space run's "latents" are images).
        if i.refLatent.shape[1] == model.config.vae.latentChannels
            && i.imgTgt.shape[2] == i.x.shape[2] * model.config.vae.downscale
        {
            GradMode.withoutGrad {
                let posterior = model.vae.encode(i.imgTgt)
                out.append(("out.vae.mean", posterior.mean))
                out.append(("out.vae.logvar", posterior.logvar))
                out.append(("out.vae.decoded", model.vae.decode(i.refLatent)))
            }
        }
        return out
    }
}
