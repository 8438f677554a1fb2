// `leffa-coord prepare`: decodes and resizes every sample once per stage resolution and stores it
// in HDF5 shards (RUN/cache/<H>x<W>/shard-XXXX.h5, CheckpointWriter's format), so training reads
// ready tensors instead of decoding images each step. In latent space the shards also hold the
// VAE posterior moments (mean, logvar) of the target, the masked image and the reference, and the
// mask and densepose nearest-resized to latent size: the per-step posterior draw stays keyed by
// (seed, step, sample) as on the fly, only the encoder pass is saved.
//
// A shard holds samples first ..< first+count of the dataset's index order, one group per sample
// ("samples/<index>") with the fields below; its meta names the space, size, dataset count and
// the sample ids, which `SampleCache` checks so a stale cache is reported instead of used.
import Foundation
import LeffaRunFormat
import LeffaTensor
import LeffaModels
import LeffaData
import LeffaCheckpoint

public enum CacheFields {
    public static let image = "image", reference = "reference", inpaintMask = "inpaint_mask", densepose = "densepose"
    public static let maskedImage = "masked_image", lossMask = "loss_mask", flow = "flow", flowValid = "flow_valid"
    /// Latent space only: posterior moments (before the scaling factor) and latent-size conditions.
    public static let targetMean = "target_mean", targetLogvar = "target_logvar"
    public static let maskedMean = "masked_mean", maskedLogvar = "masked_logvar"
    public static let referenceMean = "reference_mean", referenceLogvar = "reference_logvar"
    public static let maskLatent = "mask_latent", denseposeLatent = "densepose_latent"
}

public enum Prepare {
    public static let formatVersion: Int64 = 1
    /// Samples per shard.
    public static let shardSize = 32

    public static func cacheURL(_ run: RunDirectory) -> URL { run.url.appendingPathComponent("cache") }
    public static func folder(_ run: RunDirectory, height: Int, width: Int) -> URL {
        cacheURL(run).appendingPathComponent("\(height)x\(width)")
    }
    public static func shardName(_ i: Int) -> String { String(format: "shard-%04d.h5", i) }

    public struct Summary: CustomStringConvertible {
        public var resolutions: [String] = []
        public var written = 0, kept = 0, samples = 0
        public var seconds = 0.0
        public var description: String {
            "prepared \(samples) samples at \(resolutions.joined(separator: ", ")): \(written) shard(s) written, \(kept) already up to date (\(formatDuration(seconds)))"
        }
    }

    /// Caches every stage resolution of `run`. Shards already present and matching are kept (so an
    /// interrupted prepare resumes). `progress(done, total, label)` is called after each sample.
    public static func run(_ run: RunDirectory, progress: (Int, Int, String) -> Void = { _, _, _ in }) throws -> Summary
    {
        let config = try run.readConfig()
        let root = run.resolve(config.dataRoot)
        let dataset = config.openDataset(root: URL(fileURLWithPath: root))
        let problems = dataset.check(CheckOptions(decodeImages: false))
        if !problems.errors.isEmpty {
            throw RunError(
                "data at \(root) has \(problems.errors.count) problem(s); run `leffa-coord check-data` for the full list:\n"
                    + Array(problems.errors.prefix(5)).report)
        }
        if dataset.count == 0 { throw RunError("data at \(root): no samples (empty pairs file?)") }
        let model: LeffaModel? = config.space == .latent ? try vaeModel(config, run: run) : nil

        var sizes: [(Int, Int)] = []
        for s in config.stages where !sizes.contains(where: { $0 == (s.height, s.width) }) {
            sizes.append((s.height, s.width))
        }
        var summary = Summary()
        let started = Date()
        let n = dataset.count, shards = (n + shardSize - 1) / shardSize
        for (h, w) in sizes {
            let label = "\(h)x\(w)"
            summary.resolutions.append(label)
            let dir = folder(run, height: h, width: w)
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            for k in 0..<shards {
                let first = k * shardSize, count = min(shardSize, n - first)
                let url = dir.appendingPathComponent(shardName(k))
                let meta = shardMeta(config, dataset: dataset, height: h, width: w, first: first, count: count)
                if FileManager.default.fileExists(atPath: url.path) {
                    if let r = try? CheckpointReader(url: url), meta.allSatisfy({ r.meta[$0.key] == $0.value }) {
                        r.close(); summary.kept += 1; progress(first + count, n, label); continue
                    }
                    try FileManager.default.removeItem(at: url) // stale or damaged: rebuild it
                }
                var c = CheckpointContents(meta: meta)
                for i in first..<(first + count) {
                    let s = try dataset.sample(at: i, size: Size(height: h, width: w))
                    c.setGroup("samples/\(i)", try fields(s, model: model, config: config))
                    progress(i + 1, n, label)
                }
                try CheckpointWriter.write(c, to: url)
                summary.written += 1
            }
            summary.samples += n
        }
        summary.seconds = Date().timeIntervalSince(started)
        return summary
    }

    /// What a shard's meta must say for the cache to be used with this config and dataset.
    static func shardMeta(
        _ config: RunConfig, dataset: any PairedImageDataset, height: Int, width: Int, first: Int, count: Int
    ) -> [String: CheckpointValue] {
        var m: [String: CheckpointValue] = [
            "cache_version": .int64(formatVersion), "space": .string(config.space.rawValue),
            "height": .int64(Int64(height)), "width": .int64(Int64(width)),
            "dataset_count": .int64(Int64(dataset.count)), "first_index": .int64(Int64(first)),
            "count": .int64(Int64(count)),
            "ids": .string((first..<(first + count)).map { dataset.id(at: $0) }.joined(separator: "\n")),
            "densepose": .string(config.data.densepose.rawValue)
        ]
        if config.space == .latent { m["vae"] = .string(vaeFingerprint(config)) }
        return m
    }

    /// Which VAE encoded the moments: the model config and the initial weights named.
    static func vaeFingerprint(_ config: RunConfig) -> String {
        "\(config.model.vae) init=\(config.initFrom.map { "\($0.kind):\($0.path)" } ?? "random seed \(config.seed)")"
    }

    /// The model whose (frozen) VAE the trainer uses: the configured initial weights, else the
    /// seeded random initialisation, as `Trainer.restore` sets them up for the first stage.
    static func vaeModel(_ config: RunConfig, run: RunDirectory) throws -> LeffaModel {
        let m = try LeffaModel(config: config.model, seed: config.seed)
        if let (kind, path) = config.initFrom {
            let p = run.resolve(path)
            if kind == "leffa" { try m.loadWeights(from: p) } else { try m.importDiffusers(folder: p) }
        }
        return m
    }

    static func fields(_ s: TrainingSample, model: LeffaModel?, config: RunConfig) throws -> [(String, Tensor)] {
        var f: [(String, Tensor)] = [
            (CacheFields.image, s.image), (CacheFields.reference, s.reference),
            (CacheFields.inpaintMask, s.inpaintMask),
            (CacheFields.densepose, s.densepose), (CacheFields.maskedImage, s.maskedImage),
            (CacheFields.lossMask, s.lossMask)
        ]
        if let flow = s.flow, let valid = s.flowValid {
            f += [(CacheFields.flow, flow), (CacheFields.flowValid, valid)]
        }
        if let model {
            let fct = config.model.vae.downscale, h = s.image.shape[1] / fct, w = s.image.shape[2] / fct
            func moments(_ x: Tensor) -> (Tensor, Tensor) {
                GradMode.withoutGrad {
                    let p = model.vae.encode(x.reshaped([1] + x.shape))
                    return (
                        p.mean.detached().reshaped(Array(p.mean.shape.dropFirst())),
                        p.logvar.detached().reshaped(Array(p.logvar.shape.dropFirst()))
                    )
                }
            }
            let (tm, tl) = moments(s.image), (mm, ml) = moments(s.maskedImage), (rm, rl) = moments(s.reference)
            let maskL = GradMode.withoutGrad {
                resizeNearest(s.inpaintMask.reshaped([1] + s.inpaintMask.shape), size: (h, w))
            }
            let denseL = GradMode.withoutGrad {
                resizeNearest(s.densepose.reshaped([1] + s.densepose.shape), size: (h, w))
            }
            f += [
                (CacheFields.targetMean, tm), (CacheFields.targetLogvar, tl), (CacheFields.maskedMean, mm),
                (CacheFields.maskedLogvar, ml),
                (CacheFields.referenceMean, rm), (CacheFields.referenceLogvar, rl),
                (CacheFields.maskLatent, maskL.reshaped(Array(maskL.shape.dropFirst()))),
                (CacheFields.denseposeLatent, denseL.reshaped(Array(denseL.shape.dropFirst())))
            ]
        }
        return f
    }
}

/// Reads prepared samples of one resolution (see Prepare): the shards are opened lazily and their
/// meta checked against the config and dataset the first time each is used.
public final class SampleCache {
    public let folder: URL
    let config: RunConfig
    let dataset: any PairedImageDataset
    let height: Int, width: Int
    private var readers: [Int: CheckpointReader] = [:]

    /// The cache of `height`×`width` under `root` (RUN/cache), or nil when it was not prepared.
    public init?(root: URL, config: RunConfig, dataset: any PairedImageDataset, height: Int, width: Int) {
        folder = root.appendingPathComponent("\(height)x\(width)")
        guard FileManager.default.fileExists(atPath: folder.appendingPathComponent(Prepare.shardName(0)).path) else {
            return nil
        }
        self.config = config; self.dataset = dataset; self.height = height; self.width = width
    }

    deinit { for r in readers.values { r.close() } }

    func reader(for index: Int) throws -> CheckpointReader {
        let k = index / Prepare.shardSize
        if let r = readers[k] { return r }
        let url = folder.appendingPathComponent(Prepare.shardName(k))
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw RunError(
                "\(url.path): missing shard of the prepared cache (sample \(index)); run `leffa-coord prepare` again or remove \(folder.path)"
            )
        }
        let r = try CheckpointReader(url: url)
        let first = k * Prepare.shardSize
        let want = Prepare.shardMeta(
            config, dataset: dataset, height: height, width: width, first: first,
            count: min(Prepare.shardSize, dataset.count - first))
        for (key, value) in want.sorted(by: { $0.key < $1.key }) where r.meta[key] != value {
            r.close()
            throw RunError(
                "\(url.path): the prepared cache is stale: field \(key) is \(r.meta[key].map { "\($0)" } ?? "missing"), expected \(value) for this config and data; run `leffa-coord prepare` again or remove \(folder.path)"
            )
        }
        readers[k] = r
        return r
    }

    func read(_ index: Int, _ name: String) throws -> Tensor {
        try reader(for: index).read(name, in: "samples/\(index)")
    }
    func has(_ index: Int, _ name: String) throws -> Bool {
        try reader(for: index).names(in: "samples/\(index)").contains(name)
    }

    public func sample(_ index: Int) throws -> TrainingSample {
        var s = TrainingSample(
            index: index, id: dataset.id(at: index), image: try read(index, CacheFields.image),
            reference: try read(index, CacheFields.reference), inpaintMask: try read(index, CacheFields.inpaintMask),
            densepose: try read(index, CacheFields.densepose), maskedImage: try read(index, CacheFields.maskedImage),
            lossMask: try read(index, CacheFields.lossMask))
        if try has(index, CacheFields.flow) {
            s.flow = try read(index, CacheFields.flow); s.flowValid = try read(index, CacheFields.flowValid)
        }
        return s
    }

    /// A latent-space field of several samples stacked (B, …).
    public func stacked(_ indices: [Int], _ name: String) throws -> Tensor {
        let parts = try indices.map { try read($0, name) }
        let out = Tensor(zeros: [parts.count] + parts[0].shape)
        for (i, p) in parts.enumerated() { (out.data + i * p.count).update(from: p.data, count: p.count) }
        return out
    }
}
