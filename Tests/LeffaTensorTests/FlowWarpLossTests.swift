import XCTest
import Foundation
@testable import LeffaTensor
@testable import TestSupport

/// The chain `flowWarpLoss` replaces, from the existing ops (SPEC §3 steps 4–6).
private func unfusedWarpLoss(_ flow: Tensor, _ ref: Tensor, _ tgt: Tensor, _ mask: Tensor) -> Tensor {
    let grid = resizeBilinear(flow.permuted([0, 3, 1, 2]), size: (ref.shape[2], ref.shape[3])).permuted([0, 2, 3, 1])
    let diff = (tgt - gridSample(ref, grid)) * mask
    return mean(diff * diff, axes: [1, 2, 3])
}

/// Inputs of one case: flow partly outside [−1, 1], images in [−1, 1], a mask with zeros
/// (about 30 %), ones and fractions.
private func warpCase(B: Int, C: Int, h: Int, w: Int, H: Int, W: Int, seed: UInt64) -> (Tensor, Tensor, Tensor, Tensor) {
    let flow = Tensor.uniform([B, h, w, 2], seed: seed, in: -1.3...1.3)
    let ref = Tensor.uniform([B, C, H, W], seed: seed &+ 1, in: -1...1)
    let tgt = Tensor.uniform([B, C, H, W], seed: seed &+ 2, in: -1...1)
    let mask = Tensor.uniform([B, 1, H, W], seed: seed &+ 3)
    for k in 0..<mask.count { let u = mask[k]; mask[k] = u < 0.3 ? 0 : (u > 0.6 ? 1 : u) }
    return (flow, ref, tgt, mask)
}

final class FlowWarpLossTests: XCTestCase {
    /// (B, C, h, w, H, W): upsampling by non-integer factors, identity size, shrinking, one row.
    let shapes: [(Int, Int, Int, Int, Int, Int)] = [
        (2, 3, 4, 3, 11, 7), (1, 2, 5, 5, 10, 10), (3, 3, 3, 2, 8, 6), (2, 3, 6, 5, 4, 3),
        (2, 1, 7, 6, 7, 6), (1, 3, 1, 4, 5, 9),
    ]

    func testValuesAndFlowGradientMatchUnfusedChain() {
        for (n, (B, C, h, w, H, W)) in shapes.enumerated() {
            let (flow, ref, tgt, mask) = warpCase(B: B, C: C, h: h, w: w, H: H, W: W, seed: 100 + UInt64(n) * 10)
            let seed = Tensor.randn([B], seed: 55 + UInt64(n))
            let f1 = flow.copy().requiringGrad(), f2 = flow.copy().requiringGrad()
            let fused = flowWarpLoss(flow: f1, reference: ref, target: tgt, mask: mask)
            let chain = unfusedWarpLoss(f2, ref, tgt, mask)
            XCTAssertEqual(fused.shape, [B])
            let ev = worstError(fused.scalars, chain.scalars, Tolerances.float32)
            XCTAssertLessThanOrEqual(ev.ratio, 1, "shape \(n): loss \(fused.scalars) vs \(chain.scalars)")
            fused.backward(seed); chain.backward(seed)
            let ga = f1.grad!.scalars, gb = f2.grad!.scalars
            XCTAssertGreaterThan(ga.map(abs).max()!, 1e-3, "shape \(n): gradient should not vanish")
            let scale = gb.map(abs).max()!
            let eg = worstError(ga, gb, Tolerance(rtol: 1e-5, atol: 1e-6 * scale, why: "same formulas, different summation order"))
            XCTAssertLessThanOrEqual(eg.ratio, 1, "shape \(n): flow gradient at \(eg.index): \(ga[eg.index]) vs \(gb[eg.index])")
        }
    }

    func testZeroMaskGivesZeroLossAndGradient() {
        let (flow, ref, tgt, _) = warpCase(B: 2, C: 3, h: 4, w: 3, H: 9, W: 7, seed: 3)
        let f = flow.copy().requiringGrad()
        let y = flowWarpLoss(flow: f, reference: ref, target: tgt, mask: Tensor(zeros: [2, 1, 9, 7]))
        XCTAssertEqual(y.scalars, [0, 0])
        y.backward(Tensor([1, -2], shape: [2]))
        XCTAssertTrue(f.grad!.scalars.allSatisfy { $0 == 0 })
    }

    /// Central differences on every flow entry. The loss has kinks where an upsampled grid point
    /// crosses a pixel line, so the seed is chosen (deterministically) such that no point lies
    /// within reach of one under the perturbation.
    func testFlowGradientFiniteDifferences() {
        let (B, C, h, w, H, W) = (2, 3, 4, 3, 9, 7), eps: Float = 5e-4
        let reach = 2 * eps * Float(max(H, W) - 1) / 2
        var picked: (Tensor, Tensor, Tensor, Tensor)? = nil
        for s in 0..<400 {
            let c = warpCase(B: B, C: C, h: h, w: w, H: H, W: W, seed: 1000 + UInt64(s) * 7)
            let grid = resizeBilinear(c.0.permuted([0, 3, 1, 2]), size: (H, W))   // (B, 2, H, W)
            var clear = true
            for k in 0..<grid.count {
                let isX = (k / (H * W)) % 2 == 0
                let pos = (grid[k] + 1) / 2 * Float((isX ? W : H) - 1)
                if abs(pos - pos.rounded()) < reach { clear = false; break }
            }
            if clear { picked = c; break }
        }
        guard let (flow, ref, tgt, mask) = picked else { return XCTFail("no kink-free seed found") }
        let r = checkGradients([flow], samples: flow.count, eps: eps) {
            flowWarpLoss(flow: $0[0], reference: ref, target: tgt, mask: mask)
        }
        XCTAssertTrue(r.ok, r.description)
    }

    func testThreadCountInvariant() {
        let (flow, ref, tgt, mask) = warpCase(B: 2, C: 3, h: 9, w: 7, H: 96, W: 64, seed: 77)
        opsRunsBitIdentical([flow, ref, tgt, mask]) { flowWarpLoss(flow: $0[0], reference: $0[1], target: $0[2], mask: $0[3]) }
    }

    /// Backward keeps the flow-sized Jacobian and nothing image-sized.
    func testBackwardKeepsOnlyAFlowSizedTensor() {
        let (flow, ref, tgt, mask) = warpCase(B: 2, C: 3, h: 4, w: 3, H: 9, W: 7, seed: 5)
        XCTAssertEqual(opsExtraRetainedBytes([flow]) {
            flowWarpLoss(flow: $0[0], reference: ref, target: tgt, mask: mask)
        }, flow.count * MemoryLayout<Float>.stride)
    }

    /// Without a graph the loss is the same, bit for bit (the gradient work does not change it).
    func testValueSameWithoutGrad() {
        let (flow, ref, tgt, mask) = warpCase(B: 2, C: 3, h: 5, w: 4, H: 13, W: 11, seed: 9)
        let a = flowWarpLoss(flow: flow.copy().requiringGrad(), reference: ref, target: tgt, mask: mask)
        let b = GradMode.withoutGrad { flowWarpLoss(flow: flow.copy().requiringGrad(), reference: ref, target: tgt, mask: mask) }
        XCTAssertEqual(a.scalars.map(\.bitPattern), b.scalars.map(\.bitPattern))
        XCTAssertNil(b.producer)
    }
}
