// The Leffa-effect benchmark: does the Leffa loss make generated images keep garment detail?
// From one run's high-resolution weights (by default the stage before its Leffa stage), the Leffa
// stage is trained per seed with its Leffa loss (at each λ asked) and without it (the same steps,
// learning rate, batch, data order, noise and timesteps), and the results are evaluated on the held-out
// test pairs (LeffaEval: PSNR and SSIM over the image and the garment, attention-flow endpoint
// error against the ground-truth flow, the flow measured with the Leffa stage's τ for both).
// Reported per seed and as mean ± standard deviation over seeds, with the start weights' numbers.
// Runs in-process on this machine's threads; the run folder is only read.
import ArgumentParser
import Foundation
import Yams
import LeffaTensor
import LeffaDistributed
import LeffaModels
import LeffaTraining
import LeffaRunFormat
import LeffaEval

struct LeffaEffectBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "leffa-effect",
        abstract:
            "Held-out image metrics and flow error after a run's Leffa stage trained with and without the Leffa loss, over seeds."
    )
    @Option(
        name: .customLong("run"),
        help: "A finished run whose data has a test split (e.g. the main job's runs/tiny-synthetic).") var runPath:
        String = "runs/tiny-synthetic"
    @Option(help: "The compared stage (default: the run's last stage with a leffa block).") var stage: String?
    @Option(help: "The stage whose final weights both variants start from (default: the stage before).") var from:
        String?
    @Option(help: "Seeds of the compared stages' training randomness (comma-separated).") var seeds: String = "1,2,3"
    @Option(help: "Steps of each compared stage (default: the stage's).") var steps: Int?
    @Option(
        name: .customLong("lambda"),
        help:
            "Leffa loss weights λ to compare, comma-separated (default: the stage's); the runs without the loss are shared."
    ) var lambda: String?
    @Option(help: "Leffa temperature τ, also of the measured flows (default: the stage's).") var tau: Float?
    @Option(help: "Held-out pairs evaluated (default: all of the test split).") var pairs: Int?
    @Option(help: "DDIM steps of the evaluation.") var evalSteps: Int = 20
    @Option(help: "Guidance of the evaluation.") var guidance: Float = 1.0
    @Option(help: "Kernel threads (default: LEFFA_THREADS, else the cores).") var threads: Int?
    @Option(help: "Working folder (default: a temp folder, removed at the end).") var work: String?
    @Option(help: "Where to write the JSON results.") var json: String = "bench-results/leffa-effect.json"

    struct Row: Codable {
        var seed: Int?, variant: String
        var scores: ImageScores, flowEPE: Double?
        enum CodingKeys: String, CodingKey { case seed, variant, scores, flowEPE = "flow_epe_px" }
    }
    struct Summary: Codable {
        var variant: String, mean: ImageScores, sd: ImageScores, flowEPEMean: Double, flowEPESD: Double
        enum CodingKeys: String, CodingKey {
            case variant, mean, sd, flowEPEMean = "flow_epe_px_mean", flowEPESD = "flow_epe_px_sd"
        }
    }
    /// The two goals, per λ: lower flow error than without the loss in every seed, higher mean
    /// garment SSIM.
    struct Verdict: Codable {
        var variant: String, lowerFlowErrorInEverySeed: Bool, higherGarmentSSIMOnAverage: Bool,
            garmentSSIMDifference: Double
        enum CodingKeys: String, CodingKey {
            case variant, lowerFlowErrorInEverySeed = "lower_flow_error_in_every_seed"
            case higherGarmentSSIMOnAverage = "higher_garment_ssim_on_average", garmentSSIMDifference =
                "garment_ssim_difference"
        }
    }
    struct Report: Codable {
        var run: String, stage: String, from: String, steps: Int, lambdas: [Double], tau: Double, seeds: [Int],
            pairs: Int
        var evalSteps: Int, guidance: Double, rows: [Row], summary: [Summary], verdicts: [Verdict], seconds: Double
        enum CodingKeys: String, CodingKey {
            case run, stage, from, steps, lambdas, tau, seeds, pairs, rows, summary, verdicts, seconds, guidance
            case evalSteps = "eval_steps"
        }
    }

    func run() throws {
        if let threads { Parallel.threads = max(1, threads) }
        setvbuf(stdout, nil, _IOLBF, 0) // a line per result, also into a log file (the run takes ~20 min)
        let started = Date()
        let base = RunDirectory(runPath)
        let config = try base.readConfig()
        guard
            let compared = stage.map({ s in config.stages.first { $0.name == s } })
                ?? config.stages.last(where: { $0.leffa != nil })
        else {
            throw ValidationError("\(base.configURL.path): no stage \(stage ?? "with a leffa block") to compare")
        }
        guard let leffa = compared.leffa else {
            throw ValidationError("stage \(compared.name) has no leffa block: nothing to switch off")
        }
        let ci = config.stages.firstIndex { $0.name == compared.name }!
        guard let start = from ?? (ci > 0 ? config.stages[ci - 1].name : nil) else {
            throw ValidationError("--from: the compared stage is the first; name the stage to start from")
        }
        let startWeights = base.finalWeightsURL(start)
        guard FileManager.default.fileExists(atPath: startWeights.path) else {
            throw ValidationError("\(startWeights.path): missing; finish stage \(start) first (Scripts/main-job.sh)")
        }
        let seedList = seeds.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !seedList.isEmpty else {
            throw ValidationError("--seeds: expected comma-separated integers, got \(seeds)")
        }
        let lambdas =
            try lambda.map { list in
                try list.split(separator: ",").map { part -> Float in
                    guard let v = Float(part.trimmingCharacters(in: .whitespaces)), v >= 0 else {
                        throw ValidationError("--lambda: expected comma-separated numbers ≥ 0, got \(list)")
                    }
                    return v
                }
            } ?? [leffa.weight]
        let t = tau ?? leffa.tau, n = steps ?? compared.steps
        let variants = lambdas.map { "λ=\($0)" } + ["none"]
        let root = URL(
            fileURLWithPath: work
                ?? FileManager.default.temporaryDirectory.appendingPathComponent("leffa-effect-\(getpid())").path)
        defer { if work == nil { try? FileManager.default.removeItem(at: root) } }
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        let dataRoot = URL(fileURLWithPath: config.dataRoot, relativeTo: base.url).standardizedFileURL.path

        var o = EvalOptions()
        o.steps = evalSteps; o.guidance = guidance; o.tau = t; o.limit = pairs
        let local = MPIContext.local()
        print(
            "leffa-bench leffa-effect: stage \(compared.name) of \(base.url.path) from \(start)'s weights, \(n) steps, batch \(compared.batch), lr \(compared.lr), λ \(lambdas.map { "\($0)" }.joined(separator: ", ")), τ \(t); seeds \(seedList); \(Parallel.threads) thread(s)"
        )

        var evaluated = 0
        func evaluate(_ m: EvalModel, _ dir: URL) throws -> (ImageScores, Double?) {
            let r = try Evaluation.run(m, options: o, out: dir, context: local)
            evaluated = r.pairs
            return (r.model!, r.flow?.mean)
        }
        var rows: [Row] = []
        let startModel = try LeffaModel(config: config.model, seed: config.seed)
        try startModel.loadWeights(from: startWeights.path)
        let (s0, f0) = try evaluate(
            EvalModel(model: startModel, config: config, stage: compared, source: startWeights.path),
            root.appendingPathComponent("start-eval"))
        rows.append(Row(seed: nil, variant: "start", scores: s0, flowEPE: f0))
        print(header)
        print(line(rows[0]))
        for seed in seedList {
            for (k, variant) in variants.enumerated() {
                let tag = k < lambdas.count ? "leffa\(lambdas[k])" : "none"
                let dir = root.appendingPathComponent("seed\(seed)-\(tag)")
                try? FileManager.default.removeItem(at: dir)
                let cfgURL = root.appendingPathComponent("seed\(seed)-\(tag).yaml")
                try derivedConfig(
                    config, stage: compared, seed: seed, leffa: k < lambdas.count ? (lambdas[k], t) : nil, steps: n,
                    weights: startWeights.path, dataRoot: dataRoot
                ).write(to: cfgURL, atomically: true, encoding: .utf8)
                let run = try RunDirectory.create(at: dir.path, config: try RunConfig.load(path: cfgURL.path))
                let trainer = try Trainer(run: run, log: { l in if l.hasPrefix("warning") { print(l) } })
                _ = try trainer.train()
                let (model, source) = try StageWeights.load(
                    run: run, config: trainer.config, stage: compared.name, step: nil, ema: trainer.config.ema != nil)
                let (s, f) = try evaluate(
                    EvalModel(model: model, config: trainer.config, stage: compared, source: source),
                    dir.appendingPathComponent("eval"))
                rows.append(Row(seed: seed, variant: variant, scores: s, flowEPE: f))
                print(line(rows.last!))
            }
        }
        func summary(_ v: String) -> Summary {
            let r = rows.filter { $0.variant == v }
            let mean = ImageScores.mean(r.map(\.scores))
            func sd(_ k: KeyPath<ImageScores, Double>) -> Double { stddev(r.map { $0.scores[keyPath: k] }) }
            return Summary(
                variant: v, mean: mean,
                sd: ImageScores(
                    psnr: sd(\.psnr), psnrGarment: sd(\.psnrGarment), ssim: sd(\.ssim), ssimGarment: sd(\.ssimGarment)),
                flowEPEMean: r.compactMap(\.flowEPE).reduce(0, +) / Double(r.count),
                flowEPESD: stddev(r.compactMap(\.flowEPE)))
        }
        let sums = variants.map(summary)
        print(String(repeating: "-", count: header.count))
        for s in sums {
            print(
                "mean ± sd".padding(toLength: 11, withPad: " ", startingAt: 0)
                    + s.variant.padding(toLength: 9, withPad: " ", startingAt: 0)
                    + String(
                        format: "%6.2f±%4.2f  %6.2f±%4.2f  %6.4f±%6.4f  %6.4f±%6.4f  %6.3f±%5.3f", s.mean.psnr,
                        s.sd.psnr, s.mean.psnrGarment, s.sd.psnrGarment,
                        s.mean.ssim, s.sd.ssim, s.mean.ssimGarment, s.sd.ssimGarment, s.flowEPEMean, s.flowEPESD))
        }
        let none = sums.last!
        let verdicts = sums.dropLast().map { v in
            let lower = seedList.allSatisfy { seed in
                let l = rows.first { $0.seed == seed && $0.variant == v.variant }!.flowEPE ?? .nan
                let p = rows.first { $0.seed == seed && $0.variant == "none" }!.flowEPE ?? .nan
                return l < p
            }
            let d = v.mean.ssimGarment - none.mean.ssimGarment
            print(
                "\(v.variant): flow error lower than without the loss in every seed: \(lower ? "yes" : "NO"); garment SSIM higher on average: \(d > 0 ? "yes" : "NO")"
                    + String(format: " (%+.4f)", d))
            return Verdict(
                variant: v.variant, lowerFlowErrorInEverySeed: lower, higherGarmentSSIMOnAverage: d > 0,
                garmentSSIMDifference: d)
        }
        let seconds = Date().timeIntervalSince(started)
        print(String(format: "%.0f s", seconds))
        try writeJSON(
            Report(
                run: base.url.path, stage: compared.name, from: start, steps: n, lambdas: lambdas.map(Double.init),
                tau: Double(t), seeds: seedList,
                pairs: evaluated, evalSteps: evalSteps, guidance: Double(guidance), rows: rows, summary: sums,
                verdicts: verdicts, seconds: seconds), to: json)
        print("wrote \(json)")
    }

    var header: String { "seed       variant    PSNR        PSNR garm.   SSIM           SSIM garm.     flow EPE (px)" }
    func line(_ r: Row) -> String {
        (r.seed.map(String.init) ?? "-").padding(toLength: 11, withPad: " ", startingAt: 0)
            + r.variant.padding(toLength: 9, withPad: " ", startingAt: 0)
            + String(
                format: "%6.2f       %6.2f       %6.4f         %6.4f         %6.3f", r.scores.psnr,
                r.scores.psnrGarment, r.scores.ssim,
                r.scores.ssimGarment, r.flowEPE ?? .nan)
    }

    func stddev(_ v: [Double]) -> Double {
        guard v.count > 1 else { return 0 }
        let m = v.reduce(0, +) / Double(v.count)
        return (v.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(v.count - 1)).squareRoot()
    }

    /// The run's config reduced to the compared stage: started from `weights`, the given seed, the
    /// Leffa block set to (λ, τ) or removed, no validation or snapshots, data read in place.
    func derivedConfig(
        _ c: RunConfig, stage: StageConfig, seed: Int, leffa: (Float, Float)?, steps: Int, weights: String,
        dataRoot: String
    ) throws -> String {
        guard var root = try Yams.compose(yaml: c.text)?.mapping else {
            throw ValidationError("\(c.source): not a mapping")
        }
        func mapping(_ key: String) -> Yams.Node.Mapping { root[Yams.Node(key)]?.mapping ?? Yams.Node.Mapping([]) }
        var run = mapping("run"); run["seed"] = Yams.Node(String(seed)); root["run"] = .mapping(run)
        var model = mapping("model");
        model["init"] = .mapping(Yams.Node.Mapping([(Yams.Node("leffa"), Yams.Node(weights))]));
        root["model"] = .mapping(model)
        var data = mapping("data"); data["root"] = Yams.Node(dataRoot); root["data"] = .mapping(data)
        var training = mapping("training")
        for k in ["validation", "snapshot_every"] { training[Yams.Node(k)] = nil }
        training["checkpoint_every"] = Yams.Node(String(steps)); training["keep_checkpoints"] = Yams.Node("1")
        root["training"] = .mapping(training)
        guard let stages = root["stages"]?.sequence, let i = c.stages.firstIndex(where: { $0.name == stage.name }),
            var st = stages[i].mapping
        else {
            throw ValidationError("\(c.source): cannot find stage \(stage.name)")
        }
        st["steps"] = Yams.Node(String(steps))
        if let (lam, tau) = leffa {
            var l = st["leffa"]?.mapping ?? Yams.Node.Mapping([])
            l["weight"] = Yams.Node(String(lam)); l["tau"] = Yams.Node(String(tau))
            st["leffa"] = .mapping(l)
        } else {
            st["leffa"] = nil
        }
        root["stages"] = .sequence(Yams.Node.Sequence([.mapping(st)]))
        return try Yams.serialize(node: .mapping(root))
    }
}
