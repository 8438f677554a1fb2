// What rank 0 shows TensorBoard, in RUN/tensorboard/<stage>/: the metrics.jsonl steps as scalars
// (loss/total, loss/diffusion, loss/leffa, lr, grad_norm, images_per_second), each validation row
// (validation/<pair>-<person>) and each flow-snapshot strip (flow/<layer>/<sample>) as images, at
// their step. And the rewind that keeps the stage's logs step-aligned when it resumes from an
// older checkpoint.
import Foundation
import LeffaData
import LeffaRunFormat
import TensorBoard

/// A stage's TensorBoard stream. Write failures warn once and never stop training: the stream is
/// for watching, and metrics.jsonl and the PNGs hold the same things.
public final class TrainingBoard {
    let writer: EventFileWriter
    let warn: (String) -> Void
    var warned = false

    public init(run: RunDirectory, stage: String, warn: @escaping (String) -> Void) throws {
        writer = try EventFileWriter(directory: run.tensorboardURL(stage))
        self.warn = warn
    }

    /// The step's metrics (one event), written at once.
    func add(_ m: StepMetrics) {
        var scalars: [(tag: String, value: Float)] = [
            ("loss/total", Float(m.loss)), ("loss/diffusion", Float(m.diffusion))
        ]
        if let leffa = m.leffa { scalars.append(("loss/leffa", Float(leffa))) }
        scalars += [
            ("lr", Float(m.lr)), ("grad_norm", Float(m.gradNorm)), ("images_per_second", Float(m.imagesPerSecond))
        ]
        writer.add(scalars: scalars, step: m.step)
        flush()
    }

    /// A PNG already encoded for its file, buffered until `flush`.
    func add(image tag: String, png: [UInt8], of image: Image, step: Int) {
        writer.add(
            image: tag, EncodedImage(height: image.height, width: image.width, colorspace: image.channels, bytes: png),
            step: step)
    }

    func flush() {
        do { try writer.flush() } catch {
            if !warned { warn("warning: TensorBoard events not written to \(writer.url.path): \(error)") }
            warned = true
        }
    }

    /// Drops the events of steps after `step` from the stage's event files, and torn tails, rewriting
    /// each file that changes atomically (its file_version record stays). Returns the events dropped.
    @discardableResult
    public static func rewind(_ dir: URL, throughStep step: Int) throws -> Int {
        var dropped = 0
        for url in EventFile.files(in: dir) {
            let r = EventFile.rewound([UInt8](try Data(contentsOf: url)), throughStep: Int64(step))
            if r.changed { try atomicWrite(Data(r.bytes), to: url) }
            dropped += r.dropped
        }
        return dropped
    }
}

extension Trainer {
    /// Rank 0, as a stage starts or resumes at `step`: metrics.jsonl, validation.jsonl, the
    /// TensorBoard stream, the flow snapshots and the validation samples lose what an earlier
    /// attempt wrote after `step` (that attempt's checkpoints are gone, so those steps are redone
    /// and written again; a snapshot file is never overwritten).
    func rewindLogs() throws {
        let rows = try MetricsLog.dropLines(after: step, in: run.metricsURL(stage.name))
        let samplings = try MetricsLog.dropLines(after: step, in: run.validationLogURL(stage.name))
        let events = try TrainingBoard.rewind(run.tensorboardURL(stage.name), throughStep: step)
        let folders =
            try removeSteps(after: step, in: run.snapshotsURL(stage.name))
            + removeSteps(after: step, in: run.samplesURL(stage.name))
        if rows + samplings + events + folders > 0 {
            log(
                "stage \(stage.name) goes on from step \(step): dropped what an earlier attempt wrote after it "
                    + "(\(rows) metrics lines, \(samplings) validation lines, \(events) TensorBoard events, "
                    + "\(folders) snapshot and sample files and folders)")
        }
    }

    /// Removes `step-NNNNNNNN` folders and `step-NNNNNNNN.h5` files of steps after `step` in `dir`.
    func removeSteps(after step: Int, in dir: URL) throws -> Int {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        var removed = 0
        for name in names where name.hasPrefix("step-") {
            let digits = name.dropFirst(5).prefix { $0.isNumber }
            let rest = name.dropFirst(5 + digits.count)
            guard let s = Int(digits), s > step, rest.isEmpty || rest == ".h5" else { continue }
            try FileManager.default.removeItem(at: dir.appendingPathComponent(name))
            removed += 1
        }
        return removed
    }
}
