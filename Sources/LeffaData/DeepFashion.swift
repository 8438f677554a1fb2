// DeepFashion (In-shop) pose transfer: pairs (source, target) of one person in two poses.
//   pairs: the first of <root>/fasion-resize-pairs-<split>.csv (the common misspelt name),
//          fashion-resize-pairs-<split>.csv, fashion-pairs-<split>.csv, <split>_pairs.csv,
//          <split>_pairs.txt — "from,to" CSV with header (an integer index column is allowed) or
//          "source target" per line;
//   images: <root>/<split>/NAME;
//   densepose of a person: <stem>.png / .jpg / _iuv.png in the first existing folder of
//          <root>/<split>_densepose, <root>/densepose/<split>, <root>/densepose.
// Sample: image = target, reference = source, densepose = the target's, inpainting mask = all
// ones (the whole target is generated, so the masked image is zero), loss mask M = the target
// person: where the target's densepose is not background. Without a densepose the densepose
// input is blank and M covers the whole image; `check()` warns about each such sample.

import Foundation

public struct DeepFashionDataset: PairedImageDataset {
    public let name = "deepfashion"
    public let root: URL
    public let split: String
    public let pairsFile: URL
    public let imageDirectory: URL
    /// nil when no densepose folder was found.
    public let denseposeDirectory: URL?
    /// How the densepose images are read (`data.densepose`; the published pose-transfer
    /// transform reads IUV).
    public var denseposeEncoding: DenseposeEncoding = .rgb
    public let pairs: [PairLine]
    public let indexProblems: [DataProblem]

    public init(
        root: URL, split: String = "train", pairsFile: URL? = nil, imageDirectory: URL? = nil,
        denseposeDirectory: URL? = nil
    ) {
        self.root = root
        self.split = split
        let candidates = [
            "fasion-resize-pairs-\(split).csv", "fashion-resize-pairs-\(split).csv", "fashion-pairs-\(split).csv",
            "\(split)_pairs.csv", "\(split)_pairs.txt"
        ].map { root.appendingPathComponent($0) }
        let file = pairsFile ?? firstExisting(candidates) ?? candidates[0]
        self.pairsFile = file
        self.imageDirectory = imageDirectory ?? root.appendingPathComponent(split)
        self.denseposeDirectory =
            denseposeDirectory
            ?? [
                root.appendingPathComponent("\(split)_densepose"),
                root.appendingPathComponent("densepose/\(split)"),
                root.appendingPathComponent("densepose")
            ].first(where: directoryExists)
        var problems: [DataProblem] = []
        if pairsFile == nil && firstExisting(candidates) == nil {
            problems.append(
                DataProblem(
                    .error,
                    DataError(
                        .missing, path: file.path, field: "pairs file",
                        reason:
                            "no pairs file; looked for \(candidates.map(\.lastPathComponent).joined(separator: ", "))",
                        hint: "pass pairsFile: to name it")))
        } else {
            let parsed = PairsFile.read(file, columns: 2...3, expected: "from,to")
            problems += parsed.problems
            var lines: [PairLine] = []
            for l in parsed.lines {
                if l.fields.count == 3 {
                    guard Int(l.fields[0]) != nil else {
                        problems.append(
                            DataProblem(
                                .error,
                                DataError(
                                    .malformed, path: file.path, field: "pairs file", line: l.line,
                                    pairsFile: file.path,
                                    reason:
                                        "\"\(l.fields.joined(separator: ","))\" has 3 fields and the first is not an index; expected \"from,to\""
                                )))
                        continue
                    }
                    lines.append(PairLine(line: l.line, fields: Array(l.fields.dropFirst())))
                } else {
                    lines.append(l)
                }
            }
            pairs = lines
            if !directoryExists(self.imageDirectory) {
                problems.append(
                    DataProblem(
                        .error,
                        DataError(
                            .missing, path: self.imageDirectory.path, field: "image folder", reason: "no such folder")))
            }
            if self.denseposeDirectory == nil {
                problems.append(
                    DataProblem(
                        .warning,
                        DataError(
                            .missing, path: root.appendingPathComponent("\(split)_densepose").path,
                            field: SampleField.densepose,
                            reason:
                                "no densepose folder: densepose inputs are blank and the loss mask covers whole images")
                    ))
            }
            indexProblems = problems
            return
        }
        pairs = []
        indexProblems = problems
    }

    public var count: Int { pairs.count }

    public func recipe(at index: Int) -> SampleRecipe {
        let p = pairs[index]
        let source = p.fields[0], target = p.fields[1]
        var densepose = DenseposeSource.absent, loss = MaskSource.everywhere
        var notes: [DataError] = []
        if let dd = denseposeDirectory {
            let s = stem(target)
            if let f = firstExisting(["\(s).png", "\(s).jpg", "\(s)_iuv.png"].map { dd.appendingPathComponent($0) }) {
                densepose = .image(f); loss = .denseposeForeground
            } else {
                notes.append(
                    DataError(
                        .missing, path: dd.appendingPathComponent("\(s).png").path, field: SampleField.densepose,
                        line: p.line, pairsFile: pairsFile.path,
                        reason:
                            "no densepose for the target; its densepose input is blank and its loss mask covers the whole image"
                    ))
            }
        }
        return SampleRecipe(
            index: index, id: "\(name)/\(split)/\(source)/\(target)", line: p.line, pairsFile: pairsFile.path,
            image: imageDirectory.appendingPathComponent(target),
            reference: imageDirectory.appendingPathComponent(source),
            inpaintMask: .everywhere, densepose: densepose, denseposeEncoding: denseposeEncoding,
            lossMask: loss, notes: notes)
    }
}
