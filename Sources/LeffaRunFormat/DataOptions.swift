// The data section's options beyond where the data is: how densepose images are read, DressCode's
// categories, paired or unpaired garments, and the opt-in augmentation; and the one place that
// opens a run's dataset with them, so training, prepare, validation, the golden check and eval
// cannot read the same files differently.
import Foundation
import LeffaData

public struct DataOptions: Sendable, Equatable {
    /// `data.densepose`: rgb (renderings, try-on sets) or iuv (the published pose-transfer input).
    public var densepose: DenseposeEncoding = .rgb
    /// `data.category` (DressCode only): one category or a list.
    public var categories: [DressCodeDataset.Category] = DressCodeDataset.Category.allCases
    /// `data.pairs`: the person's own garment, or the pairs file's second column (which DressCode
    /// test list is read, too). Validation always samples paired pairs (it needs the ground truth).
    public var pairing: Pairing = .paired
    /// `data.augment`; nil: off.
    public var augment: AugmentConfig? = nil
    public init() {}

    static let augmentExample =
        "a mapping like {hflip: 0.5, scale: 0.05, shift: 0.05, color_jitter: {brightness: 0.1, contrast: 0.1, saturation: 0.1, hue: 0.02}}"

    /// Reads the options of `data` (a run of kind `kind`); a key that does not apply to the kind is
    /// an error, not silently ignored.
    static func parse(_ data: Reader, kind: String) throws -> DataOptions {
        var o = DataOptions()
        let dp = try data.string("densepose", default: "rgb")
        guard let enc = DenseposeEncoding(rawValue: dp) else {
            throw data.fail(
                "densepose",
                "rgb (RGB renderings, v/127.5 − 1) or iuv (IUV images: U, V /255, part index /24, then ×2 − 1), got \(dp)"
            )
        }
        o.densepose = enc
        let categoryNames = DressCodeDataset.Category.allCases.map(\.rawValue)
        if let names = try data.stringOrStrings(
            "category", expected: "one of \(categoryNames.joined(separator: ", ")) or a list of them")
        {
            guard kind == "dresscode" else {
                throw data.fail("category", "no category for data.kind \(kind) (only dresscode has categories)")
            }
            o.categories = try names.map { n in
                guard let c = DressCodeDataset.Category(rawValue: n) else {
                    throw data.fail(
                        "category", "one of \(categoryNames.joined(separator: ", ")) or a list of them, got \(n)")
                }
                return c
            }
            if Set(o.categories).count != o.categories.count {
                throw data.fail("category", "each category once, got \(names)")
            }
        }
        if let p = try data.optionalString("pairs") {
            guard let pairing = Pairing(rawValue: p) else { throw data.fail("pairs", "paired or unpaired, got \(p)") }
            guard kind != "deepfashion" else {
                throw data.fail(
                    "pairs", "no pairs setting for data.kind deepfashion (pose-transfer pairs are source → target)")
            }
            o.pairing = pairing
        }
        if let a = try data.optionalSection("augment", expected: augmentExample) {
            var c = AugmentConfig()
            c.hflip = try a.float("hflip", default: 0, in: 0...1)
            c.scale = try a.float("scale", default: 0, in: 0...0.5)
            c.shift = try a.float("shift", default: 0, in: 0...0.5)
            if let j = try a.optionalSection(
                "color_jitter", expected: "a mapping like {brightness: 0.1, contrast: 0.1, saturation: 0.1, hue: 0.02}")
            {
                c.brightness = try j.float("brightness", default: 0, in: 0...1)
                c.contrast = try j.float("contrast", default: 0, in: 0...1)
                c.saturation = try j.float("saturation", default: 0, in: 0...1)
                c.hue = try j.float("hue", default: 0, in: 0...0.5)
                j.finish()
            }
            a.finish()
            o.augment = c.isOff ? nil : c
        }
        return o
    }
}

extension RunConfig {
    /// The run's dataset at `root`, split `split` (default: the config's), read with the data
    /// options; `pairing` overrides `data.pairs` (validation and eval choose their own).
    public func openDataset(root: URL, split: String? = nil, pairing: Pairing? = nil) -> any PairedImageDataset {
        LeffaData.openDataset(
            DatasetKind(rawValue: dataKind) ?? .vitonHD, root: root, split: split ?? dataSplit,
            pairing: pairing ?? data.pairing, categories: data.categories, densepose: data.densepose)
    }
}
