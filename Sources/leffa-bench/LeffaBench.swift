// leffa-bench: measured numbers for the engine (and later the trainer), as a table on stdout and a
// JSON file. Every speed is also given relative to an anchor measured in the same run (sgemm peak),
// because this machine is noisy and only ratios compare across runs.
import ArgumentParser
import Foundation
import LeffaTensor
import LeffaData
import LeffaCLI

@main
struct LeffaBench: ParsableCommand {
    static func main() { mainWithExitStatuses() }
    static let configuration = CommandConfiguration(
        commandName: "leffa-bench",
        abstract: "Benchmarks of the Leffa training system.",
        version: leffaVersion,
        subcommands: [
            EngineBench.self, TrainStepBench.self, SD15Bench.self, DDPBench.self, FlowAccuracyBench.self,
            LeffaEffectBench.self, CheckpointIOBench.self, KernelsCommand.self,
            ScalingBench.self, ReduceCostBench.self
        ],
        defaultSubcommand: EngineBench.self)
}

/// Options every benchmark shares.
struct BenchOptions: ParsableArguments {
    @Option(help: "Kernel threads (default: LEFFA_THREADS, else cores ÷ local MPI ranks).")
    var threads: Int?
    @Option(help: "Timed repetitions per case (the median is reported).")
    var repeats: Int = 5
    @Option(help: "Where to write the JSON results (default: bench-results/BENCHMARK.json, e.g. engine.json).")
    var json: String?
    @Flag(help: "Small shapes only: a smoke run that finishes in seconds.")
    var quick = false

    /// `--json`, else bench-results/`name`.json.
    func jsonPath(_ name: String) -> String { json ?? "bench-results/\(name).json" }

    func apply() {
        if let threads { Parallel.threads = threads }
    }
}

/// An image size option "HxW" (H and W positive multiples of `multiple`), e.g. 512x384.
func imageSize(_ text: String, option: String = "--size", multiple: Int = 1) throws -> (height: Int, width: Int) {
    guard let size = ImageSize(parsing: text), size.height % multiple == 0, size.width % multiple == 0 else {
        let what = multiple > 1 ? "H x W in multiples of \(multiple)" : "H x W"
        throw ValidationError("\(option): expected \(what), like 512x384, got \(text)")
    }
    return (size.height, size.width)
}

/// The process's peak resident set (VmHWM), from /proc.
func peakRSS() -> Int {
    guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in s.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let kb = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap { Int($0) }.first ?? 0
        return kb * 1024
    }
    return 0
}

/// Starts a new resident-set peak (Linux: writing 5 to clear_refs resets VmHWM).
func resetPeakRSS() {
    try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)
}

/// Median and best wall time of `body` over `repeats` runs after one warm-up.
func timeit(repeats: Int, _ body: () -> Void) -> (median: Double, best: Double) {
    withoutActuallyEscaping(body) { timeInterleaved(repeats: repeats, [$0])[0] }
}

/// Median and best wall time of each case over `repeats` rounds after one warm-up round, the
/// cases taking turns within a round: a slow spell of this shared machine then slows every case
/// alike instead of the one that happened to run in it, so their ratios hold.
func timeInterleaved(repeats: Int, _ cases: [() -> Void]) -> [(median: Double, best: Double)] {
    cases.forEach { $0() }
    var times = [[Double]](repeating: [], count: cases.count)
    for _ in 0..<max(repeats, 1) {
        for (i, body) in cases.enumerated() {
            let t0 = DispatchTime.now().uptimeNanoseconds
            body()
            times[i].append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
        }
    }
    return times.map { t in
        let s = t.sorted(); return (s[s.count / 2], s[0])
    }
}

/// One row of a benchmark table.
struct BenchRow: Encodable {
    var name: String
    var shape: String
    var gflop: Double
    var seconds: Double
    var bestSeconds: Double
    var gflops: Double { gflop / seconds }
    var fractionOfPeak: Double?

    enum CodingKeys: String, CodingKey {
        case name, shape, gflop, seconds, bestSeconds = "best_seconds", gflops, fractionOfPeak = "fraction_of_peak"
    }
    func encode(to e: Encoder) throws {
        var c = e.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name); try c.encode(shape, forKey: .shape)
        try c.encode(gflop, forKey: .gflop); try c.encode(seconds, forKey: .seconds)
        try c.encode(bestSeconds, forKey: .bestSeconds); try c.encode(gflops, forKey: .gflops)
        try c.encodeIfPresent(fractionOfPeak, forKey: .fractionOfPeak)
    }
}

func printTable(_ rows: [BenchRow]) {
    let header =
        "name".padding(toLength: 26, withPad: " ", startingAt: 0)
        + "shape".padding(toLength: 34, withPad: " ", startingAt: 0)
        + "   ms(med)    ms(best)   GFLOP/s   of peak (best vs best)"
    print(header)
    print(String(repeating: "-", count: header.count))
    for r in rows {
        let frac = r.fractionOfPeak.map { String(format: "%6.1f %%", 100 * $0) } ?? "      -"
        print(
            r.name.padding(toLength: 26, withPad: " ", startingAt: 0)
                + r.shape.padding(toLength: 34, withPad: " ", startingAt: 0)
                + String(format: "%10.2f  %10.2f  %8.1f   ", r.seconds * 1e3, r.bestSeconds * 1e3, r.gflops) + frac)
    }
}

func writeJSON<T: Encodable>(_ value: T, to path: String) throws {
    let url = URL(fileURLWithPath: path)
    try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    let enc = JSONEncoder()
    enc.outputFormatting = [.prettyPrinted, .sortedKeys]
    try enc.encode(value).write(to: url, options: .atomic)
}
