// `leffa-coord debug forward` and `debug inputs`: the golden pass as a command, files in and
// files out (GoldenPass does the computation).
import Foundation
import LeffaRunFormat
import LeffaTensor
import LeffaModels
import LeffaDiffusion
import SafeTensors
import LeffaData

public enum DebugForward {
    public enum Grads: String, CaseIterable, Sendable { case all, none }

    /// Reads weights, config and inputs, runs the pass, writes every output; returns a summary line.
    public static func run(weights: String, config: String, inputs: String, out: String, grads: Grads) throws -> String
    {
        // A run config (it has stages) gives the model as the run built it (pixel space changes the
        // UNets' channels) and the last Leffa stage's loss settings; otherwise a model config file.
        let modelConfig: ModelConfig, loss: LeffaLossConfig
        var imagePerLatent: Int? = nil
        if RunConfig.isRunConfig(path: config) {
            let run = try RunConfig.load(path: config)
            modelConfig = run.model
            if run.space == .pixel { imagePerLatent = 1 }
            loss = run.stages.last(where: { $0.leffa != nil })?.leffa ?? LeffaLossConfig()
        } else {
            modelConfig = try ModelConfig.load(path: config)
            loss = try LeffaLossConfig.load(path: config)
        }
        let model = try LeffaModel(config: modelConfig)
        try model.loadWeights(from: weights)
        let io = try SafeTensorsFile(path: inputs)
        try io.checkKeys(expected: GoldenPass.Inputs.names, allowUnexpected: true)
        let b = try io.shape(of: "in.x")[0]
        let t = try io.int64s("in.t", expectedShape: [b]).map { Int($0) }
        for (i, v) in t.enumerated() where v < 0 || v >= 1000 {
            throw WeightsError.incompatible("\(inputs): key in.t[\(i)] = \(v): expected a timestep in 0..<1000")
        }
        let x = try io.tensor("in.x")
        guard x.rank == 4, x.shape[1] == model.config.unet.inChannels else {
            throw WeightsError.incompatible(
                "\(inputs): key in.x has shape \(x.shape), expected (B, \(model.config.unet.inChannels), h, w)")
        }
        let f = imagePerLatent ?? model.config.vae.downscale
        let (h, w) = (x.shape[2], x.shape[3]), (hh, ww) = (h * f, w * f)
        try model.config.checkLatentSize(h, w)
        let i = GoldenPass.Inputs(
            x: x,
            refLatent: try io.tensor("in.ref_latent", expectedShape: [b, model.config.unet.referenceInChannels, h, w]),
            imgRef: try io.tensor("in.img_ref", expectedShape: [b, 3, hh, ww]),
            imgTgt: try io.tensor("in.img_tgt", expectedShape: [b, 3, hh, ww]),
            mask: try io.tensor("in.mask", expectedShape: [b, 1, hh, ww]),
            noise: try io.tensor("in.noise", expectedShape: [b, model.config.unet.outChannels, h, w]),
            timesteps: t)
        let outputs = try GoldenPass.run(model, loss: loss, inputs: i, grads: grads == .all)
        var writer = SafeTensorsWriter()
        for (name, tensor) in outputs { writer.add(name, tensor) }
        try writer.write(to: URL(fileURLWithPath: out))
        let scalar = { (n: String) in outputs.first { $0.0 == n }.map { String(format: "%.6g", $0.1.item) } ?? "-" }
        return
            "wrote \(outputs.count) tensors to \(out): diffusion \(scalar("out.diffusion_loss")), leffa \(scalar("out.leffa_loss")), total \(scalar("out.total_loss"))"
    }
}

extension DebugForward {
    /// Writes fixture-style inputs (in.x, in.ref_latent, in.t, in.img_ref, in.img_tgt, in.mask,
    /// in.noise) for `count` samples of a run's data at a stage's resolution, so `debug forward`
    /// can check any exported model on its own data. Timesteps are those of step 0.
    /// `timestep` fixes every sample's timestep (e.g. below the Leffa threshold, so the check
    /// includes the Leffa loss); nil draws them as training step 0 would.
    public static func makeInputs(run: RunDirectory, stage name: String?, count: Int, out: String, timestep: Int? = nil)
        throws -> String
    {
        let config = try run.readConfig()
        guard let stage = name.map({ n in config.stages.first { $0.name == n } }) ?? config.stages.last else {
            throw RunError(
                "\(run.configURL.path): no stage named \(name ?? "?"); stages are \(config.stages.map(\.name))")
        }
        let model = try LeffaModel(config: config.model, seed: config.seed)
        let root = run.resolve(config.dataRoot)
        let dataset = config.openDataset(root: URL(fileURLWithPath: root))
        guard dataset.count > 0 else { throw RunError("data at \(root): no samples") }
        let builder = BatchBuilder(dataset: dataset, config: config, model: model)
        let positions = Array(0..<min(max(count, 1), dataset.count))
        let data = try builder.load(indices: positions, stage: stage)
        if let t = timestep, !(0..<NoiseSchedule().steps).contains(t) {
            throw RunError("--timestep: expected an integer in 0..<\(NoiseSchedule().steps), got \(t)")
        }
        let b = try builder.inputs(data, step: 0, positions: positions, timestepOverride: timestep, dropout: false)
        var w = SafeTensorsWriter(metadata: ["run": run.url.path, "stage": stage.name])
        w.add("in.x", b.generativeInput(NoiseSchedule()))
        w.add("in.ref_latent", b.refLatent)
        w.add("in.t", int64s: b.timesteps.map(Int64.init))
        w.add("in.img_ref", b.imgRef); w.add("in.img_tgt", b.imgTgt); w.add("in.mask", b.lossMask);
        w.add("in.noise", b.noise)
        try w.write(to: URL(fileURLWithPath: out))
        return
            "wrote inputs of \(positions.count) sample(s) at \(stage.height)x\(stage.width) (stage \(stage.name)) to \(out)"
    }
}
