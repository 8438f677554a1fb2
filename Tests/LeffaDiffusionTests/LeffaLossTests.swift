// The Leffa loss around its fused warp (LeffaTensorTests' FlowWarpLossTests test the warp itself):
// the config's file keys and defaults, the layer selection's rounding of the token grid, the flow
// field as the mean over heads, and the timestep gate with the batch mean. Against the published
// model's losses: LeffaModelTests' GoldenTests.
import XCTest
import Foundation
import LeffaTensor
import LeffaLayers
import LeffaDiffusion
import TestSupport

final class LeffaLossTests: XCTestCase {
    func testConfigKeysAndDefaults() throws {
        let dir = try scratchDirectory(self)
        let file = dir.appendingPathComponent("run.json")
        let json = #"{"leffa": {"tau": 1.5, "leffa_weight": 0.01, "flow_layers": ["up_blocks.1.attentions.0"]}, "#
            + #""seed": 3}"#
        try Data(json.utf8).write(to: file)
        let c = try LeffaLossConfig.load(path: file.path)
        var want = LeffaLossConfig()
        want.tau = 1.5; want.weight = 0.01; want.layers = ["up_blocks.1.attentions.0"]
        XCTAssertEqual(c, want)
        // The defaults: τ 2, λ 1e-3, gate at t ≥ 500, layers of at least 1/32 of the image.
        let d = LeffaLossConfig()
        XCTAssertEqual([d.tau, d.weight, d.minResolutionFraction], [2, 1e-3, 1.0 / 32])
        XCTAssertEqual(d.timestepThreshold, 500)
        XCTAssertNil(d.layers)
        // Top-level keys when there is no `leffa:` section.
        try Data(#"{"timestep_threshold": 250, "min_resolution_fraction": 0.0625}"#.utf8).write(to: file)
        let top = try LeffaLossConfig.load(path: file.path)
        XCTAssertEqual(top.timestepThreshold, 250)
        XCTAssertEqual(top.minResolutionFraction, 0.0625)
        XCTAssertThrowsError(try LeffaLossConfig.load(path: dir.appendingPathComponent("none.json").path)) { e in
            XCTAssertTrue("\(e)".contains("none.json"), "\(e)")
        }
    }

    /// Each stride-2 downsampler takes ⌈n/2⌉ rows: a latent of 11 rows gives grids 11, 6, 3, 2 at
    /// factors 1, 2, 4, 8; with an 88-row image the 1/32 cut (2.75 rows) keeps the first three,
    /// with 176 rows (cut 5.5) the first two. Rounding down (11, 5, 2, 1) would drop one more.
    func testLayerSelectionRoundsTheGridUp() {
        let all = [("f1", 1), ("f2", 2), ("f4", 4), ("f8", 8)].map { (name: $0.0, factor: $0.1) }
        XCTAssertEqual(LeffaLossConfig().selectLayers(all, latentHeight: 11, imageHeight: 88), ["f1", "f2", "f4"])
        XCTAssertEqual(LeffaLossConfig().selectLayers(all, latentHeight: 11, imageHeight: 176), ["f1", "f2"])
        var explicit = LeffaLossConfig()
        explicit.layers = ["f8"]
        XCTAssertEqual(explicit.selectLayers(all, latentHeight: 11, imageHeight: 88), ["f8"])
    }

    func testFlowFieldIsTheMeanOverHeads() {
        // (B 1, n 2 = 1×2 grid, 2 heads · (x, y)).
        let flow = Tensor([0.1, 0.2, 0.3, 0.6, -1, 1, 0, 0.5], shape: [1, 2, 4])
        let field = flowField(AttentionProbe(layer: "l", flow: flow, heads: 2, height: 1, width: 2, tau: 2))
        XCTAssertEqual(field.shape, [1, 1, 2, 2])
        let want: [Float] = [0.2, 0.4, -0.5, 0.75]
        for i in 0..<4 { XCTAssertEqual(field[i], want[i], accuracy: 1e-7, "element \(i)") }
    }

    /// The loss is the batch mean of gate · Σ_layers flowWarpLoss, the gate 0 from the threshold on.
    func testTimestepGateAndBatchMean() {
        let (b, h, w, heads) = (3, 4, 6, 2)
        let ref = Tensor.uniform([b, 3, 8, 12], seed: 1, in: -1...1)
        let tgt = Tensor.uniform([b, 3, 8, 12], seed: 2, in: -1...1)
        let mask = Tensor(repeating: 1, shape: [b, 1, 8, 12])
        // Two layers: the identity grid and a shifted one, the same for every head.
        let grid = coordinateValues(batch: b, height: h, width: w, heads: heads)
        let moved = grid.scalars.enumerated().map { $0.element + ($0.offset % 2 == 0 ? 0.3 : -0.2) }
        let shifted = Tensor(moved, shape: grid.shape)
        let probes = [grid, shifted].enumerated().map {
            AttentionProbe(layer: "l\($0.offset)", flow: $0.element, heads: heads, height: h, width: w, tau: 2)
        }
        let perLayer = probes.map { flowWarpLoss(flow: flowField($0), reference: ref, target: tgt, mask: mask).scalars }
        let perSample = (0..<b).map { perLayer[0][$0] + perLayer[1][$0] }
        func loss(_ t: [Int], keep: Bool = false) -> LeffaLossResult {
            let config = LeffaLossConfig()
            return leffaLoss(probes, refImage: ref, tgtImage: tgt, mask: mask, timesteps: t, config: config, keep: keep)
        }
        let result = loss([499, 500, 10])
        XCTAssertEqual(result.loss.count, 1)
        XCTAssertEqual(result.loss[0], (perSample[0] + perSample[2]) / 3, accuracy: 1e-6, "t = 499 and 10 count")
        XCTAssertTrue(result.flows.isEmpty && result.warped.isEmpty, "flows kept only when asked")
        XCTAssertEqual(loss([500, 999, 700]).loss[0], 0)
        let kept = loss([0, 0, 0], keep: true)
        XCTAssertEqual(kept.loss[0], perSample.reduce(0, +) / 3, accuracy: 1e-6)
        XCTAssertEqual(kept.flows.map(\.layer), ["l0", "l1"])
        XCTAssertEqual(kept.warped.map(\.image.shape), [[b, 3, 8, 12], [b, 3, 8, 12]])
        XCTAssertGreaterThan(perSample.min()!, 0, "the test needs every sample to have a loss")
    }
}
