// stage status / advance / set on a tiny run trained in process.
import XCTest
import Foundation
import LeffaCheckpoint
import LeffaTraining
import LeffaRunFormat
@testable import LeffaRun
import RunTestSupport

final class StageControlTests: XCTestCase {
    override func tearDown() { TinyRun.cleanUp(); super.tearDown() }
    func testAdvanceMidStageWritesCheckpointWeightsAndMovesOn() throws {
        let dir = try TinyRun.make(steps: [6, 4, 4])
        try TinyRun.train(dir, until: 2)
        let st = try StageControl.status(dir)
        XCTAssertEqual(st.stage, "lowres")
        XCTAssertEqual(st.stages[0].latestCheckpoint, 2)
        XCTAssertNil(st.stages[1].latestCheckpoint)

        let state = try StageControl.advance(dir, reason: "test")
        XCTAssertEqual(state.stage, "highres")
        XCTAssertEqual(state.completedStages, ["lowres"])
        XCTAssertTrue(state.history.last!.reason.contains("ended lowres at checkpoint step 2 of 6"), state.history.last!.reason)
        XCTAssertEqual(state.history.last!.from, "lowres")
        XCTAssertEqual(try dir.readState().stage, "highres")

        // The final weights are exactly the checkpoint's params (and EMA).
        let cfg = try dir.readConfig()
        let reader = try CheckpointReader(url: try CheckpointDirectory(dir.checkpointsURL("lowres")).url(step: 2))
        defer { reader.close() }
        let (m, _) = try StageWeights.load(run: dir, config: cfg, stage: "lowres", step: 2, ema: false)
        XCTAssertEqual(try TinyRun.values(dir.finalWeightsURL("lowres").path, config: cfg), TinyRun.flat(m))
        let (e, _) = try StageWeights.load(run: dir, config: cfg, stage: "lowres", step: 2, ema: true)
        XCTAssertEqual(try TinyRun.values(dir.finalWeightsURL("lowres", ema: true).path, config: cfg), TinyRun.flat(e))
        XCTAssertNotEqual(TinyRun.flat(m), TinyRun.flat(e))

        // The next stage starts from those weights.
        var lines: [String] = []
        _ = try Trainer(run: dir, log: { lines.append($0) })
        XCTAssertTrue(lines.contains { $0.contains("starts from lowres's final weights") }, "\(lines)")
    }

    func testAdvanceWithoutCheckpointIsAnError() throws {
        let dir = try TinyRun.make()
        XCTAssertThrowsError(try StageControl.advance(dir)) { XCTAssertTrue("\($0)".contains("no valid checkpoint"), "\($0)") }
        XCTAssertEqual(try dir.readState().stage, "lowres")
    }

    func testSetBackwardsNeedsConfirmationAndMovesFilesAside() throws {
        let dir = try TinyRun.make(steps: [2, 4, 4])
        try TinyRun.train(dir)                        // lowres finishes, run moves to highres
        try TinyRun.train(dir, until: 2)              // highres has a checkpoint
        XCTAssertEqual(try dir.readState().stage, "highres")
        let lost = try StageControl.discards(dir, to: "lowres")
        XCTAssertEqual(lost.count, 2, "\(lost)")
        XCTAssertThrowsError(try StageControl.set(dir, to: "lowres", confirmed: false)) { XCTAssertTrue("\($0)".contains("--yes"), "\($0)") }
        XCTAssertEqual(try dir.readState().stage, "highres")
        let before = try dir.readState().history.count

        let s = try StageControl.set(dir, to: "lowres", confirmed: true, reason: "redo")
        XCTAssertEqual(s.stage, "lowres")
        XCTAssertEqual(s.completedStages, [])
        XCTAssertEqual(s.history.count, before + 1)
        XCTAssertTrue(s.history.last!.reason.hasPrefix("redo; discarded:"), s.history.last!.reason)
        XCTAssertEqual(try StageControl.checkpointSteps(dir, "highres"), [])
        let aside = try FileManager.default.contentsOfDirectory(atPath: dir.stageURL("highres").path).filter { $0.hasPrefix("discarded-") }
        XCTAssertEqual(aside.count, 1)
        // The stage's TensorBoard events go with them, out of `tensorboard --logdir RUN/tensorboard`.
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.tensorboardURL("highres").path))
        let events = dir.stageURL("highres").appendingPathComponent("\(aside[0])/tensorboard")
        let files = try FileManager.default.contentsOfDirectory(atPath: events.path)
        XCTAssertEqual(files.filter { $0.contains("tfevents") }.count, 1, "\(files)")
        // Moving forward again to a stage whose predecessor has final weights needs no confirmation.
        XCTAssertEqual(try StageControl.set(dir, to: "highres", confirmed: false).stage, "highres")
    }

    func testSetForwardNeedsThePreviousFinalWeights() throws {
        let dir = try TinyRun.make()
        XCTAssertThrowsError(try StageControl.set(dir, to: "leffa", confirmed: true)) { XCTAssertTrue("\($0)".contains("highres's final weights"), "\($0)") }
        XCTAssertThrowsError(try StageControl.set(dir, to: "nope", confirmed: true)) { XCTAssertTrue("\($0)".contains("no stage named nope"), "\($0)") }
    }
}

extension StageControlTests {
    func testMovingAwayFromAnUnfinishedStageNeedsConfirmation() throws {
        let dir = try TinyRun.make(steps: [2, 6, 4])
        try TinyRun.train(dir)                        // lowres done
        try TinyRun.train(dir, until: 2)              // highres at 2 of 6
        try TinyRun.train(dir, until: 4)              // … 4 of 6
        // Going forward to leffa is impossible (no highres final weights) …
        XCTAssertThrowsError(try StageControl.set(dir, to: "leffa", confirmed: true))
        // … and staying put records a transition without discarding anything.
        XCTAssertEqual(try StageControl.discards(dir, to: "highres"), [])
        XCTAssertEqual(try StageControl.set(dir, to: "highres", confirmed: false, reason: "same").history.last?.reason, "same")
        let r = try StageControl.status(dir)
        XCTAssertEqual(r.stages.map(\.latestCheckpoint), [2, 4, nil])
        XCTAssertTrue(r.text.contains("latest checkpoint step 4/6"), r.text)
    }
}
