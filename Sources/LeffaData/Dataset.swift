// What the trainer and `prepare` see of any dataset: a fixed list of samples addressed by a
// global index (index → pair is a pure function of the pairs files, so every rank agrees and a
// cache can key on it), a loader for index i at a stage resolution, and `check()`.
// Shuffling and sharding are functions of (seed, epoch, index) only, never of the rank count.

import Foundation
import LeffaTensor

/// Which garment a try-on sample uses as reference.
public enum Pairing: String, Sendable, CaseIterable {
    /// The person's own garment (training; the "paired" test setting).
    case paired
    /// The garment named in the pairs file's second column (the "unpaired" test setting).
    case unpaired
}

public protocol PairedImageDataset: Sendable {
    /// Short name used in sample ids: "vitonhd", "dresscode", "deepfashion".
    var name: String { get }
    /// Number of samples (well-formed pair lines).
    var count: Int { get }
    /// Problems found while opening: missing or malformed pairs files, missing folders.
    var indexProblems: [DataProblem] { get }
    /// The files of sample `index` and how they combine (0 ≤ index < count).
    func recipe(at index: Int) -> SampleRecipe
}

extension PairedImageDataset {
    /// Stable id of sample `index`.
    public func id(at index: Int) -> String { recipe(at: index).id }

    /// Sample `index` at `size`. Throws `.invalidRequest` for an index out of range and the
    /// loader's `DataError` (file, field, pairs-file line, what was expected) otherwise.
    public func sample(
        at index: Int, size: Size, policy: AspectPolicy = .centerCrop,
        aspectTolerance: Double = 0.01
    ) throws -> TrainingSample {
        guard index >= 0 && index < count else {
            throw DataError(.invalidRequest, path: "\(name)", reason: "sample index \(index) outside 0..<\(count)")
        }
        return try loadSample(recipe(at: index), size: size, policy: policy, aspectTolerance: aspectTolerance)
    }

    /// Every problem found (see Check.swift): opening problems first, then per sample in index
    /// order. Training should refuse to start when `.errors` is not empty.
    public func check(_ options: CheckOptions = CheckOptions()) -> [DataProblem] {
        let recipes = (0..<count).map(recipe(at:))
        let notes = recipes.flatMap { r in r.notes.map { DataProblem(.warning, $0, pairIndex: r.index) } }
        return indexProblems + notes + checkRecipes(recipes, options: options)
    }
}

// MARK: - Order and sharding

/// A permutation of 0..<count that depends only on (seed, epoch): Fisher–Yates driven by
/// CounterRNG. Global step s of a run with global batch B uses positions s·B ..< (s+1)·B of the
/// concatenated epochs, whatever the number of ranks.
public func epochPermutation(count: Int, seed: UInt64, epoch: Int) -> [Int] {
    var p = Array(0..<count)
    let key = CounterRNG.key(seed, 0xDA7A, UInt64(epoch))
    if count < 2 { return p }
    for i in stride(from: count - 1, through: 1, by: -1) {
        let j = Int(CounterRNG.bits(key, UInt64(i)) % UInt64(i + 1))
        p.swapAt(i, j)
    }
    return p
}

/// The slice of a global batch that `rank` of `worldSize` loads: positions rank, rank + W, …
/// (interleaved, so batch sizes that do not divide evenly differ by at most one sample).
public func shard<T>(_ globalBatch: [T], rank: Int, worldSize: Int) -> [T] {
    precondition(worldSize >= 1 && rank >= 0 && rank < worldSize, "shard: rank \(rank) outside 0..<\(worldSize)")
    return stride(from: rank, to: globalBatch.count, by: worldSize).map { globalBatch[$0] }
}

// MARK: - Opening by name

public enum DatasetKind: String, Sendable, CaseIterable {
    case vitonHD = "vitonhd"
    case dressCode = "dresscode"
    case deepFashion = "deepfashion"
    /// The synthetic try-on set (VITON-HD layout, with ground-truth flows).
    case synthetic
}

/// Opens a dataset as the configuration names it. Never throws: problems are in
/// `indexProblems` and `check()`. `pairing` does not apply to DeepFashion, `categories` only to
/// DressCode.
public func openDataset(
    _ kind: DatasetKind, root: URL, split: String = "train", pairing: Pairing = .paired,
    categories: [DressCodeDataset.Category] = DressCodeDataset.Category.allCases,
    densepose: DenseposeEncoding = .rgb
) -> any PairedImageDataset {
    switch kind {
    case .vitonHD, .synthetic:
        var d = VitonHDDataset(root: root, split: split, pairing: pairing, name: kind.rawValue)
        d.denseposeEncoding = densepose
        return d
    case .dressCode:
        var d = DressCodeDataset(root: root, split: split, pairing: pairing, categories: categories)
        d.denseposeEncoding = densepose
        return d
    case .deepFashion:
        var d = DeepFashionDataset(root: root, split: split)
        d.denseposeEncoding = densepose
        return d
    }
}

// MARK: - Helpers for readers

/// The first of `candidates` that exists as a file.
func firstExisting(_ candidates: [URL]) -> URL? {
    candidates.first { FileManager.default.fileExists(atPath: $0.path) }
}

func directoryExists(_ url: URL) -> Bool {
    var d: ObjCBool = false
    return FileManager.default.fileExists(atPath: url.path, isDirectory: &d) && d.boolValue
}

/// "00000_00.jpg" → "00000_00".
func stem(_ name: String) -> String { (name as NSString).deletingPathExtension }
func ext(_ name: String) -> String { (name as NSString).pathExtension }

extension PairedImageDataset {
    /// Every file the dataset reads: its pairs files and each sample's files, once each, sorted.
    /// What a run fingerprints to notice that its data changed under it.
    public func files() -> [URL] {
        var seen = Set<String>()
        var out: [URL] = []
        func add(_ u: URL) { if seen.insert(u.path).inserted { out.append(u) } }
        for i in 0..<count {
            let r = recipe(at: i)
            if let p = r.pairsFile { add(URL(fileURLWithPath: p)) }
            for u in r.fileUses { add(u.url) }
        }
        return out.sorted { $0.path < $1.path }
    }
}
