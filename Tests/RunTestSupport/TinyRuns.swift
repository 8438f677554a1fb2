// Tiny training runs for the tests of the trainer, the coordinator and the built commands: a
// pixel-space config on synthetic data in a temporary folder, and reading back what a run wrote.
import Foundation
import XCTest
import LeffaTensor
import LeffaData
import LeffaModels
import LeffaTraining
import LeffaRunFormat

/// A tiny pixel-space config. `stages` is the YAML list body; `training` extra lines go under training.
public func tinyConfig(
    stages: String = "  - {name: s0, resolution: 16x16, steps: 6, batch: 2, lr: 1.0e-3}",
    training: String = "", seed: Int = 0
) -> String {
    """
    run: {name: test, seed: \(seed)}
    model: {preset: tiny}
    data: {kind: synthetic, root: data, space: pixel}
    training:
      train: [unet, unet_encoder]
      grad_clip: 1.0
      ema_decay: 0.9
      reference_dropout: 0.25
      checkpoint_every: 2
      keep_checkpoints: 10
    \(training)
    stages:
    \(stages)
    """
}

/// A fresh temp folder, removed at the end of the test.
public func tempFolder(_ test: XCTestCase, _ tag: String) throws -> URL {
    let u = FileManager.default.temporaryDirectory.appendingPathComponent("leffa-\(tag)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: u) }
    return u
}

/// Creates a run (config + synthetic data under RUN/data) and returns it.
public func makeRun(
    _ test: XCTestCase, config: String, count: Int = 4, size: (Int, Int) = (16, 16), tag: String = "run"
) throws -> RunDirectory {
    let root = try tempFolder(test, tag)
    let cfgURL = root.appendingPathComponent("config-src.yaml")
    try config.write(to: cfgURL, atomically: true, encoding: .utf8)
    let run = try RunDirectory.create(
        at: root.appendingPathComponent("run").path, config: try RunConfig.load(path: cfgURL.path))
    try generateSynthetic(
        out: run.url.appendingPathComponent("data"), count: count, height: size.0, width: size.1, seed: 7)
    return run
}

/// Collects a trainer's log lines.
public final class LogBox: @unchecked Sendable {
    private let lock = NSLock()
    private var _lines: [String] = []
    public init() {}
    public var lines: [String] { lock.lock(); defer { lock.unlock() }; return _lines }
    public func append(_ s: String) { lock.lock(); _lines.append(s); lock.unlock() }
    public var text: String { lines.joined(separator: "\n") }
}

/// A trainer for `run` whose log lines go to `log` (or nowhere).
public func quietTrainer(_ run: RunDirectory, log: LogBox? = nil) throws -> Trainer {
    try Trainer(run: run, log: { line in log?.append(line) })
}

/// The metrics lines of a stage.
public func readMetrics(_ run: RunDirectory, stage: String) throws -> [StepMetrics] {
    let text = try String(contentsOf: run.metricsURL(stage), encoding: .utf8)
    return try text.split(separator: "\n").map { try JSONDecoder().decode(StepMetrics.self, from: Data($0.utf8)) }
}

/// A tiny three-stage run (tiny model, pixel space, 16×16) made in a temporary folder for each test.
public enum TinyRun {
    public static func config(steps: [Int], checkpointEvery: Int = 2) -> String {
        let names = ["lowres", "highres", "leffa"]
        let stages = zip(names, steps)
            .map { "  - {name: \($0), resolution: 16x16, steps: \($1), batch: 2, lr: 1.0e-3}" }
        return """
            run: {name: tiny-test, seed: 3}
            model: {preset: tiny}
            data: {kind: synthetic, root: data, space: pixel}
            training: {checkpoint_every: \(checkpointEvery), keep_checkpoints: 3, ema_decay: 0.9, snapshot_every: 0, reference_dropout: 0.2}
            stages:
            \(stages.joined(separator: "\n"))
            """
    }

    /// Every run directory `make` created; `cleanUp()` (each test class's tearDown) removes them,
    /// so the suite leaves no runs behind (a killed-and-restarted run holds ~700 MB).
    nonisolated(unsafe) public static var made: [URL] = []
    public static func cleanUp() {
        for u in made {
            try? FileManager.default.removeItem(at: u)
            try? FileManager.default.removeItem(at: u.appendingPathExtension("yaml"))
        }
        made = []
    }

    /// A fresh run directory with its synthetic data.
    public static func make(steps: [Int] = [4, 4, 4], checkpointEvery: Int = 2, name: String = #function) throws
        -> RunDirectory
    {
        let tag = "\(getpid())-\(name.filter { $0.isLetter || $0.isNumber })-\(UInt32.random(in: 0...UInt32.max))"
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("leffa-run-tests-" + tag)
        try? FileManager.default.removeItem(at: root)
        made.append(root)
        let cfgURL = root.appendingPathExtension("yaml")
        try FileManager.default.createDirectory(at: root.deletingLastPathComponent(), withIntermediateDirectories: true)
        try config(steps: steps, checkpointEvery: checkpointEvery).write(to: cfgURL, atomically: true, encoding: .utf8)
        let cfg = try RunConfig.load(path: cfgURL.path)
        let dir = try RunDirectory.create(at: root.path, config: cfg)
        _ = try generateSynthetic(out: root.appendingPathComponent("data"), count: 6, height: 32, width: 24, seed: 1)
        return dir
    }

    /// Trains the current stage in this process up to `step`.
    public static func train(_ dir: RunDirectory, until step: Int? = nil) throws {
        let t = try Trainer(run: dir, log: { _ in })
        _ = try t.train(untilStep: step)
    }

    /// A stage's final weights as one flat block.
    public static func values(_ path: String, config: RunConfig) throws -> [Float] {
        let m = try LeffaModel(config: config.model, seed: 99)
        try m.loadWeights(from: path)
        return flat(m)
    }

    /// A model's parameters as one flat block.
    public static func flat(_ m: LeffaModel) -> [Float] {
        let v = m.parameters.values!
        return Array(UnsafeBufferPointer(start: v.data, count: v.count))
    }
}
