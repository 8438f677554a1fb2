import XCTest
import Foundation
@testable import LeffaTensor
@testable import TestSupport

/// Double bilinear resize written from the PyTorch definition (align_corners=False, half-pixel
/// centres, source clamped below at 0, upper neighbour clamped to the last pixel).
private func resizeBilinearReference(_ x: Tensor, _ Ho: Int, _ Wo: Int) -> [Float] {
    let (P, H, W) = (x.shape[0] * x.shape[1], x.shape[2], x.shape[3])
    func taps(_ d: Int, _ n: Int, _ m: Int) -> (Int, Int, Double) {
        let src = max((Double(d) + 0.5) * Double(n) / Double(m) - 0.5, 0)
        let i0 = min(Int(src.rounded(.down)), n - 1)
        return (i0, min(i0 + 1, n - 1), min(src - Double(i0), 1))
    }
    var out: [Float] = []
    for p in 0..<P {
        for i in 0..<Ho {
            let (y0, y1, ly) = taps(i, H, Ho)
            for j in 0..<Wo {
                let (x0, x1, lx) = taps(j, W, Wo)
                func v(_ y: Int, _ xx: Int) -> Double { Double(x[(p * H + y) * W + xx]) }
                out.append(Float((1 - ly) * ((1 - lx) * v(y0, x0) + lx * v(y0, x1)) + ly * ((1 - lx) * v(y1, x0) + lx * v(y1, x1))))
            }
        }
    }
    return out
}

/// Double grid_sample (bilinear, zeros padding, align_corners=True) from the PyTorch definition.
private func gridSampleReference(_ input: [Double], _ shape: [Int], _ grid: [Double], _ Ho: Int, _ Wo: Int) -> [Double] {
    let (B, C, H, W) = (shape[0], shape[1], shape[2], shape[3])
    var out: [Double] = []
    for b in 0..<B {
        for c in 0..<C {
            func v(_ y: Int, _ x: Int) -> Double {
                (0..<H).contains(y) && (0..<W).contains(x) ? input[((b * C + c) * H + y) * W + x] : 0
            }
            for k in 0..<(Ho * Wo) {
                let gx = grid[(b * Ho * Wo + k) * 2], gy = grid[(b * Ho * Wo + k) * 2 + 1]
                let ix = (gx + 1) / 2 * Double(W - 1), iy = (gy + 1) / 2 * Double(H - 1)
                let x0 = Int(ix.rounded(.down)), y0 = Int(iy.rounded(.down))
                let tx = ix - Double(x0), ty = iy - Double(y0)
                out.append((1 - tx) * (1 - ty) * v(y0, x0) + tx * (1 - ty) * v(y0, x0 + 1)
                           + (1 - tx) * ty * v(y0 + 1, x0) + tx * ty * v(y0 + 1, x0 + 1))
            }
        }
    }
    return out
}

/// A grid (B, Ho, Wo, 2) whose pixel positions are integer + [0.15, 0.85] (away from the bilinear
/// kinks, so finite differences are valid), from 2 pixels before the image to 1 after it: some
/// points are fully outside, some have corners outside, most are inside.
private func offIntegerGrid(_ B: Int, _ Ho: Int, _ Wo: Int, H: Int, W: Int, seed: UInt64) -> Tensor {
    let g = Tensor(zeros: [B, Ho, Wo, 2])
    for k in 0..<(B * Ho * Wo) {
        for (a, n) in [(0, W), (1, H)] {
            let u = CounterRNG.uniform(seed, UInt64(2 * k + a)), f = CounterRNG.uniform(seed &+ 1, UInt64(2 * k + a))
            let pixel = Float(Int(u * Float(n + 3)) - 2) + 0.15 + 0.7 * f
            g[2 * k + a] = 2 * pixel / Float(n - 1) - 1
        }
    }
    return g
}

final class ResampleTests: XCTestCase {
    func testNearestIndicesFollowPyTorch() {
        // F.interpolate(mode='nearest'): 3 → 8 and 5 → 3.
        XCTAssertEqual(nearestSourceIndices(input: 3, output: 8), [0, 0, 0, 1, 1, 1, 2, 2])
        XCTAssertEqual(nearestSourceIndices(input: 5, output: 3), [0, 1, 3])
        let x = Tensor((0..<15).map(Float.init), shape: [1, 1, 3, 5])
        XCTAssertEqual(resizeNearest(x, size: (2, 3)).scalars, [0, 1, 3, 5, 6, 8])
    }

    func testUpsampleNearestValues() {
        let x = Tensor([1, 2, 3, 4], shape: [1, 1, 2, 2])
        XCTAssertEqual(upsampleNearest(x, scale: 2).scalars, [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4])
        let y = Tensor.randn([2, 3, 5, 4], seed: 1)
        for s in [1, 2, 3] {
            let a = upsampleNearest(y, scale: s), b = resizeNearest(y, size: (5 * s, 4 * s))
            XCTAssertEqual(a.shape, [2, 3, 5 * s, 4 * s])
            XCTAssertEqual(a.scalars, b.scalars, "scale \(s)")
        }
    }

    func testBilinearKnownValues() {
        // torch.nn.functional.interpolate([[1, 2], [3, 4]], size=(4, 4), mode='bilinear', align_corners=False).
        let x = Tensor([1, 2, 3, 4], shape: [1, 1, 2, 2])
        XCTAssertEqual(resizeBilinear(x, size: (4, 4)).scalars,
                       [1, 1.25, 1.75, 2, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3, 3.25, 3.75, 4])
        // Shrinking by 2 without antialiasing averages pixel pairs.
        let r = Tensor([1, 2, 3, 4], shape: [1, 1, 1, 4])
        XCTAssertEqual(resizeBilinear(r, size: (1, 2)).scalars, [1.5, 3.5])
    }

    func testBilinearMatchesDoubleReference() {
        let x = Tensor.randn([2, 3, 7, 5], seed: 2)
        for (Ho, Wo) in [(16, 11), (3, 4), (7, 5), (7, 12), (1, 1)] {
            let e = worstError(resizeBilinear(x, size: (Ho, Wo)).scalars, resizeBilinearReference(x, Ho, Wo), Tolerances.float32)
            XCTAssertLessThanOrEqual(e.ratio, 1, "\(Ho)×\(Wo): worst at \(e.index)")
        }
    }

    func testResizeGradients() {
        let x = Tensor.randn([2, 2, 4, 5], seed: 3)
        let r1 = checkGradients([x], samples: 40) { upsampleNearest($0[0], scale: 2) }
        XCTAssertTrue(r1.ok, "upsampleNearest: \(r1)")
        let r2 = checkGradients([x], samples: 40) { upsampleNearest($0[0], scale: 3) }
        XCTAssertTrue(r2.ok, "upsampleNearest ×3: \(r2)")
        for (Ho, Wo) in [(9, 7), (3, 2)] {
            let rn = checkGradients([x], samples: 40) { resizeNearest($0[0], size: (Ho, Wo)) }
            XCTAssertTrue(rn.ok, "resizeNearest \(Ho)×\(Wo): \(rn)")
            let rb = checkGradients([x], samples: 40) { resizeBilinear($0[0], size: (Ho, Wo)) }
            XCTAssertTrue(rb.ok, "resizeBilinear \(Ho)×\(Wo): \(rb)")
        }
    }

    func testGridSampleIdentityAndZeroPadding() {
        // Corners at ±1 (align_corners=True): the linspace grid reproduces the input.
        let (H, W) = (5, 7)
        let x = Tensor.randn([2, 3, H, W], seed: 4)
        let g = Tensor(zeros: [2, H, W, 2])
        for b in 0..<2 { for i in 0..<H { for j in 0..<W {
            g[((b * H + i) * W + j) * 2] = -1 + 2 * Float(j) / Float(W - 1)
            g[((b * H + i) * W + j) * 2 + 1] = -1 + 2 * Float(i) / Float(H - 1)
        } } }
        let e = worstError(gridSample(x, g).scalars, x.scalars, Tolerances.float32)
        XCTAssertLessThanOrEqual(e.ratio, 1, "worst at \(e.index)")
        // Far outside reads zeros; half a pixel past the right edge is half the edge pixel.
        let one = Tensor.randn([1, 3, H, W], seed: 12)
        let far = Tensor([3, 0, -1, -4, 1 + 1 / Float(W - 1), -1], shape: [1, 1, 3, 2])
        let y = gridSample(one, far)
        XCTAssertEqual(y.shape, [1, 3, 1, 3])
        for c in 0..<3 {
            XCTAssertEqual(y[3 * c], 0); XCTAssertEqual(y[3 * c + 1], 0)
            XCTAssertEqual(y[3 * c + 2], 0.5 * one[c * H * W + W - 1], accuracy: 1e-6)
        }
    }

    func testGridSampleMatchesDoubleReference() {
        let (B, C, H, W, Ho, Wo) = (2, 3, 6, 7, 5, 4)
        let x = Tensor.randn([B, C, H, W], seed: 5)
        let g = offIntegerGrid(B, Ho, Wo, H: H, W: W, seed: 6)
        let ref = gridSampleReference(x.scalars.map(Double.init), x.shape, g.scalars.map(Double.init), Ho, Wo)
        let y = gridSample(x, g)
        XCTAssertEqual(y.shape, [B, C, Ho, Wo])
        let e = worstError(y.scalars, ref.map { Float($0) }, Tolerances.float32)
        XCTAssertLessThanOrEqual(e.ratio, 1, "worst at \(e.index)")
        XCTAssertTrue(ref.contains(0) && ref.contains { $0 != 0 }, "the grid should reach outside and inside")
    }

    func testGridSampleGradients() {
        let (B, C, H, W, Ho, Wo) = (2, 3, 5, 6, 4, 5)
        let x = Tensor.randn([B, C, H, W], seed: 7)
        let g = offIntegerGrid(B, Ho, Wo, H: H, W: W, seed: 8)
        let r = checkGradients([x, g], samples: 60) { gridSample($0[0], $0[1]) }
        XCTAssertTrue(r.ok, "\(r)")

        // The grid gradient against central differences of the Double reference (eps 1e-5 in grid
        // units, far from any kink): much tighter than the float check above.
        let xs = x.scalars.map(Double.init), gs = g.scalars.map(Double.init)
        let gOut = Tensor.randn([B, C, Ho, Wo], seed: 9)
        let gx = g.copy().requiringGrad()
        gridSample(x, gx).backward(gOut)
        func loss(_ grid: [Double]) -> Double {
            zip(gridSampleReference(xs, x.shape, grid, Ho, Wo), gOut.scalars).map { $0 * Double($1) }.reduce(0, +)
        }
        var analytic: [Float] = [], numeric: [Float] = []
        for k in 0..<gs.count {
            var p = gs, m = gs
            p[k] += 1e-5; m[k] -= 1e-5
            numeric.append(Float((loss(p) - loss(m)) / 2e-5))
            analytic.append(gx.grad![k])
        }
        let e = worstError(analytic, numeric, Tolerance(rtol: 1e-4, atol: 1e-4, why: "float backward vs Double differences"))
        XCTAssertLessThanOrEqual(e.ratio, 1, "grid gradient worst at \(e.index): \(analytic[e.index]) vs \(numeric[e.index])")
    }

    func testBackwardCapturesNoCopies() {
        let x = Tensor.randn([2, 3, 5, 6], seed: 13), g = offIntegerGrid(2, 4, 5, H: 5, W: 6, seed: 14)
        XCTAssertEqual(opsExtraRetainedBytes([x]) { upsampleNearest($0[0], scale: 2) }, 0)
        XCTAssertEqual(opsExtraRetainedBytes([x]) { resizeNearest($0[0], size: (7, 3)) }, 0)
        XCTAssertEqual(opsExtraRetainedBytes([x]) { resizeBilinear($0[0], size: (7, 3)) }, 0)
        XCTAssertEqual(opsExtraRetainedBytes([x, g]) { gridSample($0[0], $0[1]) }, 0)
    }

    func testResampleIsThreadCountInvariant() {
        let x = Tensor.randn([2, 4, 40, 30], seed: 10)
        opsRunsBitIdentical([x]) { upsampleNearest($0[0], scale: 2) }
        opsRunsBitIdentical([x]) { resizeNearest($0[0], size: (64, 48)) }
        opsRunsBitIdentical([x]) { resizeNearest($0[0], size: (17, 13)) }
        opsRunsBitIdentical([x]) { resizeBilinear($0[0], size: (96, 64)) }
        opsRunsBitIdentical([x]) { resizeBilinear($0[0], size: (17, 13)) }
        let g = offIntegerGrid(2, 50, 36, H: 40, W: 30, seed: 11)
        opsRunsBitIdentical([x, g]) { gridSample($0[0], $0[1]) }
    }
}
