// A tiny synthetic run (tiny model, pixel space, 16×16) made in a temporary folder for each test.
import Foundation
import XCTest
import LeffaTensor
import LeffaData
import LeffaModels
import LeffaTraining
import LeffaRunFormat

enum TinyRun {
    static func config(steps: [Int], checkpointEvery: Int = 2) -> String {
        let names = ["lowres", "highres", "leffa"]
        let stages = zip(names, steps).map { "  - {name: \($0), resolution: 16x16, steps: \($1), batch: 2, lr: 1.0e-3}" }
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
    nonisolated(unsafe) static var made: [URL] = []
    static func cleanUp() {
        for u in made { try? FileManager.default.removeItem(at: u); try? FileManager.default.removeItem(at: u.appendingPathExtension("yaml")) }
        made = []
    }

    /// A fresh run directory with its synthetic data.
    static func make(steps: [Int] = [4, 4, 4], checkpointEvery: Int = 2, name: String = #function) throws -> RunDirectory {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("leffa-run-tests-\(getpid())-\(name.filter { $0.isLetter || $0.isNumber })-\(UInt32.random(in: 0...UInt32.max))")
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
    static func train(_ dir: RunDirectory, until step: Int? = nil) throws {
        let t = try Trainer(run: dir, log: { _ in })
        _ = try t.train(untilStep: step)
    }

    static func values(_ path: String, config: RunConfig) throws -> [Float] {
        let m = try LeffaModel(config: config.model, seed: 99)
        try m.loadWeights(from: path)
        return flat(m)
    }
    static func flat(_ m: LeffaModel) -> [Float] {
        let v = m.parameters.values!
        return Array(UnsafeBufferPointer(start: v.data, count: v.count))
    }
}
