// Attention-flow snapshots: for a few fixed samples at a fixed timestep and noise, the flow fields
// of chosen generative attention layers and the references warped by them, in HDF5 (for analysis)
// and as PNG strips a person can look at (<sample>-<layer>.png, and TensorBoard images
// flow/<layer>/<sample>): reference | warped reference | target | flow colours (| ground-truth
// flow colours, when the data has them).
import Foundation
import LeffaRunFormat
import LeffaTensor
import LeffaLayers
import LeffaModels
import LeffaDiffusion
import LeffaData
import LeffaCheckpoint

public enum FlowSnapshot {
    /// The timestep snapshots are taken at: inside the Leffa gate (t < 500), mid-way.
    public static let timestep = 250

    /// Layers to snapshot: the configured ones, else the first and last layer the Leffa loss uses.
    static func layers(_ config: RunConfig, stage: StageConfig, latentHeight: Int) -> [String] {
        if !config.snapshotLayers.isEmpty { return config.snapshotLayers }
        let picked = (stage.leffa ?? LeffaLossConfig()).selectLayers(
            UNet2DConditionModel.attentionLayers(config.model.unet),
            latentHeight: latentHeight, imageHeight: stage.height)
        return Array(Set([picked.first, picked.last].compactMap { $0 })).sorted()
    }

    /// Flows of `layers` for a loaded batch: (layer, flow (B,h,w,2), warped (B,3,H,W)).
    public static func flows(model: LeffaModel, inputs b: LatentBatch, layers: [String], tau: Float) throws -> [(
        String, Tensor, Tensor
    )] {
        try GradMode.withoutGrad {
            let x = b.generativeInput(NoiseSchedule())
            let (_, ctx) = try model.denoise(
                x: x, refLatent: b.refLatent, timesteps: b.timesteps.map(Float.init),
                probes: FlowProbes(layers: Set(layers), tau: tau))
            let (hh, ww) = (b.imgRef.shape[2], b.imgRef.shape[3])
            return ctx.probes.map { p in
                let flow = flowField(p)
                let grid = resizeBilinear(flow.permuted([0, 3, 1, 2]), size: (hh, ww)).permuted([0, 2, 3, 1])
                return (p.layer, flow, gridSample(b.imgRef, grid))
            }
        }
    }

    /// Mean endpoint error in pixels between a flow (B,h,w,2) upsampled to image size and a
    /// ground-truth flow (B,H,W,2), over pixels where `valid` (B,1,H,W) > 0.5.
    public static func endpointError(_ flow: Tensor, truth: Tensor, valid: Tensor) -> Double {
        let (b, hh, ww) = (truth.shape[0], truth.shape[1], truth.shape[2])
        let up = GradMode.withoutGrad {
            resizeBilinear(flow.permuted([0, 3, 1, 2]), size: (hh, ww)).permuted([0, 2, 3, 1])
        }
        var sum = 0.0, n = 0.0
        let sx = Double(ww - 1) / 2, sy = Double(hh - 1) / 2
        for i in 0..<(b * hh * ww) where valid[i] > 0.5 {
            let dx = Double(up[2 * i] - truth[2 * i]) * sx, dy = Double(up[2 * i + 1] - truth[2 * i + 1]) * sy
            sum += (dx * dx + dy * dy).squareRoot(); n += 1
        }
        return n > 0 ? sum / n : .nan
    }

    static func write(trainer t: Trainer, builder: BatchBuilder) throws {
        let stage = t.stage
        let k = min(t.config.snapshotSamples, builder.dataset.count)
        let indices = Array(0..<k)
        let data = try builder.load(indices: indices, stage: stage)
        let inputs = try builder.inputs(data, step: 0, positions: indices, timestepOverride: timestep, dropout: false)
        let names = layers(t.config, stage: stage, latentHeight: inputs.latent.shape[2])
        let results = try flows(
            model: t.model, inputs: inputs, layers: names, tau: (stage.leffa ?? LeffaLossConfig()).tau)

        var meta: [String: CheckpointValue] = [
            "step": .int64(Int64(t.step)), "stage": .string(stage.name), "timestep": .int64(Int64(timestep)),
            "samples": .string(data.ids.joined(separator: "\n")), "layers": .string(names.joined(separator: "\n"))
        ]
        var c = CheckpointContents()
        c.setGroup("images", [("reference", data.reference), ("target", data.image), ("loss_mask", data.lossMask)])
        c.setGroup("flow", results.map { ($0.0, $0.1) })
        c.setGroup("warped", results.map { ($0.0, $0.2) })
        if let gt = data.flow, let valid = data.flowValid {
            c.setGroup("ground_truth", [("flow", gt), ("valid", valid)])
            for (layer, flow, _) in results {
                meta["epe." + layer] = .float64(endpointError(flow, truth: gt, valid: valid))
            }
        }
        c.meta = meta
        let dir = t.run.snapshotsURL(stage.name)
        let name = String(format: "step-%08d", t.step)
        try CheckpointWriter.write(c, to: dir.appendingPathComponent(name + ".h5"))

        let pngDir = dir.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: pngDir, withIntermediateDirectories: true)
        for (layer, flow, warped) in results {
            for s in 0..<k {
                var panels = [
                    plane(data.reference, s), plane(warped, s), plane(data.image, s),
                    flowColours(flow, sample: s, size: (stage.height, stage.width))
                ]
                if let gt = data.flow { panels.append(flowColours(gt, sample: s, size: (stage.height, stage.width))) }
                let short = layer.replacingOccurrences(of: ".transformer_blocks.0.attn1", with: "")
                let sample = data.ids[s].replacingOccurrences(of: "/", with: "_")
                let strip = Image.hstack(panels)
                let png = try ImageIO.encodePNG(strip)
                try ImageIO.writeBytes(png, to: pngDir.appendingPathComponent("\(sample)-\(short).png"))
                t.board?.add(image: "flow/\(short)/\(sample)", png: png, of: strip, step: t.step)
            }
        }
        t.board?.flush()
    }

    /// Sample `s` of a (B,3,H,W) tensor in [−1,1] as an image.
    static func plane(_ x: Tensor, _ s: Int) -> Image {
        let per = x.count / x.shape[0]
        let t = Tensor(zeros: Array(x.shape.dropFirst()))
        t.data.update(from: x.data + s * per, count: per)
        return Image(tensor: t, range: .signed).converted(toChannels: 3)
    }

    /// A flow (B,h,w,2) of absolute reference coordinates, upsampled to `size`, as colours: the hue
    /// is the direction of (x, y) from the reference centre, the brightness its distance, so each
    /// target pixel shows where in the reference it reads from.
    public static func flowColours(_ flow: Tensor, sample s: Int, size: (Int, Int)) -> Image {
        let (h, w) = (flow.shape[1], flow.shape[2])
        let one = Tensor(zeros: [1, h, w, 2])
        one.data.update(from: flow.data + s * h * w * 2, count: h * w * 2)
        let up = GradMode.withoutGrad { resizeBilinear(one.permuted([0, 3, 1, 2]), size: size) } // (1,2,H,W)
        let (hh, ww) = size, n = hh * ww
        var px = [UInt8](repeating: 0, count: n * 3)
        for i in 0..<n {
            let x = Double(up[i]), y = Double(up[n + i])
            let hue = (atan2(y, x) / (2 * Double.pi) + 1).truncatingRemainder(dividingBy: 1)
            let v = min(1, (x * x + y * y).squareRoot() / 1.4142) * 0.8 + 0.2
            let (r, g, b) = hsv(hue, 0.85, v)
            px[3 * i] = UInt8(r * 255); px[3 * i + 1] = UInt8(g * 255); px[3 * i + 2] = UInt8(b * 255)
        }
        return Image(height: hh, width: ww, channels: 3, pixels: px)
    }

    static func hsv(_ h: Double, _ s: Double, _ v: Double) -> (Double, Double, Double) {
        let i = Int(h * 6) % 6, f = h * 6 - Double(Int(h * 6))
        let p = v * (1 - s), q = v * (1 - f * s), t = v * (1 - (1 - f) * s)
        switch i {
        case 0: return (v, t, p);
        case 1: return (q, v, p);
        case 2: return (p, v, t)
        case 3: return (p, q, v);
        case 4: return (t, p, v);
        default: return (v, p, q)
        }
    }

}
