// Shared helpers of the trainer tests: a tiny pixel-space run on synthetic data in a temp folder,
// byte-level comparisons of flat blocks and of checkpoint folders.
import XCTest
import Foundation
import LeffaTensor
import LeffaData
import LeffaTraining
import LeffaRunFormat
import TestSupport

/// A tiny pixel-space config. `stages` is the YAML list body; `training` extra lines go under training.
func tinyConfig(stages: String = "  - {name: s0, resolution: 16x16, steps: 6, batch: 2, lr: 1.0e-3}",
                training: String = "", seed: Int = 0) -> String {
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
func tempFolder(_ test: XCTestCase, _ tag: String) throws -> URL {
    let u = FileManager.default.temporaryDirectory.appendingPathComponent("leffa-\(tag)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: u) }
    return u
}

/// Creates a run (config + synthetic data under RUN/data) and returns it.
func makeRun(_ test: XCTestCase, config: String, count: Int = 4, size: (Int, Int) = (16, 16), tag: String = "run") throws -> RunDirectory {
    let root = try tempFolder(test, tag)
    let cfgURL = root.appendingPathComponent("config-src.yaml")
    try config.write(to: cfgURL, atomically: true, encoding: .utf8)
    let run = try RunDirectory.create(at: root.appendingPathComponent("run").path, config: try RunConfig.load(path: cfgURL.path))
    try generateSynthetic(out: run.url.appendingPathComponent("data"), count: count, height: size.0, width: size.1, seed: 7)
    return run
}

/// Collects a trainer's log lines.
final class LogBox: @unchecked Sendable {
    private let lock = NSLock()
    private var _lines: [String] = []
    var lines: [String] { lock.lock(); defer { lock.unlock() }; return _lines }
    func append(_ s: String) { lock.lock(); _lines.append(s); lock.unlock() }
    var text: String { lines.joined(separator: "\n") }
}

func quietTrainer(_ run: RunDirectory, log: LogBox? = nil) throws -> Trainer {
    try Trainer(run: run, log: { line in log?.append(line) })
}

/// Bitwise equality of two float blocks.
func sameBits(_ a: Tensor, _ b: Tensor) -> Bool {
    a.count == b.count && memcmp(a.data, b.data, a.count * MemoryLayout<Float>.size) == 0
}

/// Every file of a folder (recursively) and its bytes: to show nothing in it changed.
func folderBytes(_ url: URL) -> [String: Data] {
    var out: [String: Data] = [:]
    guard let e = FileManager.default.enumerator(at: url, includingPropertiesForKeys: nil) else { return out }
    for case let f as URL in e {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: f.path, isDirectory: &isDir), !isDir.boolValue {
            out[f.path.replacingOccurrences(of: url.path, with: "")] = FileManager.default.contents(atPath: f.path)
        }
    }
    return out
}

/// The metrics lines of a stage.
func readMetrics(_ run: RunDirectory, stage: String) throws -> [StepMetrics] {
    let text = try String(contentsOf: run.metricsURL(stage), encoding: .utf8)
    return try text.split(separator: "\n").map { try JSONDecoder().decode(StepMetrics.self, from: Data($0.utf8)) }
}

/// The message of an error thrown by `body`, or a failure when it does not throw.
func errorMessage(_ body: () throws -> Void, file: StaticString = #filePath, line: UInt = #line) -> String {
    do { try body() } catch { return "\(error)" }
    XCTFail("expected an error", file: file, line: line)
    return ""
}
