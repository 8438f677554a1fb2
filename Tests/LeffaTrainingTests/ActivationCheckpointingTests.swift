// training.activation_checkpointing: both UNets recompute each block in backward. The loss and
// every parameter's gradient are the same bits as without (Leffa loss on, reference UNet trained),
// the peak activation memory is lower, and a trainer run with it ends with the same weights.
import XCTest
import Foundation
import LeffaTensor
import LeffaModels
import LeffaDiffusion
import LeffaTraining
import LeffaRunFormat
import TestSupport
import RunTestSupport

final class ActivationCheckpointingTests: XCTestCase {
    func testGradientsAreBitIdenticalWithLeffaLoss() throws {
        let model = try LeffaModel(config: .tiny, seed: 3)
        model.parameters.enableGradients()
        model.parameters.freeze(except: model.parameters(of: "unet") + model.parameters(of: "unet_encoder"))
        var leffa = LeffaLossConfig()
        leffa.minResolutionFraction = 0   // probe every layer
        leffa.weight = 1
        let batch = LatentBatch.random(2, height: 16, width: 8, seed: 21)
        var runs: [(total: Float, diffusion: Float, leffa: Float?, grads: Tensor, peak: Int)] = []
        for on in [false, true] {
            let objective = TrainingObjective(leffa: leffa, activationCheckpointing: on)
            model.parameters.zeroGrads()
            let before = Storage.live.bytes
            Storage.live.resetPeak()
            let l = try objective.loss(model, batch)
            l.total.backward()
            let peak = Storage.live.peakBytes - before
            runs.append((l.total.item, l.diffusion.item, l.leffa?.item, model.parameters.grads!.copy(), peak))
        }
        let (off, on) = (runs[0], runs[1])
        let objective = TrainingObjective(leffa: leffa, activationCheckpointing: true)
        let flows = try GradMode.withoutGrad { try objective.loss(model, objective.input(batch), keepFlows: true).flows }
        XCTAssertEqual(flows.count, UNet2DConditionModel.attentionLayers(model.config.unet).count)
        XCTAssertEqual(on.total.bitPattern, off.total.bitPattern, "loss")
        XCTAssertEqual(on.diffusion.bitPattern, off.diffusion.bitPattern)
        XCTAssertEqual(on.leffa?.bitPattern, off.leffa?.bitPattern)
        var differing: [String] = []
        for p in model.parameters.all {
            let a = off.grads.data + p.offset, b = on.grads.data + p.offset
            if memcmp(a, b, p.count * MemoryLayout<Float>.size) != 0 { differing.append(p.name) }
        }
        XCTAssertEqual(differing, [], "parameters whose gradient bits differ")
        // Both UNets got gradients (a test of nothing would pass too).
        for part in ["unet", "unet_encoder"] {
            let moved = model.parameters(of: part).filter { p in (0..<p.count).contains { off.grads.data[p.offset + $0] != 0 } }.count
            XCTAssertGreaterThan(moved, model.parameters(of: part).count / 2, part)
        }
        XCTAssertLessThan(Double(on.peak), 0.5 * Double(off.peak), "peak activation memory (measured 7.9 vs 24.6 MB)")
    }

    func testConfigKey() throws {
        XCTAssertFalse(try RunConfig.parse(tinyConfig(), source: "t.yaml").activationCheckpointing)
        XCTAssertTrue(try RunConfig.parse(tinyConfig(training: "  activation_checkpointing: true"), source: "t.yaml").activationCheckpointing)
        let msg = errorMessage { _ = try RunConfig.parse(tinyConfig(training: "  activation_checkpointing: sometimes"), source: "t.yaml") }
        XCTAssertTrue(msg.contains("t.yaml: field training.activation_checkpointing: expected true or false, got sometimes"), msg)
    }

    /// Three steps with gradient accumulation and the Leffa loss: the same weights, AdamW moments
    /// and EMA, bit for bit.
    func testTrainerRunIsBitIdentical() throws {
        let stage = "  - {name: s0, resolution: 16x16, steps: 3, batch: 4, grad_accum: 2, lr: 2.0e-3, "
            + "leffa: {weight: 1.0, timestep_threshold: 1000, min_resolution_fraction: 0.0}}"
        var trainers: [Trainer] = []
        for on in [false, true] {
            let cfg = tinyConfig(stages: stage, training: "  activation_checkpointing: \(on)")
            let t = try quietTrainer(try makeRun(self, config: cfg, tag: "ckpt-\(on)"))
            XCTAssertEqual(t.config.activationCheckpointing, on)
            XCTAssertEqual(try t.train(), .stageFinished(next: nil))
            trainers.append(t)
        }
        let (off, on) = (trainers[0], trainers[1])
        XCTAssertTrue(sameBits(on.model.parameters.values!, off.model.parameters.values!), "weights")
        XCTAssertTrue(sameBits(on.optimizer.m, off.optimizer.m), "AdamW m")
        XCTAssertTrue(sameBits(on.optimizer.v, off.optimizer.v), "AdamW v")
        XCTAssertTrue(sameBits(on.ema!, off.ema!), "EMA")
        let initial = try LeffaModel(config: off.config.model, seed: off.config.seed)
        XCTAssertFalse(sameBits(initial.parameters.values!, on.model.parameters.values!), "the weights moved")
    }
}
