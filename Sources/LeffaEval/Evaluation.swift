// Held-out evaluation (`leffa-coord eval`): the model samples every pair of a split (the test split
// by default) with the weights loaded once, and the results go where the tools of the field read
// them:
//   OUT/generated/NAME.png, OUT/target/NAME.png   the same file names in both folders: the layout
//                                                  pytorch-fid, clean-fid and torch-fidelity read
//   OUT/baseline/NAME.png                          the mean-colour baseline (Baseline.swift)
//   OUT/contact-sheet.png                          masked person | garment | generated | target
//   OUT/eval.json                                  PSNR and SSIM (whole image, garment region) of
//                                                  the model and the baseline, the flow endpoint
//                                                  error on data with ground-truth flow, per pair
// Under mpirun the pairs are shared over the ranks (pair i on rank i mod N); each round's images
// and numbers are gathered on rank 0 by a sum of disjoint parts (exact), and rank 0 writes. Pair
// i's noise depends only on (seed, i) and every metric is computed by rank 0 from the 8-bit images
// it writes, so any number of ranks writes the same files and numbers.
// Not FID or LPIPS (they need Inception and AlexNet weights): the folders are for the tools that
// have them.
import Foundation
import LeffaTensor
import LeffaModels
import LeffaDiffusion
import LeffaData
import LeffaDistributed
import LeffaTraining
import LeffaRunFormat

/// What to evaluate on and how to sample.
public struct EvalOptions: Sendable {
    /// The split whose pairs are read (`<split>_pairs.txt` and `<split>/` in the VITON-HD layout).
    public var split = "test"
    /// A pairs file in the dataset's format instead of the split's own list.
    public var pairsFile: URL? = nil
    /// The data folder (default: the run config's `data.root`).
    public var dataRoot: URL? = nil
    /// Only the first `limit` pairs.
    public var limit: Int? = nil
    /// Each person with the garment the pairs file names in its second column (no ground truth:
    /// images only, no metrics).
    public var unpaired = false
    /// DDIM (η = 0) or DDPM (ancestral, the published pipeline's).
    public var scheduler: SchedulerKind = .ddim
    public var steps = 30
    public var guidance: Float = 2.5
    /// φ of the guidance rescaling (0 = off; the published pipeline: φ = guidance).
    public var guidanceRescale: Float = 0
    /// The generated masked region pasted into the person image (the published `repaint`): the
    /// written images and their scores are the repainted ones.
    public var repaint = false
    public var seed: UInt64 = 0
    public var refAcceleration = false
    /// Image size (default: the stage's resolution).
    public var size: (height: Int, width: Int)? = nil
    /// Rows of the contact sheet (the first pairs).
    public var sheetRows = 16
    /// Softmax temperature of the attention flows whose endpoint error is measured (default: the
    /// stage's Leffa τ, else the config default 2.0).
    public var tau: Float? = nil
    public init() {}
}

/// The model to evaluate and where it came from.
public struct EvalModel {
    public var model: LeffaModel
    public var config: RunConfig
    public var stage: StageConfig
    /// A description of the weights (file, stage, EMA) for eval.json.
    public var source: String
    public init(model: LeffaModel, config: RunConfig, stage: StageConfig, source: String) {
        self.model = model; self.config = config; self.stage = stage; self.source = source
    }
}

/// PSNR and SSIM of one image against its target, over the whole image and the garment region.
public struct ImageScores: Codable, Sendable, Equatable {
    public var psnr: Double
    public var psnrGarment: Double
    public var ssim: Double
    public var ssimGarment: Double
    enum CodingKeys: String, CodingKey { case psnr, psnrGarment = "psnr_garment", ssim, ssimGarment = "ssim_garment" }
    public init(psnr: Double, psnrGarment: Double, ssim: Double, ssimGarment: Double) {
        self.psnr = psnr; self.psnrGarment = psnrGarment; self.ssim = ssim; self.ssimGarment = ssimGarment
    }

    /// `test` against `target` ((3, H, W) in [−1, 1]); `garment` (1, H, W) is the region that
    /// counts as garment. PSNR of identical images is capped at 100 dB (JSON has no infinity).
    public static func of(_ test: Tensor, _ target: Tensor, garment: Tensor) -> ImageScores {
        func cap(_ v: Double) -> Double { v.isFinite ? min(v, 100) : (v > 0 ? 100 : v) }
        return ImageScores(
            psnr: cap(ImageMetrics.psnr(test, target)),
            psnrGarment: cap(ImageMetrics.psnr(test, target, mask: garment)),
            ssim: ImageMetrics.ssim(test, target), ssimGarment: ImageMetrics.ssim(test, target, mask: garment))
    }

    /// The mean of each field over `scores` (nan values, e.g. an empty garment region, skipped).
    public static func mean(_ scores: [ImageScores]) -> ImageScores {
        func m(_ k: KeyPath<ImageScores, Double>) -> Double {
            let v = scores.map { $0[keyPath: k] }.filter { !$0.isNaN }
            return v.isEmpty ? .nan : v.reduce(0, +) / Double(v.count)
        }
        return ImageScores(
            psnr: m(\.psnr), psnrGarment: m(\.psnrGarment), ssim: m(\.ssim), ssimGarment: m(\.ssimGarment))
    }
}

/// eval.json.
public struct EvalReport: Codable, Sendable {
    public struct Pair: Codable, Sendable {
        public var name: String
        public var id: String
        public var model: ImageScores?
        public var baseline: ImageScores?
        /// Mean over the measured layers, pixels; nil without ground-truth flow.
        public var flowEPE: Double?
        enum CodingKeys: String, CodingKey { case name, id, model, baseline, flowEPE = "flow_epe_px" }
    }
    public struct Sampler: Codable, Sendable {
        public var scheduler: String
        public var steps: Int
        public var guidance: Double
        public var guidanceRescale: Double
        public var repaint: Bool
        public var seed: UInt64
        public var refAcceleration: Bool
        public var predictionType: String
        enum CodingKeys: String, CodingKey {
            case scheduler, steps, guidance, guidanceRescale = "guidance_rescale", repaint, seed, refAcceleration =
                "ref_acceleration", predictionType = "prediction_type"
        }
    }
    public struct Flow: Codable, Sendable {
        /// Endpoint error (pixels at the evaluated size) of the attention flow against the
        /// ground-truth flow inside the garment, mean over pairs and layers.
        public var mean: Double
        public var layers: [String: Double]
        /// The same error for uniform attention (the flow is then the grid's centre): what the
        /// model's flows must beat to have learnt any correspondence.
        public var uniform: Double
        public var timestep: Int
        public var tau: Double
    }
    public var source: String
    public var stage: String
    public var data: String
    public var split: String
    public var pairsFile: String
    public var paired: Bool
    public var pairs: Int
    public var size: [Int]
    public var sampler: Sampler
    /// Means over pairs; nil in unpaired mode (no ground truth).
    public var model: ImageScores?
    public var baseline: ImageScores?
    public var flow: Flow?
    public var folders: [String: String]
    public var contactSheet: String
    public var ranks: Int
    public var seconds: Double
    public var perPair: [Pair]
    enum CodingKeys: String, CodingKey {
        case source, stage, data, split, paired, pairs, size, sampler, model, baseline, flow, folders, ranks, seconds
        case pairsFile = "pairs_file", contactSheet = "contact_sheet", perPair = "per_pair"
    }

    /// Every target the scores miss: full-image PSNR at least `minPSNR` dB, garment-region SSIM
    /// at least `minGarmentSSIMGain` above the baseline's. Empty when all are met (or none asked).
    public func missedTargets(minPSNR: Double?, minGarmentSSIMGain: Double?) -> [String] {
        guard minPSNR != nil || minGarmentSSIMGain != nil else { return [] }
        guard let model, let baseline else { return ["no scores to check (unpaired evaluation)"] }
        var out: [String] = []
        if let p = minPSNR, !(model.psnr >= p) {
            out.append(String(format: "PSNR %.2f dB is below the target %.2f dB", model.psnr, p))
        }
        if let g = minGarmentSSIMGain, !(model.ssimGarment - baseline.ssimGarment >= g) {
            out.append(
                String(
                    format: "garment SSIM %.4f is %.4f above the baseline's %.4f, less than the target %.2f",
                    model.ssimGarment, model.ssimGarment - baseline.ssimGarment, baseline.ssimGarment, g))
        }
        return out
    }

    /// The table a person reads: model and baseline side by side.
    public var table: String {
        var lines: [String] = []
        lines.append(
            "held-out evaluation: \(pairs) pair(s) of \(split) (\(paired ? "paired" : "unpaired")), \(size[0])x\(size[1]), \(sampler.steps) \(sampler.scheduler.uppercased()) steps, guidance \(sampler.guidance)"
                + (sampler.guidanceRescale > 0 ? " rescaled by \(sampler.guidanceRescale)" : "")
                + (sampler.repaint ? ", repainted" : ""))
        if let model, let baseline {
            lines.append("                       PSNR (dB)   PSNR garment   SSIM     SSIM garment")
            for (name, s) in [("model", model), ("mean-colour baseline", baseline)] {
                lines.append(
                    name.padding(toLength: 22, withPad: " ", startingAt: 0)
                        + String(
                            format: " %9.2f   %12.2f   %6.4f   %12.4f", s.psnr, s.psnrGarment, s.ssim, s.ssimGarment))
            }
        } else {
            lines.append("(unpaired: no ground truth, images only)")
        }
        if let flow {
            lines.append(
                String(
                    format:
                        "attention-flow endpoint error vs ground truth: %.3f px (uniform attention: %.3f px; %d layer(s), t = %d, τ = %g)",
                    flow.mean, flow.uniform, flow.layers.count, flow.timestep, flow.tau))
        }
        return lines.joined(separator: "\n")
    }
}

public enum Evaluation {
    /// Evaluates `m` on the pairs `options` select and writes everything under `out` (rank 0).
    /// Every rank must call it with the same arguments. `progress` gets one line per round (rank 0).
    @discardableResult
    public static func run(
        _ m: EvalModel, options o: EvalOptions, out: URL, context: MPIContext,
        progress: (String) -> Void = { _ in }
    ) throws -> EvalReport {
        let started = Date()
        let config = m.config
        guard let kind = DatasetKind(rawValue: config.dataKind) else {
            throw RunError("\(config.source): field data.kind: unknown kind \(config.dataKind)")
        }
        let root =
            o.dataRoot
            ?? URL(
                fileURLWithPath: config.dataRoot,
                relativeTo: URL(fileURLWithPath: config.source).deletingLastPathComponent()
            ).standardizedFileURL
        let dataset = try openEvalDataset(kind, root: root, options: o, data: config.data)
        let n = min(o.limit ?? dataset.count, dataset.count)
        let (h, w) = o.size ?? (m.stage.height, m.stage.width)
        try config.model.checkLatentSize(
            config.space == .latent ? h / config.model.vae.downscale : h,
            config.space == .latent ? w / config.model.vae.downscale : w)
        let size = Size(height: h, width: w)
        let paired = !o.unpaired
        // Loading every pair first turns a missing or damaged file into an error before any sampling.
        if context.rank == 0 { progress("eval: checking \(n) pair(s) of \(dataset.name) \(o.split) at \(root.path)") }
        for i in stride(from: context.rank, to: n, by: context.size) { _ = try dataset.sample(at: i, size: size) }

        // Flow endpoint error: the layers the Leffa loss uses at this size, where the data has flows.
        let leffa = m.stage.leffa ?? config.stages.compactMap(\.leffa).last ?? LeffaLossConfig()
        let tau = o.tau ?? leffa.tau
        let latentH = config.space == .latent ? h / config.model.vae.downscale : h
        let flowLayers = leffa.selectLayers(
            UNet2DConditionModel.attentionLayers(config.model.unet), latentHeight: latentH, imageHeight: h)
        let builder = BatchBuilder(dataset: dataset, config: config, model: m.model)
        let randomness = SampleRandomness(seed: o.seed)

        let out = out.standardizedFileURL
        let folders = ["generated", "target", "baseline"]
        if context.rank == 0 {
            for f in folders {
                try FileManager.default.createDirectory(
                    at: out.appendingPathComponent(f), withIntermediateDirectories: true)
            }
        }
        var reports: [EvalReport.Pair] = []
        var flowSums = [String: Double](), flowCounts = 0, uniformSum = 0.0
        var sheetRows: [Image] = []
        let per = 3 * h * w, slots = per + flowLayers.count + 2 // image, layers' errors, uniform's error, flag
        var done = 0
        var round = 0
        while done < n {
            let mine = round * context.size + context.rank
            var buffer = [Double](repeating: 0, count: context.size * slots)
            if mine < n {
                let s = try dataset.sample(at: mine, size: size)
                var sampler = Sampler(
                    scheduler: o.scheduler, steps: o.steps, guidance: o.guidance, guidanceRescale: o.guidanceRescale,
                    seed: randomness.validationNoiseSeed(pair: mine))
                sampler.refAcceleration = o.refAcceleration
                sampler.prediction = config.prediction
                func one(_ t: Tensor) -> Tensor { t.reshaped([1] + t.shape) }
                let cond = SampleConditions(
                    person: one(s.image), garment: one(s.reference), mask: one(s.inpaintMask),
                    densepose: one(s.densepose))
                let img = Image(tensor: try sampler.sample(model: m.model, space: config.space, cond))
                let base = context.rank * slots
                for k in 0..<per { buffer[base + k] = Double(img.pixels[k]) }
                if paired, let truth = s.flow, let valid = s.flowValid, !flowLayers.isEmpty {
                    var st = m.stage
                    (st.height, st.width) = (h, w)
                    let d = try builder.load(indices: [mine], stage: st)
                    let inputs = try builder.inputs(
                        d, step: 0, positions: [mine], timestepOverride: FlowSnapshot.timestep, dropout: false)
                    let inside = valid * s.lossMask
                    let t4 = truth.reshaped([1] + truth.shape), v4 = inside.reshaped([1] + inside.shape)
                    let flows = try FlowSnapshot.flows(model: m.model, inputs: inputs, layers: flowLayers, tau: tau)
                    for (j, (_, f, _)) in flows.enumerated() {
                        buffer[base + per + j] = FlowSnapshot.endpointError(f, truth: t4, valid: v4)
                    }
                    buffer[base + slots - 2] = FlowSnapshot.endpointError(
                        Tensor(zeros: [1, 2, 2, 2]), truth: t4, valid: v4)
                    buffer[base + slots - 1] = 1
                }
            }
            if context.size > 1 { context.allreduce(&buffer) }
            if context.rank == 0 {
                for r in 0..<context.size where round * context.size + r < n {
                    let i = round * context.size + r, base = r * slots
                    let s = try dataset.sample(at: i, size: size)
                    var generated = Image(
                        height: h, width: w, channels: 3, pixels: (0..<per).map { UInt8(buffer[base + $0]) })
                    if o.repaint {
                        generated = Repaint.apply(person: s.image, mask: s.inpaintMask, generated: generated)
                    }
                    let target = Image(tensor: s.image)
                    let baseline = Image(tensor: Baseline.meanColourFill(s))
                    let name = fileName(dataset, pair: i, paired: paired)
                    try ImageIO.write(generated, to: out.appendingPathComponent("generated/\(name)"), format: .png)
                    try ImageIO.write(target, to: out.appendingPathComponent("target/\(name)"), format: .png)
                    try ImageIO.write(baseline, to: out.appendingPathComponent("baseline/\(name)"), format: .png)
                    var pair = EvalReport.Pair(name: name, id: dataset.id(at: i))
                    if paired {
                        // Scored from the 8-bit images as written: what the FID tools read, too.
                        let t = target.tensor(.signed)
                        pair.model = ImageScores.of(generated.tensor(.signed), t, garment: s.lossMask)
                        pair.baseline = ImageScores.of(baseline.tensor(.signed), t, garment: s.lossMask)
                    }
                    if buffer[base + slots - 1] > 0 {
                        let e = (0..<flowLayers.count).map { buffer[base + per + $0] }
                        for (j, l) in flowLayers.enumerated() { flowSums[l, default: 0] += e[j] }
                        uniformSum += buffer[base + slots - 2]
                        flowCounts += 1
                        pair.flowEPE = e.reduce(0, +) / Double(e.count)
                    }
                    reports.append(pair)
                    if sheetRows.count < o.sheetRows {
                        sheetRows.append(
                            Image.hstack([Image(tensor: s.maskedImage), Image(tensor: s.reference), generated, target]))
                    }
                }
            }
            done = min(n, (round + 1) * context.size)
            round += 1
            if context.rank == 0 {
                let elapsed = Date().timeIntervalSince(started)
                let eta = elapsed / Double(done) * Double(n - done)
                progress(
                    String(
                        format: "eval: %d/%d pairs  %.1f s/pair  ETA %@", done, n, elapsed / Double(done),
                        formatDuration(eta)))
            }
        }
        let report = EvalReport(
            source: m.source, stage: m.stage.name, data: root.path, split: o.split,
            pairsFile: (o.pairsFile ?? root.appendingPathComponent("\(o.split)_pairs.txt")).path, paired: paired,
            pairs: n, size: [h, w],
            sampler: .init(
                scheduler: o.scheduler.rawValue, steps: o.steps, guidance: Double(o.guidance),
                guidanceRescale: Double(o.guidanceRescale),
                repaint: o.repaint, seed: o.seed, refAcceleration: o.refAcceleration,
                predictionType: config.prediction.rawValue),
            model: paired ? ImageScores.mean(reports.compactMap(\.model)) : nil,
            baseline: paired ? ImageScores.mean(reports.compactMap(\.baseline)) : nil,
            // Summed in layer order (a dictionary's order changes between processes).
            flow: flowCounts > 0
                ? .init(
                    mean: flowLayers.map { flowSums[$0]! }.reduce(0, +) / Double(flowCounts * flowLayers.count),
                    layers: flowSums.mapValues { $0 / Double(flowCounts) }, uniform: uniformSum / Double(flowCounts),
                    timestep: FlowSnapshot.timestep, tau: Double(tau)) : nil,
            folders: Dictionary(uniqueKeysWithValues: folders.map { ($0, $0) }), contactSheet: "contact-sheet.png",
            ranks: context.size, seconds: Date().timeIntervalSince(started), perPair: reports)
        if context.rank == 0 {
            try ImageIO.write(
                Image.vstack(sheetRows), to: out.appendingPathComponent("contact-sheet.png"), format: .png)
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            enc.nonConformingFloatEncodingStrategy = .convertToString(
                positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
            try ImageIO.writeBytes(Array(try enc.encode(report)) + [10], to: out.appendingPathComponent("eval.json"))
        }
        context.barrier()
        return report
    }

    /// The split (or the `--pairs` file) of the run's data, read with the run's data options
    /// (densepose encoding, DressCode categories; the pairing is `--unpaired`'s), with every
    /// problem that stops an evaluation turned into an error naming the file.
    static func openEvalDataset(_ kind: DatasetKind, root: URL, options o: EvalOptions, data: DataOptions) throws
        -> any PairedImageDataset
    {
        let pairing: Pairing = o.unpaired ? .unpaired : .paired
        let ds: any PairedImageDataset
        switch (kind, o.pairsFile) {
        case (.vitonHD, let file?), (.synthetic, let file?):
            var v = VitonHDDataset(root: root, split: o.split, pairing: pairing, pairsFile: file, name: kind.rawValue)
            v.denseposeEncoding = data.densepose
            ds = v
        case (.deepFashion, let file?):
            var d = DeepFashionDataset(root: root, split: o.split, pairsFile: file)
            d.denseposeEncoding = data.densepose
            ds = d
        case (.dressCode, _?):
            throw RunError("--pairs: not supported for DressCode (its pair lists live per category); use --split")
        default:
            ds = openDataset(
                kind, root: root, split: o.split, pairing: pairing, categories: data.categories,
                densepose: data.densepose)
        }
        if let e = ds.indexProblems.first(where: { $0.severity == .error }) {
            throw RunError("cannot evaluate on the \(o.split) split of \(root.path): \(e)")
        }
        if ds.count == 0 {
            let file = o.pairsFile?.path ?? root.appendingPathComponent("\(o.split)_pairs.txt").path
            throw RunError("\(file): the \(o.split) split has no pairs to evaluate (empty pairs list)")
        }
        return ds
    }

    /// "NNNNN-<person stem>.png", with "-<garment stem>" in unpaired mode: unique, sorted like the
    /// pairs, identical in the generated and target folders.
    static func fileName(_ ds: any PairedImageDataset, pair i: Int, paired: Bool) -> String {
        let r = ds.recipe(at: i)
        let person = r.image.deletingPathExtension().lastPathComponent
        let garment = r.reference.deletingPathExtension().lastPathComponent
        return String(format: "%05d-", i) + person + (paired ? "" : "-" + garment) + ".png"
    }
}
