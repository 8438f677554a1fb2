// `data.synthesize`: the synthetic try-on set a run config describes, made by `leffa-coord init`
// at the run's data root. The set's size then lives in the config beside the stages that train on
// it, and a synthetic run is one config and one command. Data already there is never touched:
// a folder with a pairs file is used as it is (and a different recipe is pointed out).
import Foundation
import LeffaData

/// The synthetic set a run config asks for (what it holds: LeffaData/Synthetic.swift).
public struct SyntheticDataConfig: Sendable, Equatable {
    public var count: Int
    /// Held-out test pairs (`test/`, `test_pairs.txt`).
    public var testCount = 0
    public var height: Int, width: Int
    /// The run seed unless the block sets one.
    public var seed: UInt64
    public var texture = SyntheticTexture.pattern

    public init(
        count: Int, testCount: Int = 0, height: Int, width: Int, seed: UInt64, texture: SyntheticTexture = .pattern
    ) {
        self.count = count; self.testCount = testCount; self.height = height; self.width = width; self.seed = seed;
        self.texture = texture
    }

    /// Reads `data.synthesize` (nil when absent); `data.kind` must be synthetic and the
    /// configured split one the set will have.
    static func parse(_ data: Reader, kind: String, split: String, runSeed: UInt64) throws -> SyntheticDataConfig? {
        guard
            let s = try data.optionalSection(
                "synthesize", expected: "a mapping like {count: 512, test_count: 32, size: 32x24}")
        else { return nil }
        guard kind == "synthetic" else {
            throw data.fail(
                "synthesize",
                "no synthesize block unless kind is synthetic (it makes a synthetic set), got kind \(kind)")
        }
        let count = try s.int("count", min: 1)
        let testCount = try s.int("test_count", default: 0, min: 0)
        let (h, w) = try s.size("size")
        guard h >= 16, w >= 12 else { throw s.fail("size", "HEIGHTxWIDTH of at least 16x12, got \(h)x\(w)") }
        let seed = try s.optionalInt("seed", min: 0).map { UInt64($0) } ?? runSeed
        let textureName = try s.string("texture", default: SyntheticTexture.pattern.rawValue)
        guard let texture = SyntheticTexture(rawValue: textureName) else {
            throw s.fail(
                "texture", "\(SyntheticTexture.allCases.map(\.rawValue).joined(separator: " or ")), got \(textureName)")
        }
        s.finish()
        switch split {
        case "train": break
        case "test" where testCount > 0: break
        case "test":
            throw s.fail(
                "test_count", "at least 1 when data.split is test (the set's test split is what trains), got 0")
        default: throw data.fail("split", "train or test for a synthesized set, got \(split)")
        }
        return SyntheticDataConfig(
            count: count, testCount: testCount, height: h, width: w, seed: seed, texture: texture)
    }

    /// The recipe as `generateSynthetic` records it in synthetic.json.
    var recipe: [String: String] {
        [
            "count": "\(count)", "test_count": "\(testCount)", "height": "\(height)", "width": "\(width)",
            "seed": "\(seed)", "texture": texture.rawValue
        ]
    }
}

/// What `makeSyntheticData` did.
public enum SyntheticDataOutcome: Equatable, CustomStringConvertible {
    /// Wrote the set at `root`.
    case generated(root: String, count: Int, testCount: Int)
    /// `root` already held a pairs file and was left as it was; `differs` says how its
    /// synthetic.json's recipe differs from the config's (nil: the same, or not a recorded set).
    case kept(root: String, pairsFile: String, differs: String?)

    public var description: String {
        switch self {
        case let .generated(root, count, testCount):
            return
                "wrote \(count) synthetic training pairs\(testCount > 0 ? " and \(testCount) held-out test pairs" : "") to \(root) (data.synthesize)"
        case let .kept(root, pairsFile, differs):
            return "\(root) already holds data (\(pairsFile)): left untouched, not synthesized"
                + (differs.map { "; note: it was made with \($0); remove the folder to make the configured set" } ?? "")
        }
    }
}

extension RunDirectory {
    /// Makes the config's synthetic set (`data.synthesize`) at its data root, resolved against
    /// this run folder, unless that folder already has a pairs file. Nil when the config asks for
    /// no set. Same config, same bytes (everything is a function of the seed).
    public func makeSyntheticData(_ config: RunConfig) throws -> SyntheticDataOutcome? {
        guard let synth = config.synthesize else { return nil }
        let root = URL(fileURLWithPath: resolve(config.dataRoot))
        let fm = FileManager.default
        let pairsFiles = ((try? fm.contentsOfDirectory(atPath: root.path)) ?? []).filter { $0.hasSuffix("_pairs.txt") }
            .sorted()
        if let first = pairsFiles.first {
            let own = "\(config.dataSplit)_pairs.txt"
            return .kept(
                root: root.path, pairsFile: pairsFiles.contains(own) ? own : first,
                differs: Self.recipeDifference(at: root, from: synth))
        }
        do {
            try generateSynthetic(
                out: root, count: synth.count, testCount: synth.testCount, height: synth.height, width: synth.width,
                seed: synth.seed, texture: synth.texture)
        } catch {
            throw RunError(
                "\(root.path): cannot write the synthetic set of \(config.source) (data.synthesize): \(error)")
        }
        return .generated(root: root.path, count: synth.count, testCount: synth.testCount)
    }

    /// "count 16 (config: 512), …" for the recipe fields where `root/synthetic.json` differs from
    /// `synth`; nil when they agree or there is no readable synthetic.json.
    static func recipeDifference(at root: URL, from synth: SyntheticDataConfig) -> String? {
        guard let data = FileManager.default.contents(atPath: root.appendingPathComponent("synthetic.json").path),
            let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
        else { return nil }
        let want = synth.recipe
        let differences = want.keys.sorted().compactMap { key -> String? in
            // Absent in synthetic.json means the generator's default (v1 sets have no test split).
            let had =
                json[key].map { "\($0)" } ?? ["texture": SyntheticTexture.pattern.rawValue, "test_count": "0"][key]
                ?? "?"
            return had == want[key] ? nil : "\(key) \(had) (config: \(want[key]!))"
        }
        return differences.isEmpty ? nil : differences.joined(separator: ", ")
    }
}
