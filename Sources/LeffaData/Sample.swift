// A training sample and how one is assembled from files. Every dataset reader turns a pair into a
// `SampleRecipe` (which file feeds which field, and how masks are derived); one loader here turns a
// recipe into tensors at a stage resolution, so the three datasets cannot drift apart in
// normalisation or geometry:
//   image, reference, densepose: (3, H, W) in [-1, 1]     inpaintMask, lossMask: (1, H, W) in {0, 1}
//   maskedImage = image × (inpaintMask < 0.5)              flow (synthetic sets only): (H, W, 2)
// One ResizePlan (from the person image's size) serves every person-aligned field; the reference
// gets its own. Not batching policy or caching: the trainer decides which indices to load.

import Foundation
import LeffaTensor
import SafeTensors

/// Field names used in errors and problems.
public enum SampleField {
    public static let image = "person image"
    public static let reference = "reference image"
    public static let inpaintMask = "inpainting mask"
    public static let densepose = "densepose"
    public static let lossMask = "loss mask"
    public static let labelMap = "label map"
    public static let flow = "ground-truth flow"
}

/// Where a mask comes from.
public enum MaskSource: Sendable, Equatable {
    /// A 0/255 image (PNG or JPEG); pixels ≥ 128 are 1.
    case file(URL)
    /// Pixels of a label map whose label is in `include`, dilated by a square whose radius is
    /// `dilate` × the image height (1/64 → 16 pixels at 1024), then with pixels whose label is
    /// in `exclude` removed.
    case labels(URL, include: [UInt8], dilate: Float, exclude: [UInt8])
    /// Where this sample's densepose is not background (pose transfer: the person).
    case denseposeForeground
    /// All ones (pose transfer regenerates the whole image; a loss mask with no better source).
    case everywhere
}

/// Where the densepose image comes from.
public enum DenseposeSource: Sendable, Equatable {
    /// An RGB rendering (used as is), or a one-channel part-label image (coloured, see
    /// `colorizeDenseposeLabels`).
    case image(URL)
    /// None available: the field is −1 (black, "no body") and `.denseposeForeground` is empty.
    case absent
}

/// Which files make sample `index` and how. Built by a dataset reader; loaded by `loadSample`.
public struct SampleRecipe: Sendable, Equatable {
    public var index: Int
    /// Stable across runs and machines: dataset, split (and category), the two names of the pair.
    public var id: String
    /// The pairs-file line the sample comes from.
    public var line: Int?
    public var pairsFile: String?
    /// Target person (what the model learns to produce).
    public var image: URL
    /// Garment image (try-on) or source person (pose transfer).
    public var reference: URL
    public var inpaintMask: MaskSource
    public var densepose: DenseposeSource
    /// How the densepose image's pixels are read (`data.densepose`).
    public var denseposeEncoding: DenseposeEncoding = .rgb
    public var lossMask: MaskSource
    /// Ground-truth flow file (synthetic sets, paired samples only).
    public var flow: URL?
    /// Fallbacks the reader chose for this sample (e.g. no densepose found), which `check()`
    /// reports as warnings.
    public var notes: [DataError] = []
}

public struct TrainingSample: Sendable {
    public var index: Int
    public var id: String
    /// (3, H, W) in [-1, 1].
    public var image: Tensor
    /// (3, H, W) in [-1, 1].
    public var reference: Tensor
    /// (1, H, W), 1 = region to generate.
    public var inpaintMask: Tensor
    /// (3, H, W) in [-1, 1].
    public var densepose: Tensor
    /// (3, H, W): image × (inpaintMask < 0.5).
    public var maskedImage: Tensor
    /// (1, H, W): M of the Leffa loss (garment for try-on, person for pose transfer).
    public var lossMask: Tensor
    /// (H, W, 2), (x, y) in the reference's normalised coordinates (align_corners=True), when the
    /// dataset has ground truth; `flowValid` (1, H, W) marks where it holds.
    public var flow: Tensor?
    public var flowValid: Tensor?

    /// A sample from its parts (e.g. read back from a prepared cache).
    public init(
        index: Int, id: String, image: Tensor, reference: Tensor, inpaintMask: Tensor, densepose: Tensor,
        maskedImage: Tensor, lossMask: Tensor, flow: Tensor? = nil, flowValid: Tensor? = nil
    ) {
        self.index = index; self.id = id; self.image = image; self.reference = reference; self.inpaintMask = inpaintMask
        self.densepose = densepose; self.maskedImage = maskedImage; self.lossMask = lossMask; self.flow = flow;
        self.flowValid = flowValid
    }
}

// MARK: - Loading

/// Assembles `recipe` at `size`. Throws a `DataError` naming the file, the field, the pairs-file
/// line and what was expected.
public func loadSample(
    _ recipe: SampleRecipe, size: Size, policy: AspectPolicy = .centerCrop,
    aspectTolerance: Double = 0.01
) throws -> TrainingSample {
    let line = recipe.line, pairs = recipe.pairsFile
    func attributed<T>(_ field: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as DataError {
            throw e.attributed(field: field, line: line, pairsFile: pairs)
        }
    }
    let person = try attributed(SampleField.image) { try ImageIO.read(recipe.image, channels: 3) }
    let source = person.size
    func sameSize(_ img: Image, _ url: URL, _ field: String) throws {
        if img.size != source {
            throw DataError(
                .wrongSize, path: url.path, field: field, line: line, pairsFile: pairs,
                reason: "is \(img.size), expected \(source) like the person image '\(recipe.image.lastPathComponent)'",
                hint: "every person-aligned file of a sample must have the person image's size")
        }
    }
    let plan = ResizePlan(from: source, to: size, policy: policy, aspectTolerance: aspectTolerance)

    let ref = try attributed(SampleField.reference) { try ImageIO.read(recipe.reference, channels: 3) }
    let refPlan = ResizePlan(from: ref.size, to: size, policy: policy, aspectTolerance: aspectTolerance)

    // Label maps are read once even when both masks come from the same file.
    var labelCache: [URL: Image] = [:]
    func labels(_ url: URL, _ field: String) throws -> Image {
        if let l = labelCache[url] { return l }
        let l = try attributed(field) { try ImageIO.readLabels(url) }
        try sameSize(l, url, field)
        labelCache[url] = l
        return l
    }

    // Densepose at source resolution (foreground masks are derived before resizing).
    var dense: Tensor, foreground: Tensor
    switch recipe.densepose {
    case .absent:
        dense = Tensor(repeating: -1, shape: [3, source.height, source.width])
        foreground = Tensor(zeros: [1, source.height, source.width])
    case .image(let url):
        let img = try attributed(SampleField.densepose) { try ImageIO.read(url, channels: 0) }
        try sameSize(img, url, SampleField.densepose)
        (dense, foreground) = try attributed(SampleField.densepose) {
            try denseposeInput(img, encoding: recipe.denseposeEncoding, path: url.path)
        }
    }

    func mask(_ from: MaskSource, _ field: String) throws -> Tensor {
        switch from {
        case .file(let url):
            let m = try attributed(field) { try ImageIO.read(url, channels: 1) }
            try sameSize(m, url, field)
            return m.maskTensor()
        case let .labels(url, include, dilate, exclude):
            let radius = Int((Float(source.height) * dilate).rounded())
            return labelMask(try labels(url, field), include: include, dilate: radius, exclude: exclude)
        case .denseposeForeground:
            return foreground
        case .everywhere:
            return Tensor(repeating: 1, shape: [1, source.height, source.width])
        }
    }
    let inpaint = try mask(recipe.inpaintMask, SampleField.inpaintMask)
    let loss = try mask(recipe.lossMask, SampleField.lossMask)

    let image = resize(person.tensor(.signed), plan: plan, mode: .bilinear, fill: 1)
    let reference = resize(ref.tensor(.signed), plan: refPlan, mode: .bilinear, fill: 1)
    let inpaintR = resize(inpaint, plan: plan, mode: .nearest, fill: 0)
    let lossR = resize(loss, plan: plan, mode: .nearest, fill: 0)
    let denseR = resize(dense, plan: plan, mode: .nearest, fill: -1)
    let masked = maskedImage(image, inpaintR)

    var sample = TrainingSample(
        index: recipe.index, id: recipe.id, image: image, reference: reference,
        inpaintMask: inpaintR, densepose: denseR, maskedImage: masked, lossMask: lossR)
    if let url = recipe.flow {
        let gt = try attributed(SampleField.flow) { try GroundTruthFlow.read(url, expected: source) }
        let r = gt.resampled(person: plan, reference: refPlan)
        sample.flow = r.flow
        sample.flowValid = r.valid
    }
    return sample
}

/// image × (mask < 0.5): (3, H, W) × (1, H, W).
public func maskedImage(_ image: Tensor, _ mask: Tensor) -> Tensor {
    shapeCheck(
        image.rank == 3 && mask.rank == 3 && mask.dim(0) == 1 && image.dim(1) == mask.dim(1)
            && image.dim(2) == mask.dim(2),
        "maskedImage", image.shape, mask.shape, expected: "(C, H, W) and (1, H, W)")
    let out = Tensor(zeros: image.shape)
    let n = mask.count, c = image.dim(0), p = image.data, m = mask.data, q = out.data
    for k in 0..<c { for i in 0..<n { q[k * n + i] = m[i] < 0.5 ? p[k * n + i] : 0 } }
    return out
}

/// (1, H, W): 1 where the label is in `include` (after a square dilation of radius `dilate`),
/// except where the label is in `exclude`.
public func labelMask(_ labels: Image, include: [UInt8], dilate: Int = 0, exclude: [UInt8] = []) -> Tensor {
    precondition(labels.channels == 1, "labelMask: label maps have one channel, got \(labels.channels)")
    let h = labels.height, w = labels.width
    var inc = [Bool](repeating: false, count: 256), exc = [Bool](repeating: false, count: 256)
    for l in include { inc[Int(l)] = true }
    for l in exclude { exc[Int(l)] = true }
    var m = labels.pixels.map { inc[Int($0)] ? UInt8(1) : 0 }
    if dilate > 0 { m = dilateMask(m, height: h, width: w, radius: dilate) }
    let t = Tensor(zeros: [1, h, w])
    let p = t.data
    for i in 0..<(h * w) { p[i] = (m[i] != 0 && !exc[Int(labels.pixels[i])]) ? 1 : 0 }
    return t
}

/// Square (Chebyshev) dilation of a 0/1 mask, separably: rows, then columns.
func dilateMask(_ m: [UInt8], height h: Int, width w: Int, radius r: Int) -> [UInt8] {
    var tmp = [UInt8](repeating: 0, count: m.count), out = tmp
    for y in 0..<h {
        var last = -1_000_000 // last set column seen so far, scanning left to right
        var next = [Int](repeating: 1_000_000, count: w)
        var n = 1_000_000
        for x in stride(from: w - 1, through: 0, by: -1) { if m[y * w + x] != 0 { n = x }; next[x] = n }
        for x in 0..<w {
            if m[y * w + x] != 0 { last = x }
            if x - last <= r || next[x] - x <= r { tmp[y * w + x] = 1 }
        }
    }
    for x in 0..<w {
        var last = -1_000_000
        var next = [Int](repeating: 1_000_000, count: h)
        var n = 1_000_000
        for y in stride(from: h - 1, through: 0, by: -1) { if tmp[y * w + x] != 0 { n = y }; next[y] = n }
        for y in 0..<h {
            if tmp[y * w + x] != 0 { last = y }
            if y - last <= r || next[y] - y <= r { out[y * w + x] = 1 }
        }
    }
    return out
}

/// (1, H, W): 1 where a densepose image shows a body. RGB renderings: any channel above 20/255
/// (background is black; the margin absorbs JPEG noise). Part-label images: label > 0.
public func denseposeForeground(_ dense: Image) -> Tensor {
    let t = Tensor(zeros: [1, dense.height, dense.width])
    let p = t.data, c = dense.channels
    dense.pixels.withUnsafeBufferPointer { s in
        for i in 0..<(dense.height * dense.width) {
            if c == 1 { p[i] = s[i] > 0 ? 1 : 0 } else { p[i] = max(s[3 * i], s[3 * i + 1], s[3 * i + 2]) > 20 ? 1 : 0 }
        }
    }
    return t
}

/// DensePose part labels (0 = background, 1…24 = body parts, as DressCode's dense/*_5.png)
/// rendered as RGB: background black, parts along a viridis-like ramp by label/24 — close to
/// what detectron2's fine-segmentation visualiser produces, so models see comparable inputs.
public func colorizeDenseposeLabels(_ labels: Image) -> Image {
    precondition(labels.channels == 1, "colorizeDenseposeLabels: expected one channel, got \(labels.channels)")
    let anchors: [(Float, Float, Float)] = [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)]
    var lut = [UInt8](repeating: 0, count: 256 * 3)
    for l in 1..<256 {
        let t = min(Float(l) / 24, 1) * Float(anchors.count - 1)
        let i = min(Int(t), anchors.count - 2), f = t - Float(i)
        let a = anchors[i], b = anchors[i + 1]
        lut[3 * l] = UInt8((a.0 + (b.0 - a.0) * f).rounded())
        lut[3 * l + 1] = UInt8((a.1 + (b.1 - a.1) * f).rounded())
        lut[3 * l + 2] = UInt8((a.2 + (b.2 - a.2) * f).rounded())
    }
    var out = [UInt8](repeating: 0, count: labels.pixels.count * 3)
    for (i, l) in labels.pixels.enumerated() {
        out[3 * i] = lut[3 * Int(l)]; out[3 * i + 1] = lut[3 * Int(l) + 1]; out[3 * i + 2] = lut[3 * Int(l) + 2]
    }
    return Image(height: labels.height, width: labels.width, channels: 3, pixels: out)
}

// MARK: - Batches

/// Samples stacked along a new leading batch dimension, in the order given.
public struct ImageBatch: Sendable {
    public var indices: [Int]
    public var ids: [String]
    /// (B, 3, H, W)
    public var image: Tensor
    public var reference: Tensor
    /// (B, 1, H, W)
    public var inpaintMask: Tensor
    /// (B, 3, H, W)
    public var densepose: Tensor
    public var maskedImage: Tensor
    /// (B, 1, H, W)
    public var lossMask: Tensor
    /// (B, H, W, 2) and (B, 1, H, W) when every sample has a ground-truth flow.
    public var flow: Tensor?
    public var flowValid: Tensor?

    public init(_ samples: [TrainingSample]) {
        precondition(!samples.isEmpty, "ImageBatch: no samples")
        func stack(_ xs: [Tensor]) -> Tensor {
            let s = xs[0].shape
            for x in xs { shapeCheck(x.shape == s, "ImageBatch", s, x.shape, expected: "samples of one size") }
            let out = Tensor(zeros: [xs.count] + s)
            for (i, x) in xs.enumerated() { (out.data + i * x.count).update(from: x.data, count: x.count) }
            return out
        }
        indices = samples.map(\.index)
        ids = samples.map(\.id)
        image = stack(samples.map(\.image))
        reference = stack(samples.map(\.reference))
        inpaintMask = stack(samples.map(\.inpaintMask))
        densepose = stack(samples.map(\.densepose))
        maskedImage = stack(samples.map(\.maskedImage))
        lossMask = stack(samples.map(\.lossMask))
        let flows = samples.compactMap(\.flow), valids = samples.compactMap(\.flowValid)
        if flows.count == samples.count && valids.count == samples.count {
            flow = stack(flows); flowValid = stack(valids)
        }
    }
}
