// VITON-HD (and the synthetic set, which uses the same layout):
//   <root>/<split>_pairs.txt                       lines "person.jpg cloth.jpg"
//   <root>/<split>/image/NAME.jpg                  person
//   <root>/<split>/cloth/NAME.jpg                  in-shop garment
//   <root>/<split>/agnostic-mask/NAME_mask.png     inpainting mask (1 = regenerate)
//   <root>/<split>/image-densepose/NAME.jpg        densepose rendering
//   <root>/<split>/image-parse-v3/NAME.png         optional: LIP parsing labels (palette PNG)
//   <root>/<split>/flow/NAME.safetensors           synthetic sets only: ground-truth flow
// Paired (training): the reference is the person's own garment cloth/<person name>; unpaired:
// the pair's second column. Loss mask M = the garment in the person image: parsing labels
// 5 (upper clothes), 6 (dress), 7 (coat) when image-parse-v3 exists, else the agnostic mask
// (a superset of the garment: it also covers arms and neck). The densepose and agnostic mask are
// looked up by the person's stem; densepose may have any of .jpg/.png/.jpeg.

import Foundation

public struct VitonHDDataset: PairedImageDataset {
    public let name: String
    public let root: URL
    public let split: String
    public let pairing: Pairing
    public let pairsFile: URL
    public let pairs: [PairLine]
    public let indexProblems: [DataProblem]
    /// Whether `<split>/image-parse-v3` exists (decides the loss mask source).
    public let hasParsing: Bool
    /// How the densepose images are read (`data.densepose`).
    public var denseposeEncoding: DenseposeEncoding = .rgb

    /// LIP labels of the garment in image-parse-v3: upper clothes, dress, coat.
    public static let garmentLabels: [UInt8] = [5, 6, 7]

    public init(
        root: URL, split: String = "train", pairing: Pairing = .paired, pairsFile: URL? = nil, name: String = "vitonhd"
    ) {
        self.name = name
        self.root = root
        self.split = split
        self.pairing = pairing
        let file = pairsFile ?? root.appendingPathComponent("\(split)_pairs.txt")
        self.pairsFile = file
        var problems: [DataProblem] = []
        let dir = root.appendingPathComponent(split)
        if !directoryExists(dir) {
            problems.append(
                DataProblem(
                    .error,
                    DataError(
                        .missing, path: dir.path, field: "split folder",
                        reason: "no such folder",
                        hint: "expected \(root.path)/\(split)/{image,cloth,agnostic-mask,image-densepose}")))
        }
        let parsed = PairsFile.read(file, columns: 2...2, expected: "person.jpg cloth.jpg")
        pairs = parsed.lines
        problems += parsed.problems
        hasParsing = directoryExists(dir.appendingPathComponent("image-parse-v3"))
        if !hasParsing && directoryExists(dir) {
            problems.append(
                DataProblem(
                    .warning,
                    DataError(
                        .missing, path: dir.appendingPathComponent("image-parse-v3").path,
                        field: SampleField.lossMask,
                        reason:
                            "no parsing maps; the loss mask falls back to the agnostic mask, which also covers arms and neck"
                    )))
        }
        indexProblems = problems
    }

    public var count: Int { pairs.count }

    public func recipe(at index: Int) -> SampleRecipe {
        let p = pairs[index]
        let person = p.fields[0], cloth = pairing == .paired ? person : p.fields[1]
        let dir = root.appendingPathComponent(split)
        let s = stem(person)
        let maskDir = dir.appendingPathComponent("agnostic-mask")
        let mask =
            firstExisting([
                maskDir.appendingPathComponent("\(s)_mask.png"), maskDir.appendingPathComponent("\(s)_mask.jpg")
            ])
            ?? maskDir.appendingPathComponent("\(s)_mask.png")
        let denseDir = dir.appendingPathComponent("image-densepose")
        let denseNames =
            [person] + ["jpg", "png", "jpeg"].filter { $0 != ext(person).lowercased() }.map { "\(s).\($0)" }
        let dense =
            firstExisting(denseNames.map { denseDir.appendingPathComponent($0) })
            ?? denseDir.appendingPathComponent(person)

        var notes: [DataError] = []
        var loss = MaskSource.file(mask)
        if hasParsing {
            let parse = dir.appendingPathComponent("image-parse-v3/\(s).png")
            if FileManager.default.fileExists(atPath: parse.path) {
                loss = .labels(parse, include: Self.garmentLabels, dilate: 0, exclude: [])
            } else {
                notes.append(
                    DataError(
                        .missing, path: parse.path, field: SampleField.lossMask, line: p.line,
                        pairsFile: pairsFile.path,
                        reason: "no parsing map; this sample's loss mask falls back to the agnostic mask"))
            }
        }
        var flow: URL? = nil
        if pairing == .paired {
            let f = dir.appendingPathComponent("flow/\(s).safetensors")
            if FileManager.default.fileExists(atPath: f.path) { flow = f }
        }
        return SampleRecipe(
            index: index, id: "\(name)/\(split)/\(person)/\(cloth)", line: p.line, pairsFile: pairsFile.path,
            image: dir.appendingPathComponent("image/\(person)"),
            reference: dir.appendingPathComponent("cloth/\(cloth)"),
            inpaintMask: .file(mask), densepose: .image(dense), denseposeEncoding: denseposeEncoding,
            lossMask: loss, flow: flow, notes: notes)
    }
}
