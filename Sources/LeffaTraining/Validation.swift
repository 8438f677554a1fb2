// Validation samples during training (`training.validation`): every N steps and at each stage's
// last step, the trainer samples a fixed set of pairs — the first `count` of the test split (else
// of the training split) — with the configured sampler (DDIM or DDPM, classifier-free guidance,
// optionally rescaled; optionally repainted), and writes one PNG row per pair a person can judge:
// masked person (what the model sees) | garment | sample | ground-truth target, to
// stages/S/samples/step-NNNNNNNN/<pair>-<name>.png (and to TensorBoard), and one JSON line per
// sampling to stages/S/logs/validation.jsonl. Pairs, noise and weights are fixed for a given run
// and step, so two identical runs write identical bytes.
import Foundation
import LeffaRunFormat
import LeffaTensor
import LeffaModels
import LeffaData
import LeffaLayers

/// One validation sampling: a line of stages/S/logs/validation.jsonl.
public struct ValidationRecord: Codable, Sendable {
    public var stage: String
    public var step: Int
    /// Wall time of the sampling on rank 0 (sampling, gathering, writing).
    public var seconds: Double
    /// The PNGs written, relative to the run directory.
    public var files: [String]
    public var split: String
    /// "ddim" or "ddpm".
    public var scheduler: String
    public var steps: Int
    public var guidance: Double
    public var guidanceRescale: Double
    public var repaint: Bool
    /// Whether the EMA weights were sampled (always, when EMA is on).
    public var ema: Bool
    public var time: String
    enum CodingKeys: String, CodingKey {
        case stage, step, seconds, files, split, scheduler, steps, guidance, guidanceRescale = "guidance_rescale",
            repaint, ema, time
    }
}

/// The fixed validation pairs of a run: which split, which pairs, loaded at a stage's resolution.
public struct ValidationSet {
    public let dataset: any PairedImageDataset
    /// The split the pairs come from ("test", or the training split's name).
    public let split: String
    /// The pairs (the first `count` of the split, or all of a smaller split), at the stage's size.
    public let samples: [TrainingSample]

    /// Opens the split and loads its first `config.validation.count` pairs at `stage`'s resolution
    /// (paired: the reference is the person's own garment, so the target is the ground truth).
    /// Without `split`, the test split when the data has one, else the training split. Loading
    /// here, before training, turns missing or damaged files into an error at the start of the
    /// stage rather than after hours of training.
    public static func open(config: RunConfig, root: URL, stage: StageConfig) throws -> ValidationSet {
        let v = config.validation
        let test = config.openDataset(root: root, split: "test", pairing: .paired)
        let testProblem = test.indexProblems.first { $0.severity == .error }
        let dataset: any PairedImageDataset, split: String
        switch v.split {
        case "test":
            if test.count == 0 || testProblem != nil {
                throw RunError(
                    "\(config.source): field training.validation.split is test, but the data at \(root.path) has no usable test split ("
                        + (testProblem.map { "\($0)" } ?? "no pairs")
                        + "); use split: train, or leave split out to fall back to the training split")
            }
            (dataset, split) = (test, "test")
        case nil where test.count > 0 && testProblem == nil:
            (dataset, split) = (test, "test")
        default:
            (dataset, split) = (config.openDataset(root: root, pairing: .paired), config.dataSplit)
        }
        let n = min(v.count, dataset.count)
        if n == 0 { throw RunError("data at \(root.path): the \(split) split has no pairs to validate on") }
        let size = Size(height: stage.height, width: stage.width)
        return ValidationSet(
            dataset: dataset, split: split, samples: try (0..<n).map { try dataset.sample(at: $0, size: size) })
    }

    public var count: Int { samples.count }

    /// "<pair>-<person image stem>.png".
    public func fileName(_ pair: Int) -> String {
        let stem = dataset.recipe(at: samples[pair].index).image.deletingPathExtension().lastPathComponent
        return "\(pair)-\(stem).png".replacingOccurrences(of: "/", with: "_")
    }

    /// The sampler's conditions of pair `pair`: (1, C, H, W) tensors.
    public func conditions(_ pair: Int) -> SampleConditions {
        let s = samples[pair]
        func one(_ t: Tensor) -> Tensor { t.reshaped([1] + t.shape) }
        return SampleConditions(
            person: one(s.image), garment: one(s.reference), mask: one(s.inpaintMask), densepose: one(s.densepose))
    }

    /// The PNG row of pair `pair`: masked person | garment | sample | ground-truth target; with
    /// `repaint`, the sample pasted into the person image (as the published pipeline's option).
    public func row(_ pair: Int, sample: Tensor, repaint: Bool = false) -> Image {
        let s = samples[pair]
        let generated = repaint ? conditions(pair).repainted(Image(tensor: sample)) : Image(tensor: sample)
        return Image.hstack([
            Image(tensor: s.maskedImage), Image(tensor: s.reference), generated, Image(tensor: s.image)
        ])
    }
}

extension Trainer {
    /// Samples the validation set with the current weights and writes the PNGs (rank 0) — the
    /// EMA weights when EMA is on: like diffusers' training scripts (which copy the EMA weights
    /// into the UNet for `log_validation` and restore the trained ones after), because the EMA is
    /// what gets exported and used for inference, so its samples are the ones worth judging.
    /// The pairs are shared out over the ranks (pair i on rank i mod N) and the samples gathered
    /// on rank 0 by a sum of disjoint parts (exact); rank 0 writes, then every rank meets at a
    /// barrier, as for checkpoints. Sampling draws nothing from the training randomness and the
    /// trained weights are put back bit for bit, so training goes on exactly as without it.
    func validate(_ set: ValidationSet, log jsonl: MetricsLog?) throws {
        let t0 = Date()
        let v = config.validation
        let random = SampleRandomness(seed: config.seed)
        let mine = shard(Array(0..<set.count), rank: collective.rank, worldSize: collective.size)
        var samples = [Tensor?](repeating: nil, count: set.count)
        try withEMAWeights {
            for i in mine {
                var sampler = Sampler(
                    scheduler: v.scheduler, steps: v.steps, guidance: v.guidance, guidanceRescale: v.guidanceRescale,
                    seed: random.validationNoiseSeed(pair: i))
                sampler.refAcceleration = v.refAcceleration
                sampler.prediction = config.prediction
                samples[i] = try sampler.sample(model: model, space: config.space, set.conditions(i)) { _, _ in
                    beat(phase: "validation")
                }
            }
        }
        if collective.size > 1 {
            let shape = [1, 3, stage.height, stage.width], per = shape.reduce(1, *)
            var flat = [Double](repeating: 0, count: set.count * per)
            for i in mine { let p = samples[i]!.data; for k in 0..<per { flat[i * per + k] = Double(p[k]) } }
            flat = collective.allReduceSum(flat)
            for i in 0..<set.count {
                let t = Tensor(zeros: shape)
                for k in 0..<per { t.data[k] = Float(flat[i * per + k]) }
                samples[i] = t
            }
        }
        if collective.rank == 0 {
            let dir = run.samplesURL(stage.name).appendingPathComponent(String(format: "step-%08d", step))
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            var files: [String] = []
            for i in 0..<set.count {
                let url = dir.appendingPathComponent(set.fileName(i))
                let row = set.row(i, sample: samples[i]!, repaint: v.repaint)
                let png = try ImageIO.encodePNG(row)
                try ImageIO.writeBytes(png, to: url)
                files.append(String(url.path.dropFirst(run.url.path.count + 1)))
                let tag = "validation/" + url.deletingPathExtension().lastPathComponent
                board?.add(image: tag, png: png, of: row, step: step)
            }
            board?.flush()
            let seconds = Date().timeIntervalSince(t0)
            try jsonl?.append(
                ValidationRecord(
                    stage: stage.name, step: step, seconds: seconds, files: files, split: set.split,
                    scheduler: v.scheduler.rawValue, steps: v.steps, guidance: Double(v.guidance),
                    guidanceRescale: Double(v.guidanceRescale), repaint: v.repaint, ema: ema != nil, time: timestamp()))
            let extras =
                (v.guidanceRescale > 0 ? String(format: ", rescale %.2g", Double(v.guidanceRescale)) : "")
                + (v.repaint ? ", repaint" : "")
                + (ema != nil ? ", EMA weights" : "")
            log(
                String(
                    format:
                        "[%@] validation at step %d: %d samples (%@ split, %d %@ steps, guidance %.2g%@) in %.2f s → %@",
                    stage.name, step, set.count, set.split, v.steps, v.scheduler.rawValue.uppercased(),
                    Double(v.guidance), extras, seconds, dir.path))
        }
        collective.barrier()
    }

    /// Runs `body` with the EMA weights in the parameter block (when EMA is on), then puts the
    /// trained weights back bit for bit. Where the ranks of a node share one copy of the state,
    /// each swaps its shard, after every rank has finished with the weights before.
    func withEMAWeights(_ body: () throws -> Void) rethrows {
        try LeffaLayers.withEMAWeights(
            model.parameters.values!, ema, range: collective.sharedState?.shard,
            sync: { collective.publishState() }, body)
    }
}
