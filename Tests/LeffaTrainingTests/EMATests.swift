// The EMA schedule (training.ema_*): the decays are diffusers' EMAModel.get_decay's, a stage's
// average starts fresh or carries on the previous stage's with its update count, a resumed run
// averages with the same decays (bit for bit), and the SD1.5 configs' Leffa-stage EMA is what
// their comments say.
import XCTest
import Foundation
import LeffaTensor
import LeffaLayers
import SafeTensors
import LeffaTraining
import LeffaRunFormat
import TestSupport
import RunTestSupport

final class EMATests: XCTestCase {
    /// Expected values printed once by diffusers 0.42.1 (EMAModel(…).get_decay(u)); u = 1 is the
    /// first update (optimization_step 1), whose decay is 0.
    func testDecayMatchesDiffusers() {
        var warm = EMAConfig(decay: 0.9999)
        warm.warmup = true; warm.invGamma = 1; warm.power = 2.0 / 3.0
        let expected: [(Int, Double)] = [(1, 0), (2, 0.3700394750525634), (3, 0.5192501432308638), (10, 0.7845565309968117),
                                         (100, 0.9535841116638722), (1000, 0.99), (10000, 0.9978455653099682),
                                         (46001, 0.9992210878383203), (56000, 0.999316810291867), (1_000_000, 0.9999)]
        for (u, d) in expected { XCTAssertEqual(Double(warm.decay(update: u)), d, accuracy: 1e-7, "warm-up, update \(u)") }

        var clamped = EMAConfig(decay: 0.9999)
        clamped.warmup = true; clamped.invGamma = 10; clamped.power = 0.75; clamped.minDecay = 0.5
        for (u, d) in [(1, 0.0), (2, 0.5), (3, 0.5), (10, 0.5), (100, 0.8333021008570076), (1000, 0.9685890099439638), (10000, 0.9943803795653099)] {
            XCTAssertEqual(Double(clamped.decay(update: u)), d, accuracy: 1e-7, "inv_gamma 10, power 3/4, min_decay 0.5, update \(u)")
        }

        let plain = EMAConfig(decay: 0.9999)   // use_ema_warmup=False: (1 + k)/(10 + k)
        for (u, d) in [(1, 0.0), (2, 0.18181818181818182), (11, 0.55), (1_000_000, 0.9999)] {
            XCTAssertEqual(Double(plain.decay(update: u)), d, accuracy: 1e-7, "no warm-up, update \(u)")
        }
    }

    /// The SD1.5 configs carry the EMA over the stages with warm-up: the Leffa stage's updates
    /// make ≥ 99.9 % of the exported EMA (1 − Π decay over its updates; diffusers' decays give
    /// 0.99932 for 46k + 10k updates and 0.99958 for 160k + 24k), where a constant 0.9999 gave 63 % / 91 %.
    func testShippedConfigsLeffaStageDominatesTheEMA() throws {
        let dir = Fixtures.packageRoot.appendingPathComponent("Configs")
        for (file, share) in [("sd15-vitonhd.yaml", 0.99932), ("sd15-dresscode.yaml", 0.99932), ("sd15-deepfashion.yaml", 0.99958)] {
            let c = try RunConfig.load(path: dir.appendingPathComponent(file).path)
            let e = try XCTUnwrap(c.ema, file)
            XCTAssertTrue(e.warmup, file)
            XCTAssertEqual(e.start, .carry, file)
            let before = c.stages.dropLast().map(\.steps).reduce(0, +), leffa = c.stages.last!.steps
            XCTAssertEqual(e.share(updates: (before + 1)...(before + leffa)), share, accuracy: 1e-5, file)
        }
    }

    func testBadEMAKeysNameTheField() {
        let cases: [(String, [String])] = [
            ("ema_decay: 0.9\n  ema_start: later", ["training.ema_start", "fresh", "carry", "got later"]),
            ("ema_decay: 0.9\n  ema_power: -1", ["training.ema_power", "got -1"]),
            ("ema_decay: 0.9\n  ema_min_decay: 0.95", ["training.ema_min_decay", "0.0…0.9"]),
            ("ema_decay: 0.9\n  ema_warmup: sometimes", ["training.ema_warmup", "true or false"]),
            ("ema_warmup: true", ["training.ema_warmup", "ema_decay"]),
        ]
        for (training, parts) in cases {
            let text = tinyConfig().replacingOccurrences(of: "  ema_decay: 0.9\n", with: "  " + training + "\n")
            let message = errorMessage { _ = try RunConfig.parse(text, source: "run.yaml") }
            XCTAssertTrue(message.hasPrefix("run.yaml: field "), message)
            for p in parts { XCTAssertTrue(message.contains(p), "\(message) lacks \(p)") }
        }
    }

    static let warm = "  ema_warmup: true\n  ema_power: 0.75\n  ema_inv_gamma: 2.0\n"

    /// Warm-up on, stopped at step 2 and resumed to 6: the EMA is bit-identical to an uninterrupted
    /// run's, and the checkpoint says how many updates it holds.
    func testResumeWithWarmUpIsBitIdentical() throws {
        let cfg = tinyConfig(stages: "  - {name: s0, resolution: 16x16, steps: 8, batch: 2, lr: 2.0e-3}", training: Self.warm)
        let a = try makeRun(self, config: cfg, tag: "ema-a"), b = try makeRun(self, config: cfg, tag: "ema-b")
        let straight = try quietTrainer(a)
        XCTAssertEqual(try straight.train(untilStep: 6), .stopped(atStep: 6))
        XCTAssertEqual(try quietTrainer(b).train(untilStep: 2), .stopped(atStep: 2))
        let resumed = try quietTrainer(b)
        XCTAssertEqual(resumed.step, 2)
        XCTAssertEqual(try resumed.train(untilStep: 6), .stopped(atStep: 6))
        XCTAssertTrue(sameBits(resumed.ema!, straight.ema!), "EMA")
        XCTAssertTrue(sameBits(resumed.model.parameters.values!, straight.model.parameters.values!), "parameters")
        // The EMA is not the weights (the test would pass trivially if the decay were 0).
        XCTAssertFalse(sameBits(straight.ema!, straight.model.parameters.values!))
    }

    /// Fresh: the first update's decay is 0, so after a stage's first step the EMA is its weights.
    /// Carry: the next stage's EMA starts from the previous stage's final EMA and its first update
    /// is update 4 (after a 3-step stage); resuming the carrying stage gives the same bits.
    func testFreshAndCarriedStages() throws {
        let stages = "  - {name: s0, resolution: 16x16, steps: 3, batch: 2, lr: 2.0e-3}\n  - {name: s1, resolution: 16x16, steps: 4, batch: 2, lr: 2.0e-3}"
        let fresh = try makeRun(self, config: tinyConfig(stages: stages, training: Self.warm), tag: "ema-fresh")
        let f0 = try quietTrainer(fresh)
        XCTAssertEqual(try f0.train(untilStep: 1), .stopped(atStep: 1))
        XCTAssertTrue(sameBits(f0.ema!, f0.model.parameters.values!), "fresh: EMA after the first update")

        let carry = tinyConfig(stages: stages, training: Self.warm + "  ema_start: carry\n")
        let a = try makeRun(self, config: carry, tag: "ema-carry-a"), b = try makeRun(self, config: carry, tag: "ema-carry-b")
        XCTAssertEqual(try quietTrainer(a).train(), .stageFinished(next: "s1"))
        XCTAssertEqual(try quietTrainer(b).train(), .stageFinished(next: "s1"))
        let log = LogBox()
        let s1 = try quietTrainer(a, log: log)
        XCTAssertEqual(s1.emaUpdatesBefore, 3)
        XCTAssertTrue(log.text.contains("its EMA from s0's final EMA (3 updates)"), log.text)
        let ema0 = s1.ema!.copy()
        XCTAssertEqual(try s1.train(untilStep: 1), .stopped(atStep: 1))
        let expected = ema0.copy()
        AdamW.average(expected, toward: s1.model.parameters.values!, decay: s1.config.ema!.decay(update: 4))
        XCTAssertTrue(sameBits(s1.ema!, expected), "carry: the first update of s1 is update 4, from s0's final EMA")
        XCTAssertEqual(try s1.train(), .stageFinished(next: nil))

        XCTAssertEqual(try quietTrainer(b).train(untilStep: 2), .stopped(atStep: 2))
        let resumed = try quietTrainer(b)
        XCTAssertEqual(resumed.emaUpdatesBefore, 3, "from the checkpoint's ema_updates")
        XCTAssertEqual(try resumed.train(), .stageFinished(next: nil))
        XCTAssertTrue(sameBits(resumed.ema!, s1.ema!), "carry, resumed: EMA")
        let meta = try SafeTensorsFile(path: a.finalWeightsURL("s1", ema: true).path).metadata
        XCTAssertEqual(meta["ema_updates"], "7")
    }
}
