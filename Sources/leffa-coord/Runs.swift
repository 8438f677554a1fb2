// `leffa-coord init | synth | check-data`: creating a run, making synthetic data, checking data.
import ArgumentParser
import LeffaCLI
import Foundation
import LeffaTensor
import LeffaData
import LeffaTraining
import LeffaRunFormat

struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate a config and create a run directory (and its synthetic data, with data.synthesize).")
    @Option(help: "The run config (YAML), e.g. Configs/tiny-synthetic.yaml.") var config: String
    @Option(name: .customLong("run"), help: "The run directory to create.") var runPath: String
    @Option(help: "The MPI rank count the run will use: refused unless it divides every stage's batch.")
    var np: Int?
    @Option(
        name: .customLong("set"), parsing: .unconditionalSingleValue,
        help: "Override a config key: KEY=VALUE with a dotted KEY (stages[1].lr=1.0e-4); repeatable; recorded in the history.")
    var sets: [String] = []
    @Flag(help: "Print one JSON object (run, run id, stages, data) instead of text.") var json = false

    func run() throws {
        if let np, np < 1 { throw ValidationError("--np: expected at least 1, got \(np)") }
        do {
            var cfg = try RunConfig.load(path: config)
            if !sets.isEmpty {
                let text = try ConfigOverrides.apply(sets, to: cfg.text, source: config)
                cfg = try RunConfig.parse(text, source: ConfigOverrides.describe(sets, from: config))
            }
            if let np { try cfg.checkRanks(np, source: config) }
            let dir = try RunDirectory.create(at: runPath, config: cfg)
            if !json {
                print(
                    "created run \(dir.url.path): stages \(cfg.stages.map { "\($0.name) (\($0.height)x\($0.width), \($0.steps) steps, batch \($0.batch)\($0.leffa != nil ? ", Leffa loss" : ""))" }.joined(separator: ", "))"
                )
            }
            let data: SyntheticDataOutcome?
            do {
                data = try dir.makeSyntheticData(cfg)
            } catch {
                throw RunError(
                    "\(error)\nthe run folder was created: make the data with `leffa-coord synth`, or remove \(dir.url.path) and init again"
                )
            }
            if !json {
                if let data { print(data) }
                return
            }
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            let report = InitReport(run: dir.url.path, runID: try dir.readState().runID, config: cfg, data: data)
            print(String(decoding: try enc.encode(report), as: UTF8.self))
        } catch { throw userError(error) }
    }
}

/// `init --json`: the run made and what happened to its data, for scripts that go on to train it.
struct InitReport: Encodable {
    struct Stage: Encodable {
        var name: String, resolution: String, steps: Int, batch: Int, leffa: Bool
    }
    /// `synthesized`: the set was written now; `kept`: the data root already held data and was
    /// left as it was (`note`: how its recipe differs from the config's); `none`: no data.synthesize.
    struct DataOutcome: Encodable {
        let root: String?
        let action: String, synthesized: Bool
        let count: Int?, testCount: Int?, note: String?
        enum CodingKeys: String, CodingKey { case root, action, synthesized, count, testCount = "test_count", note }
        func encode(to encoder: Encoder) throws { // null rather than absent: every report has the same keys
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(root, forKey: .root); try c.encode(action, forKey: .action)
            try c.encode(synthesized, forKey: .synthesized); try c.encode(count, forKey: .count)
            try c.encode(testCount, forKey: .testCount); try c.encode(note, forKey: .note)
        }
    }
    var run: String, runID: String, stages: [Stage], data: DataOutcome
    enum CodingKeys: String, CodingKey { case run, runID = "run_id", stages, data }

    init(run: String, runID: String, config: RunConfig, data outcome: SyntheticDataOutcome?) {
        self.run = run; self.runID = runID
        stages = config.stages.map {
            Stage(
                name: $0.name, resolution: "\($0.height)x\($0.width)", steps: $0.steps, batch: $0.batch,
                leffa: $0.leffa != nil)
        }
        switch outcome {
        case let .generated(root, count, testCount)?:
            data = DataOutcome(
                root: root, action: "synthesized", synthesized: true, count: count, testCount: testCount, note: nil)
        case let .kept(root, _, differs)?:
            data = DataOutcome(
                root: root, action: "kept", synthesized: false, count: nil, testCount: nil,
                note: differs.map { "made with \($0)" })
        case nil:
            data = DataOutcome(root: nil, action: "none", synthesized: false, count: nil, testCount: nil, note: nil)
        }
    }
}

struct Synth: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a synthetic try-on set (VITON-HD layout) with ground-truth flows.")
    @Option(help: "Output folder.") var out: String
    @Option(help: "Number of training pairs.") var count: Int = 16
    @Option(help: "Number of held-out test pairs (test/ and test_pairs.txt; new garments, textures, bodies and warps).")
    var testCount: Int = 0
    @Option(help: "Image size HxW (at least 16x12).") var size = ImageSize(height: 128, width: 96)
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Option(help: "Garment texture: pattern (fine stripes or checks and a print) or ramp (a smooth colour ramp).")
    var texture = SyntheticTexture.pattern
    @Flag(help: "Write over a folder that already holds data (a run training on it would see other samples).")
    var force = false

    func run() throws {
        guard size.height >= 16, size.width >= 12 else {
            throw ValidationError("--size: expected HxW of at least 16x12, got \(size)")
        }
        guard count >= 1 else { throw ValidationError("--count: expected at least 1, got \(count)") }
        guard testCount >= 0 else { throw ValidationError("--test-count: expected 0 or more, got \(testCount)") }
        let pairs = URL(fileURLWithPath: out).appendingPathComponent("train_pairs.txt")
        if !force && FileManager.default.fileExists(atPath: pairs.path) {
            throw userError(
                RunError(
                    "\(out): already holds data (\(pairs.lastPathComponent)); a run training on it would go on with other samples. Write elsewhere, or pass --force to replace it"
                ))
        }
        do {
            let names = try generateSynthetic(
                out: URL(fileURLWithPath: out), count: count, testCount: testCount,
                height: size.height, width: size.width, seed: seed, texture: texture)
            print(
                "wrote \(names.count) synthetic training pairs\(testCount > 0 ? " and \(testCount) held-out test pairs" : "") (\(size)) to \(out)"
            )
        } catch { throw userError(error) }
    }
}

struct CheckData: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-data", abstract: "List every problem of a dataset copy before training.")
    @Option(help: "Dataset kind.") var kind: DatasetKind
    @Option(help: "Dataset root folder.") var root: String
    @Option(help: "Split (train, test).") var split: String = "train"
    @Flag(help: "Only read image headers (fast); by default every image is decoded.") var headersOnly = false
    @Option(help: "How densepose images are read (iuv: every part index is checked to be 0…24).")
    var densepose = DenseposeEncoding.rgb
    @Option(help: "DressCode: the categories to check (repeat the option for several; default: all).")
    var category: [DressCodeDataset.Category] = []
    @Flag(help: "Print the result as one JSON object (samples, errors, warnings) instead of text.") var json = false

    func run() throws {
        let ds = openDataset(
            kind, root: URL(fileURLWithPath: root), split: split,
            categories: category.isEmpty ? DressCodeDataset.Category.allCases : category, densepose: densepose)
        var problems = ds.check(CheckOptions(decodeImages: !headersOnly))
        if ds.count == 0 && problems.errors.isEmpty {
            // Nothing to train on is not a clean bill of health.
            problems.append(
                DataProblem(
                    .error,
                    DataError(
                        .malformed, path: root, reason: "no samples in the \(split) split (is its pairs file empty?)")))
        }
        if json {
            let out = CheckDataReport(
                samples: ds.count, errors: problems.errors.map(CheckDataReport.Problem.init),
                warnings: problems.warnings.map(CheckDataReport.Problem.init))
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try enc.encode(out), as: UTF8.self))
        } else {
            print("\(ds.count) samples; \(problems.errors.count) error(s), \(problems.warnings.count) warning(s)")
            if !problems.isEmpty { print(problems.report) }
        }
        if !problems.errors.isEmpty { throw ExitCode(ExitStatus.badInput) }
    }
}

/// `check-data --json`: every problem with its file, field, pairs-file line and reason.
struct CheckDataReport: Encodable {
    struct Problem: Encodable {
        var path: String, field: String?, kind: String, reason: String, hint: String?
        var pairsFile: String?, line: Int?
        enum CodingKeys: String, CodingKey { case path, field, kind, reason, hint, pairsFile = "pairs_file", line }
        init(_ p: DataProblem) {
            path = p.error.path; field = p.error.field; kind = p.error.kind.rawValue; reason = p.error.reason
            hint = p.error.hint; pairsFile = p.error.pairsFile; line = p.error.line
        }
    }
    var samples: Int, errors: [Problem], warnings: [Problem]
}

struct PrepareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prepare",
        abstract:
            "Cache every stage resolution of a run's data (and VAE posterior moments in latent space) in HDF5 shards under RUN/cache."
    )
    @Option(name: .customLong("run"), help: "The run directory (made by `leffa-coord init`).") var runPath: String
    @OptionGroup var threads: ThreadOptions

    func run() throws {
        threads.apply()
        do {
            let bar = ProgressBar("prepare")
            let summary = try Prepare.run(RunDirectory(runPath)) { done, total, label in bar.update(done, total, label)
            }
            bar.finish()
            print(summary)
        } catch { throw userError(error) }
    }
}
