// The trainer's TensorBoard stream (RUN/tensorboard/<stage>/) and the step alignment of a stage's
// logs: a stage resumed from an older checkpoint, after a crash that tore the last event and the
// last metrics line, leaves exactly one metrics line, one validation line and one event per tag
// for each step, and the images are the PNGs written beside them.
import Foundation
import LeffaData
import LeffaRunFormat
import LeffaTraining
import TensorBoard
import TestSupport
import XCTest
import RunTestSupport

final class TensorBoardLogTests: XCTestCase {
    static let training = """
          snapshot_every: 2
          snapshot_samples: 1
          validation: {every: 3, count: 1, steps: 1, guidance: 1.0}
        """

    /// Every event of a stage's files in TensorBoard's reading order; a torn file fails the test.
    func events(_ run: RunDirectory, _ stage: String, file: StaticString = #filePath, line: UInt = #line) throws
        -> [Event]
    {
        var all: [Event] = []
        for url in EventFile.files(in: run.tensorboardURL(stage)) {
            let read = EventFile.read([UInt8](try Data(contentsOf: url)))
            XCTAssertNil(read.problem, url.lastPathComponent, file: file, line: line)
            XCTAssertEqual(read.events.first?.what, .fileVersion("brain.Event:2"), file: file, line: line)
            all += read.events
        }
        return all
    }

    /// Each tag's steps, in file order.
    func steps(_ events: [Event]) -> [String: [Int64]] {
        var out: [String: [Int64]] = [:]
        for e in events {
            guard case .summary(let values) = e.what else { continue }
            for v in values { out[v.tag, default: []].append(e.step) }
        }
        return out
    }

    func testResumeFromAnOlderCheckpointLogsEachStepOnce() throws {
        let cfg = tinyConfig(
            stages: "  - {name: s0, resolution: 16x16, steps: 6, batch: 2, lr: 1.0e-3}", training: Self.training)
        let run = try makeRun(self, config: cfg, tag: "tb-resume")
        XCTAssertEqual(try quietTrainer(run).train(untilStep: 5), .stopped(atStep: 5))
        let first = steps(try events(run, "s0"))
        XCTAssertEqual(first["loss/total"], [1, 2, 3, 4, 5])
        let validationTags = first.keys.filter { $0.hasPrefix("validation/") }
        XCTAssertEqual(validationTags.count, 1, "one validation pair")
        let validationTag = try XCTUnwrap(validationTags.first)
        XCTAssertEqual(first[validationTag], [3])

        // The checkpoints of steps 4 and 5 are lost, and a crash tore the last record of each log.
        let ckpts = run.checkpointsURL("s0")
        for s in [4, 5] {
            try FileManager.default.removeItem(at: ckpts.appendingPathComponent(String(format: "step-%08d.h5", s)))
        }
        let eventFile = try XCTUnwrap(EventFile.files(in: run.tensorboardURL("s0")).last)
        let torn = TFRecord.frame(Event(wallTime: 1, step: 9, what: .summary([.scalar("lr", 1)])).encoded())
        try appendBytes(Data(torn.prefix(torn.count - 3)), to: eventFile)
        try appendBytes(Data("{\"stage\":\"s0\",\"step\":9,\"lo".utf8), to: run.metricsURL("s0"))

        let log = LogBox()
        let resumed = try quietTrainer(run, log: log)
        XCTAssertEqual(resumed.step, 2, log.text)
        XCTAssertEqual(try resumed.train(), .stageFinished(next: nil))
        XCTAssertTrue(
            log.text.contains("dropped what an earlier attempt wrote after it (3 metrics lines, 1 validation lines, "),
            log.text)

        XCTAssertEqual(try readMetrics(run, stage: "s0").map(\.step), [1, 2, 3, 4, 5, 6])
        let text = try String(contentsOf: run.validationLogURL("s0"), encoding: .utf8)
        let samplings = try text.split(separator: "\n").map {
            try JSONDecoder().decode(ValidationRecord.self, from: Data($0.utf8))
        }
        XCTAssertEqual(samplings.map(\.step), [3, 6])
        let all = try events(run, "s0")
        let tags = steps(all)
        for tag in ["loss/total", "loss/diffusion", "lr", "grad_norm", "images_per_second"] {
            XCTAssertEqual(tags[tag], [1, 2, 3, 4, 5, 6], tag)
        }
        XCTAssertNil(tags["loss/leffa"], "no Leffa loss in this stage")
        XCTAssertEqual(tags[validationTag], [3, 6])
        let flowTags = tags.keys.filter { $0.hasPrefix("flow/") }
        XCTAssertFalse(flowTags.isEmpty)
        for tag in flowTags { XCTAssertEqual(tags[tag], [2, 4, 6], tag) }

        // The scalars are the metrics lines' values; the images are the PNG files' bytes.
        let metrics = try readMetrics(run, stage: "s0")
        for e in all {
            guard case .summary(let values) = e.what else { continue }
            for v in values {
                switch v.kind {
                case .scalar(let x) where v.tag == "loss/total":
                    XCTAssertEqual(x, Float(metrics[Int(e.step) - 1].loss))
                case .image(let image) where v.tag.hasPrefix("validation/"):
                    let png = run.samplesURL("s0").appendingPathComponent(String(format: "step-%08d", e.step))
                        .appendingPathComponent(v.tag.dropFirst("validation/".count) + ".png")
                    try checkImage(image, file: png)
                    XCTAssertEqual(image.width, 4 * 16 + 3 * 2)
                case .image(let image):
                    let dir = run.snapshotsURL("s0").appendingPathComponent(String(format: "step-%08d", e.step))
                    // flow/<layer>/<sample>; the file: <sample>-<layer>.png.
                    let parts = v.tag.split(separator: "/")
                    XCTAssertEqual(parts.count, 3, v.tag)
                    try checkImage(image, file: dir.appendingPathComponent("\(parts[2])-\(parts[1]).png"))
                default: break
                }
            }
        }
    }

    func checkImage(_ image: EncodedImage, file: URL, line: UInt = #line) throws {
        let bytes = try ImageIO.readBytes(file)
        XCTAssertEqual(image.bytes, bytes, file.path, line: line)
        let decoded = try ImageIO.decode(bytes)
        XCTAssertEqual([image.height, image.width, image.colorspace], [decoded.height, decoded.width, 3], line: line)
    }

    func appendBytes(_ data: Data, to url: URL) throws {
        let h = try FileHandle(forWritingTo: url)
        try h.seekToEnd()
        try h.write(contentsOf: data)
        try h.close()
    }
}
