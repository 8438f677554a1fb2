// The golden check as a command: files in, files out (see GoldenPass for the computation).
import Foundation
import LeffaTensor
import LeffaModels
import LeffaDiffusion
import SafeTensors

public enum GoldenCheck {
    public enum Grads: String, CaseIterable, Sendable { case all, none }

    /// Reads weights, config and inputs, runs the pass, writes every output; returns a summary line.
    public static func run(weights: String, config: String, inputs: String, out: String, grads: Grads) throws -> String {
        let model = try LeffaModel(config: try ModelConfig.load(path: config))
        try model.loadWeights(from: weights)
        let loss = try LeffaLossConfig.load(path: config)
        let io = try SafeTensorsFile(path: inputs)
        try io.checkKeys(expected: GoldenPass.Inputs.names, allowUnexpected: true)
        let b = try io.shape(of: "in.x")[0]
        let t = try io.int64s("in.t", expectedShape: [b]).map { Int($0) }
        for (i, v) in t.enumerated() where v < 0 || v >= 1000 {
            throw WeightsError.incompatible("\(inputs): key in.t[\(i)] = \(v): expected a timestep in 0..<1000")
        }
        let x = try io.tensor("in.x")
        guard x.rank == 4, x.shape[1] == model.config.unet.inChannels else {
            throw WeightsError.incompatible("\(inputs): key in.x has shape \(x.shape), expected (B, \(model.config.unet.inChannels), h, w)")
        }
        let (h, w) = (x.shape[2], x.shape[3]), (hh, ww) = (h * model.config.vae.downscale, w * model.config.vae.downscale)
        try model.config.checkLatentSize(h, w)
        let i = GoldenPass.Inputs(
            x: x,
            refLatent: try io.tensor("in.ref_latent", expectedShape: [b, model.config.unet.referenceInChannels, h, w]),
            imgRef: try io.tensor("in.img_ref", expectedShape: [b, 3, hh, ww]),
            imgTgt: try io.tensor("in.img_tgt", expectedShape: [b, 3, hh, ww]),
            mask: try io.tensor("in.mask", expectedShape: [b, 1, hh, ww]),
            noise: try io.tensor("in.noise", expectedShape: [b, model.config.vae.latentChannels, h, w]),
            timesteps: t)
        let outputs = try GoldenPass.run(model, loss: loss, inputs: i, grads: grads == .all)
        var writer = SafeTensorsWriter()
        for (name, tensor) in outputs { writer.add(name, tensor) }
        try writer.write(to: URL(fileURLWithPath: out))
        let scalar = { (n: String) in outputs.first { $0.0 == n }.map { String(format: "%.6g", $0.1.item) } ?? "-" }
        return "wrote \(outputs.count) tensors to \(out): diffusion \(scalar("out.diffusion_loss")), leffa \(scalar("out.leffa_loss")), total \(scalar("out.total_loss"))"
    }
}
