// DressCode: one folder per category, each with
//   images/ID_0.jpg (person), images/ID_1.jpg (garment), label_maps/ID_4.png (SCHP-ATR labels),
//   dense/ID_5.png (DensePose part labels) or image-densepose/ID_0.jpg (an RGB rendering),
//   optional agnostic masks, and pair lists train_pairs.txt, test_pairs_paired.txt,
//   test_pairs_unpaired.txt with lines "ID_0.jpg ID_1.jpg". When a category has no pair list of
//   its own, the root-level list of the same name is used, whose third column names the
//   category (upper_body / lower_body / dresses, or 0 / 1 / 2 in that order).
//
// Inpainting mask: agnostic_masks/ID_0.png, masks/ID_0.png or mask/ID_0.png if present; else
// derived from the label map: the category's garment labels plus the limbs a garment of that
// category may cover (upper_body: arms 14, 15; lower_body: legs 12, 13; dresses: arms and legs),
// dilated by 1/64 of the image height (16 px at 1024) to hide the old garment's outline, with
// the head (hat 1, hair 2, sunglasses 3, head 11) removed so the face is always kept.
// Loss mask M: the garment itself — upper_clothes 4; skirt 5 + pants 6; dress 7.
// Labels (DressCode README): 0 background, 1 hat, 2 hair, 3 sunglasses, 4 upper_clothes,
// 5 skirt, 6 pants, 7 dress, 8 belt, 9/10 shoes, 11 head, 12/13 legs, 14/15 arms, 16 bag, 17 scarf.

import Foundation

public struct DressCodeDataset: PairedImageDataset {
    public enum Category: String, Sendable, CaseIterable {
        case upperBody = "upper_body"
        case lowerBody = "lower_body"
        case dresses

        /// Labels of the garment itself (the loss mask).
        public var garmentLabels: [UInt8] {
            switch self {
            case .upperBody: [4];
            case .lowerBody: [5, 6];
            case .dresses: [7]
            }
        }
        /// Labels a new garment of this category may cover (added to the derived inpainting mask).
        public var coveredLabels: [UInt8] {
            switch self {
            case .upperBody: [14, 15];
            case .lowerBody: [12, 13];
            case .dresses: [12, 13, 14, 15]
            }
        }
    }
    public static let headLabels: [UInt8] = [1, 2, 3, 11]
    /// Dilation of derived inpainting masks, as a fraction of the image height.
    public static let derivedMaskDilation: Float = 1.0 / 64

    struct Entry { var category: Category; var line: PairLine; var pairsFile: URL }

    public let name = "dresscode"
    public let root: URL
    public let split: String
    public let pairing: Pairing
    public let categories: [Category]
    /// How the densepose images are read (`data.densepose`).
    public var denseposeEncoding: DenseposeEncoding = .rgb
    let entries: [Entry]
    public let indexProblems: [DataProblem]

    public init(
        root: URL, split: String = "train", pairing: Pairing = .paired, categories: [Category] = Category.allCases
    ) {
        self.root = root
        self.split = split
        self.pairing = pairing
        self.categories = categories
        let fileName = split == "train" ? "train_pairs.txt" : "\(split)_pairs_\(pairing.rawValue).txt"
        var entries: [Entry] = [], problems: [DataProblem] = []
        var rootList: (lines: [PairLine], problems: [DataProblem])? = nil
        let rootFile = root.appendingPathComponent(fileName)
        for c in categories {
            let dir = root.appendingPathComponent(c.rawValue)
            if !directoryExists(dir) {
                problems.append(
                    DataProblem(
                        .error,
                        DataError(
                            .missing, path: dir.path, field: "category folder", reason: "no such folder",
                            hint:
                                "DressCode keeps each category in its own folder (upper_body, lower_body, dresses); pass categories: to use fewer"
                        )))
                continue
            }
            let own = dir.appendingPathComponent(fileName)
            if FileManager.default.fileExists(atPath: own.path) {
                let parsed = PairsFile.read(own, columns: 2...3, expected: "ID_0.jpg ID_1.jpg")
                problems += parsed.problems
                entries += parsed.lines.map { Entry(category: c, line: $0, pairsFile: own) }
                continue
            }
            if rootList == nil {
                if FileManager.default.fileExists(atPath: rootFile.path) {
                    let parsed = PairsFile.read(rootFile, columns: 3...3, expected: "ID_0.jpg ID_1.jpg category")
                    rootList = parsed
                    problems += parsed.problems
                } else {
                    rootList = ([], [])
                }
            }
            if FileManager.default.fileExists(atPath: rootFile.path) {
                for l in rootList!.lines where Self.category(l.fields[2]) == c {
                    entries.append(Entry(category: c, line: l, pairsFile: rootFile))
                }
            } else {
                problems.append(
                    DataProblem(
                        .error,
                        DataError(
                            .missing, path: own.path, field: "pairs file",
                            reason: "no such file (nor \(rootFile.path))",
                            hint: "expected a pair list with lines \"ID_0.jpg ID_1.jpg\"")))
            }
        }
        // Root-level lines whose category column is not a known category.
        if let rl = rootList {
            for l in rl.lines where Self.category(l.fields[2]) == nil {
                problems.append(
                    DataProblem(
                        .error,
                        DataError(
                            .malformed, path: rootFile.path, field: "pairs file", line: l.line,
                            pairsFile: rootFile.path,
                            reason:
                                "unknown category \"\(l.fields[2])\"; expected upper_body, lower_body, dresses (or 0, 1, 2)"
                        )))
            }
        }
        self.entries = entries
        indexProblems = problems
    }

    static func category(_ s: String) -> Category? {
        switch s.lowercased() {
        case "upper_body", "upper", "0": .upperBody
        case "lower_body", "lower", "1": .lowerBody
        case "dresses", "dress", "2": .dresses
        default: nil
        }
    }

    public var count: Int { entries.count }

    public func recipe(at index: Int) -> SampleRecipe {
        let e = entries[index]
        let dir = root.appendingPathComponent(e.category.rawValue)
        let person = e.line.fields[0]
        let id = Self.sampleID(person)
        let cloth =
            pairing == .paired
            ? "\(id)_1.\(ext(e.line.fields[1]).isEmpty ? "jpg" : ext(e.line.fields[1]))" : e.line.fields[1]
        let labels = dir.appendingPathComponent("label_maps/\(id)_4.png")

        let maskCandidates = ["agnostic_masks", "masks", "mask"].flatMap { d in
            ["png", "jpg"].map { dir.appendingPathComponent("\(d)/\(id)_0.\($0)") }
        }
        let inpaint: MaskSource =
            firstExisting(maskCandidates).map { .file($0) }
            ?? .labels(
                labels, include: e.category.garmentLabels + e.category.coveredLabels,
                dilate: Self.derivedMaskDilation, exclude: Self.headLabels)
        let dense =
            firstExisting([
                dir.appendingPathComponent("image-densepose/\(id)_0.jpg"),
                dir.appendingPathComponent("image-densepose/\(id)_0.png"),
                dir.appendingPathComponent("dense/\(id)_5.png")
            ])
            ?? dir.appendingPathComponent("dense/\(id)_5.png")
        return SampleRecipe(
            index: index, id: "\(name)/\(e.category.rawValue)/\(split)/\(person)/\(cloth)",
            line: e.line.line, pairsFile: e.pairsFile.path,
            image: dir.appendingPathComponent("images/\(person)"),
            reference: dir.appendingPathComponent("images/\(cloth)"),
            inpaintMask: inpaint, densepose: .image(dense), denseposeEncoding: denseposeEncoding,
            lossMask: .labels(labels, include: e.category.garmentLabels, dilate: 0, exclude: []))
    }

    /// "048392_0.jpg" → "048392".
    static func sampleID(_ person: String) -> String {
        let s = stem(person)
        return s.hasSuffix("_0") ? String(s.dropLast(2)) : s
    }
}
