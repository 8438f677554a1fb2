// `leffa-bench scaling`: measures on this machine what the scaling model needs, checks the model
// against the data-parallel runs this machine can make, and predicts images/s and scaling
// efficiency for 1–512 ranks at the SD1.5 stages (ScalingModel.swift says how).
//
// Measured here, each through mpirun (one kernel thread per rank, so two ranks fill two cores):
//  - `leffa-bench ddp` at 1 rank: compute per sample and the optimizer step of the check model;
//  - `leffa-bench reduce-cost` at 2 ranks: the shared-memory reduce-scatter's seconds per byte, and
//    MPI_Allreduce between the two ranks (OpenMPI's shared-memory transport): this machine's
//    stand-in for a network, with its own bandwidth;
//  - `leffa-bench ddp` at 2 ranks (shared memory), 3 ranks (shared memory, sharing 2 cores), 2 ranks
//    with overlapped MPI buckets, and 2 ranks as two simulated nodes (LEFFA_RANKS_PER_NODE=1, the
//    hierarchical path): the model predicts each before it is compared.
// The calibration (one rank per core, all at once) and the checks run in `--rounds` rounds, in
// turns (calibration first in even rounds, last in odd ones): each round's checks are predicted
// from that round's calibration, and a check's error is the median over rounds. On a shared VM the
// speed drifts over minutes, and a calibration minutes away from a check measured the drift
// (2026-12-05: −29 % inside the run, 5–10 % for the same check run alone right after).
// Not TCP over loopback: there the kernel's copies run on the two cores the ranks compute on (2
// ranks with buckets: predicted −24 %, as two nodes −19 %, measured), which a network card does not.
// The SD1.5 rows take their compute from the step benchmark's JSON (`train-step --models sd15`):
// 512×384 measured; 1024×768 scaled by the measured forward-time ratio of `sd15-forward` at both
// sizes; both UNets trained scaled by the ratio `train-step` measures at the check model; the
// Leffa stage by the Leffa loss's measured overhead. Every rank is taken to be as fast as this machine's two cores.
import ArgumentParser
import Foundation

struct ScalingBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scaling",
        abstract: "A scaling model to 512 ranks, checked against the runs this machine can make.")
    @OptionGroup var options: BenchOptions
    @Option(help: "Model for the checks on this machine.") var model: String = "small"
    @Option(help: "Samples per rank in the checks.") var perRankBatch: Int = 2
    @Option(help: "mpirun to launch with.") var mpirun: String = "mpirun"
    @Option(help: "SD1.5 step benchmark JSON (train-step --models sd15 --batch 1 --train unet).")
    var sd15Step: String = "bench-results/train-step-sd15.json"
    @Option(help: "SD1.5 forward JSON at 512x384 (sd15-forward).") var sd15Forward512: String =
        "bench-results/sd15-forward-512x384.json"
    @Option(help: "SD1.5 forward JSON at 1024x768 (sd15-forward --size 1024x768).")
    var sd15Forward1024: String = "bench-results/sd15-forward-1024x768.json"
    @Option(help: "Networks as name:Gbit/s:latency µs (repeatable).")
    var network: [String] = ["InfiniBand 100G:100:1.5", "Ethernet 25G:25:20"]
    @Option(help: "Ranks per node in the cluster rows.") var ranksPerNode: Int = 8
    @Option(help: "A cluster node's memory bandwidth in GB/s (bounds the shared-memory reduction of many ranks).")
    var nodeMemoryGbs: Double = 100
    @Option(help: "Samples per rank in the cluster rows.") var clusterBatch: Int = 1
    @Option(help: "Skip the measurements on this machine; use the JSON files of an earlier run in this folder.")
    var reuse: String?
    @Option(help: "Rounds of calibration and checks, taking turns (a check's error is the median over rounds).")
    var rounds: Int = 3

    func validate() throws {
        guard rounds >= 1 else { throw ValidationError("--rounds: expected at least 1, got \(rounds)") }
    }

    /// A check's figures in the round whose error is the median, and every round's error.
    struct Check: Codable {
        var name: String; var predicted: Double; var measured: Double; var error: Double; var errors: [Double]
    }
    struct Prediction: Codable {
        var stage: String, network: String, ranks: Int, bucketImagesPerSecond: Double, bucketEfficiency: Double
        var hierarchicalImagesPerSecond: Double, hierarchicalEfficiency: Double
        enum CodingKeys: String, CodingKey {
            case stage, network, ranks, bucketImagesPerSecond = "bucket_images_per_second", bucketEfficiency =
                "bucket_efficiency"
            case hierarchicalImagesPerSecond = "hierarchical_images_per_second", hierarchicalEfficiency =
                "hierarchical_efficiency"
        }
    }
    struct Report: Codable {
        var checks: [Check], predictions: [Prediction], computePerSample: [String: Double], gradientBytesSD15: Double
        var sharedSecondsPerByte: Double, mpiBytesPerSecond: Double
        enum CodingKeys: String, CodingKey {
            case checks, predictions, computePerSample = "compute_per_sample_seconds", gradientBytesSD15 =
                "gradient_bytes_sd15"
            case sharedSecondsPerByte = "shared_seconds_per_byte", mpiBytesPerSecond = "mpi_bytes_per_second"
        }
    }

    /// This machine's cores (one loaded calibration rank each).
    var cores: Int { ProcessInfo.processInfo.activeProcessorCount }

    func run() throws {
        options.apply()
        let dir = reuse ?? "bench-results/scaling"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let base = ["--per-rank-batch", "\(perRankBatch)", "--model", model, "--repeats", "\(options.repeats)"]
        let once: [(file: String, ranks: Int, env: [String: String], args: [String])] = [
            ("reduce-cost", 2, [:], ["reduce-cost", "--repeats", "5"]),
            ("ddp-1", 1, [:], ["ddp"] + base)
        ]
        // The checks: name, file, ranks, environment, arguments, and the model's step time for the
        // run (given the model calibrated here and this machine's MPI as the network). Ranks beyond
        // this machine's cores share them (`share`); with every core busy computing, the
        // all-reduce's copies (CPU work here, a network card's on a cluster) are not hidden behind
        // backward (no overlap term for the local bucket check).
        let b = perRankBatch, share2 = max(1, 2 / Double(cores)), share3 = max(1, 3 / Double(cores))
        typealias Predict = (ScalingModel, ScalingModel.Network) -> Double
        let checkRuns: [(name: String, file: String, ranks: Int, env: [String: String], args: [String], predict: Predict)] = [
            (
                "2 ranks, shared memory", "ddp-2-shared", 2, [:], ["ddp"] + base + ["--reduction", "shared"],
                { $0.hierarchicalStep(ranks: 2, perNode: 2, batch: b, net: $1, share: share2) }
            ),
            (
                "3 ranks, shared memory (3 on 2 cores)", "ddp-3-shared", 3, [:], ["ddp"] + base + ["--reduction", "shared"],
                { $0.hierarchicalStep(ranks: 3, perNode: 3, batch: b, net: $1, share: share3) }
            ),
            (
                "2 ranks, overlapped MPI buckets", "ddp-2-buckets", 2, [:], ["ddp"] + base + ["--reduction", "buckets"],
                { m, net in
                    var noOverlap = m
                    noOverlap.backwardFraction = 0
                    return noOverlap.bucketStep(ranks: 2, perNode: 1, batch: b, net: net, share: share2)
                }
            ),
            (
                "2 simulated nodes, hierarchical", "ddp-2-nodes", 2, ["LEFFA_RANKS_PER_NODE": "1"],
                ["ddp"] + base + ["--reduction", "shared"],
                { $0.hierarchicalStep(ranks: 2, perNode: 1, batch: b, net: $1, share: share2) }
            )
        ]
        if reuse == nil {
            for r in once {
                try launch(ranks: r.ranks, mpi: [], env: r.env, args: r.args + ["--json", "\(dir)/\(r.file).json"])
            }
            for round in 0..<rounds {
                // One rank per core, all at once, unbound and independent: the compute per sample of
                // a core while every core computes, as in the checks and on a cluster's nodes (a CPU
                // may clock lower when all its cores run wide vector code; on the AVX-512 Xeon of
                // 2026-12-05 a lone rank measured 825 against 877 ms per sample). Both are printed.
                func calibrate() throws {
                    try launchTogether(
                        (0..<cores).map { i in
                            (1, ["--bind-to", "none"], [:], ["ddp"] + base + ["--json", "\(dir)/ddp-1-loaded-r\(round)-\(i).json"])
                        })
                }
                if round % 2 == 0 { try calibrate() }
                for r in checkRuns {
                    try launch(ranks: r.ranks, mpi: [], env: r.env, args: r.args + ["--json", "\(dir)/\(r.file)-r\(round).json"])
                }
                if round % 2 == 1 { try calibrate() }
            }
            // What training the reference UNet too costs, at the check model (one process, one thread).
            for (file, parts) in [("step-both", "unet,unet_encoder"), ("step-frozen", "unet")] {
                try launch(
                    ranks: nil, mpi: [], env: [:],
                    args: [
                        "train-step", "--models", model, "--train", parts, "--leffa", "off",
                        "--repeats", "\(options.repeats)", "--json", "\(dir)/\(file).json"
                    ])
            }
        }
        func ddp(_ f: String) throws -> DDPResult { try Self.decode(DDPResult.self, "\(dir)/\(f).json") }
        // The rounds found (with --reuse: as many as the folder holds).
        let measuredRounds = reuse == nil
            ? rounds : (0..<1000).first { !FileManager.default.fileExists(atPath: "\(dir)/ddp-2-shared-r\($0).json") } ?? 0
        guard measuredRounds > 0 else {
            throw ValidationError("\(dir): no rounds of checks (ddp-2-shared-r0.json); measure again without --reuse")
        }

        // Calibration per round: the median of its ranks' steps; the reduction costs at 2 ranks.
        let calibrations = try (0..<measuredRounds).map { round in
            let loaded = try (0..<cores).map { try ddp("ddp-1-loaded-r\(round)-\($0)") }
                .sorted { $0.stepSeconds < $1.stepSeconds }
            return loaded[loaded.count / 2]
        }
        let alone = try ddp("ddp-1"), shm = try Self.decode(ReduceCostBench.Report.self, "\(dir)/reduce-cost.json")
        guard let sharedSeconds = shm.sharedSeconds else {
            throw ValidationError("reduce-cost: shared memory unavailable on this machine")
        }
        let perByte = sharedSeconds / Double(shm.bytes)
        let mpiBandwidth = Double(shm.bytes) / shm.mpiSeconds // 2 ranks: 2(N−1)/N = 1
        let local = ScalingModel.Network(name: "MPI on this machine", bytesPerSecond: mpiBandwidth, latency: 0)
        func computePerSample(_ r: DDPResult) -> Double { (r.stepSeconds - r.optimizerSeconds) / Double(r.perRankBatch) }
        // The SD1.5 rows use the median round's calibration.
        let one = calibrations.sorted { computePerSample($0) < computePerSample($1) }[measuredRounds / 2]
        print(
            String(
                format:
                    "calibration (%@, 1 thread per rank, %d ranks at once, median of %d rounds): %.0f ms per sample "
                    + "(rounds %@; %.0f alone), optimizer %.0f ms, %.0f MB of gradients; "
                    + "shared-memory reduce-scatter %.2f GB/s per rank; MPI all-reduce %.2f GB/s", model, cores,
                measuredRounds, 1e3 * computePerSample(one),
                calibrations.map { String(format: "%.0f", 1e3 * computePerSample($0)) }.joined(separator: ", "),
                1e3 * computePerSample(alone), 1e3 * one.optimizerSeconds,
                Double(one.gradientBytes) / 1e6, 1 / perByte / 1e9, mpiBandwidth / 1e9))

        // Checks: each round's model, from that round's calibration, predicts the run before it is
        // compared.
        let models = calibrations.map {
            ScalingModel(
                computePerSample: computePerSample($0), optimizerSeconds: $0.optimizerSeconds,
                gradientBytes: Double($0.gradientBytes), sharedSecondsPerByte: perByte)
        }
        var checks: [Check] = []
        print("\ncheck on this machine (\(model), \(b) samples per rank)   predicted ms   measured ms   error   (each round)")
        for r in checkRuns {
            var predictedTimes: [Double] = [], measuredTimes: [Double] = []
            for round in 0..<measuredRounds {
                predictedTimes.append(r.predict(models[round], local))
                measuredTimes.append(try ddp("\(r.file)-r\(round)").stepSeconds)
            }
            let errors = zip(predictedTimes, measuredTimes).map { $0 / $1 - 1 }
            let mid = errors.indices.sorted { errors[$0] < errors[$1] }[measuredRounds / 2]
            let c = Check(
                name: r.name, predicted: predictedTimes[mid], measured: measuredTimes[mid], error: errors[mid],
                errors: errors)
            checks.append(c)
            print(
                r.name.padding(toLength: 52, withPad: " ", startingAt: 0)
                    + String(format: "%13.0f %13.0f %+7.1f %%", 1e3 * c.predicted, 1e3 * c.measured, 100 * c.error)
                    + "   " + c.errors.map { String(format: "%+.1f", 100 * $0) }.joined(separator: " "))
        }

        // SD1.5: compute per sample at each stage, from the step and forward benchmarks.
        let sd15 = try Self.decode(StepFile.self, sd15Step)
        guard let off = sd15.rows.first(where: { $0.model == "sd15" && !$0.leffa }) else {
            throw ValidationError("\(sd15Step): no sd15 row without the Leffa loss")
        }
        let leffaFactor =
            sd15.rows.first(where: { $0.model == "sd15" && $0.leffa }).map { $0.seconds / off.seconds } ?? 1
        let f512 = try Self.decode(ForwardFile.self, sd15Forward512),
            f1024 = try Self.decode(ForwardFile.self, sd15Forward1024)
        let bothTrained =
            try Self.decode(StepFile.self, "\(dir)/step-both.json").rows[0].seconds
            / Self.decode(StepFile.self, "\(dir)/step-frozen.json").rows[0].seconds
        let resolution = f1024.forwardSeconds / f512.forwardSeconds
        let perSample512 = off.seconds / Double(off.batch) * bothTrained
        let stages: [(String, Double)] = [
            ("512x384", perSample512), ("1024x768", perSample512 * resolution),
            ("1024x768 + Leffa", perSample512 * resolution * leffaFactor)
        ]
        let sd15Bytes = 1_719_000_000.0 * 4 // both UNets' trained parameters: 1.72 B of the 1.80 B sd15-forward counts
        print(
            String(
                format:
                    "\nSD1.5 per sample, both UNets trained, 2 threads: %.1f s at 512x384 (measured with the reference frozen: %.1f s; "
                    + "both trained %.2fx, measured at %@), 1024x768 = %.2fx (forward ratio), Leffa loss %+.1f %%",
                perSample512,
                off.seconds / Double(off.batch), bothTrained, model, resolution, 100 * (leffaFactor - 1)))
        let nets = try network.map(Self.parseNetwork)
        var predictions: [Prediction] = []
        for (stage, c) in stages {
            var m = ScalingModel(
                computePerSample: c, optimizerSeconds: one.optimizerSeconds * sd15Bytes / Double(one.gradientBytes),
                gradientBytes: sd15Bytes, sharedSecondsPerByte: perByte)
            m.nodeMemoryBytesPerSecond = nodeMemoryGbs * 1e9
            for net in nets {
                print("\n\(stage), \(net.name), \(ranksPerNode) ranks per node, batch \(clusterBatch) per rank")
                print(" ranks   buckets img/s  efficiency   hierarchical img/s  efficiency")
                let single =
                    Double(clusterBatch) / m.hierarchicalStep(ranks: 1, perNode: 1, batch: clusterBatch, net: net)
                for n in [1, 2, 4, 8, 16, 32, 64, 128, 256, 512] {
                    let L = min(ranksPerNode, n)
                    let bi =
                        Double(n * clusterBatch) / m.bucketStep(ranks: n, perNode: L, batch: clusterBatch, net: net)
                    let hi =
                        Double(n * clusterBatch)
                        / m.hierarchicalStep(ranks: n, perNode: L, batch: clusterBatch, net: net)
                    let p = Prediction(
                        stage: stage, network: net.name, ranks: n, bucketImagesPerSecond: bi,
                        bucketEfficiency: bi / (Double(n) * single),
                        hierarchicalImagesPerSecond: hi, hierarchicalEfficiency: hi / (Double(n) * single))
                    predictions.append(p)
                    print(
                        String(
                            format: "%6d %14.3f %10.1f %% %20.3f %10.1f %%", n, bi, 100 * p.bucketEfficiency, hi,
                            100 * p.hierarchicalEfficiency))
                }
            }
        }
        let path = options.jsonPath("scaling")
        try writeJSON(
            Report(
                checks: checks, predictions: predictions, computePerSample: Dictionary(uniqueKeysWithValues: stages),
                gradientBytesSD15: sd15Bytes, sharedSecondsPerByte: perByte, mpiBytesPerSecond: mpiBandwidth), to: path)
        print("\nwrote \(path)")
    }

    /// Runs this executable under mpirun (or alone when `ranks` is nil), one kernel thread per
    /// rank, and fails on a non-zero exit.
    func launch(ranks: Int?, mpi: [String], env: [String: String], args: [String]) throws {
        try launchTogether([(ranks, mpi, env, args)])
    }

    /// Starts every job at once and waits for all of them.
    func launchTogether(_ jobs: [(ranks: Int?, mpi: [String], env: [String: String], args: [String])]) throws {
        let started = try jobs.map { job -> Process in
            let p = process(ranks: job.ranks, mpi: job.mpi, env: job.env, args: job.args)
            try p.run()
            return p
        }
        for p in started {
            p.waitUntilExit()
            guard p.terminationStatus == 0 else { throw ValidationError("\(mpirun) exited with \(p.terminationStatus)") }
        }
    }

    func process(ranks: Int?, mpi: [String], env: [String: String], args: [String]) -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        let exports = (["LEFFA_THREADS": "1"].merging(env) { $1 }).keys.sorted().flatMap { ["-x", $0] }
        let launcher = ranks.map { [mpirun, "--oversubscribe", "-np", "\($0)"] + mpi + exports } ?? []
        p.arguments = launcher + [CommandLine.arguments[0]] + args
        var environment = ProcessInfo.processInfo.environment.merging(env) { $1 }
        environment["LEFFA_THREADS"] = "1"
        environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"; environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        p.environment = environment
        print("$ " + (p.arguments ?? []).joined(separator: " "))
        return p
    }

    static func parseNetwork(_ s: String) throws -> ScalingModel.Network {
        let f = s.split(separator: ":").map(String.init)
        guard f.count == 3, let gbit = Double(f[1]), let us = Double(f[2]), gbit > 0, us >= 0 else {
            throw ValidationError("--network: expected name:Gbit/s:latency µs like 'InfiniBand 100G:100:1.5', got \(s)")
        }
        return .init(name: f[0], bytesPerSecond: gbit * 1e9 / 8, latency: us * 1e-6)
    }

    static func decode<T: Decodable>(_ type: T.Type, _ path: String) throws -> T {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ValidationError("\(path): not found (run the benchmark that writes it first)")
        }
        do { return try JSONDecoder().decode(type, from: data) } catch { throw ValidationError("\(path): \(error)") }
    }

    struct DDPResult: Decodable {
        var stepSeconds: Double, optimizerSeconds: Double, perRankBatch: Int, gradientBytes: Int
        enum CodingKeys: String, CodingKey {
            case stepSeconds = "step_seconds", optimizerSeconds = "optimizer_seconds", perRankBatch = "per_rank_batch",
                gradientBytes = "gradient_bytes"
        }
    }
    struct StepFile: Decodable {
        struct Row: Decodable {
            var model: String; var batch: Int; var leffa: Bool; var train: [String]; var seconds: Double
        }
        var rows: [Row]
    }
    struct ForwardFile: Decodable {
        var forwardSeconds: Double
        enum CodingKeys: String, CodingKey { case forwardSeconds = "forward_seconds" }
    }
}
