import XCTest
import Foundation
@testable import LeffaTensor
@testable import TestSupport

/// diffusers `get_timestep_embedding` in Double. `floatSteps` rounds to float where torch's float32
/// tensors do (−ln P, its product with i, the division, exp, t·f); sin and cos stay in Double.
private func embeddingReference(_ t: [Float], dim: Int, flip: Bool, shift: Double, maxPeriod: Double, floatSteps: Bool) -> [[Double]] {
    let half = dim / 2
    func r(_ v: Double) -> Double { floatSteps ? Double(Float(v)) : v }
    let negLog = r(-Foundation.log(maxPeriod))
    let freq = (0..<half).map { i in r(Foundation.exp(r(r(negLog * Double(i)) / r(Double(half) - shift)))) }
    return t.map { tb in
        let args = freq.map { r(Double(tb) * $0) }
        let s = args.map { Foundation.sin($0) }, c = args.map { Foundation.cos($0) }
        return (flip ? c + s : s + c) + (dim % 2 == 1 ? [0] : [])
    }
}

final class EmbeddingTests: XCTestCase {
    let timesteps: [Float] = [0, 1, 17, 250, 499, 500, 999]

    func testMatchesFloatStepReference() {
        // Same rounding points as torch: only sin/cos rounding remains (≤ 1 ulp of a value ≤ 1).
        for (dim, flip, shift) in [(320, true, 0.0), (320, false, 0.0), (64, true, 1.0), (33, true, 0.0)] {
            let e = timestepEmbedding(timesteps, dim: dim, flipSinToCos: flip, downscaleFreqShift: Float(shift))
            XCTAssertEqual(e.shape, [timesteps.count, dim])
            let ref = embeddingReference(timesteps, dim: dim, flip: flip, shift: shift, maxPeriod: 10000, floatSteps: true)
            let w = worstError(e.scalars, ref.flatMap { $0.map { Float($0) } }, Tolerance(rtol: 0, atol: 2e-7, why: "float sin/cos"))
            XCTAssertLessThanOrEqual(w.ratio, 1, "dim \(dim) flip \(flip) shift \(shift): worst at \(w.index)")
        }
    }

    func testCloseToExactFormula() {
        // Against pure Double: the float argument t·f (|t·f| < 1000) is off by up to ~1e-4 from the exact
        // one; torch's float32 path has the same error, which is why the other test is the tight one.
        let e = timestepEmbedding(timesteps, dim: 320)
        let ref = embeddingReference(timesteps, dim: 320, flip: true, shift: 0, maxPeriod: 10000, floatSteps: false)
        let w = worstError(e.scalars, ref.flatMap { $0.map { Float($0) } }, Tolerance(rtol: 0, atol: 2e-4, why: "float argument rounding"))
        XCTAssertLessThanOrEqual(w.ratio, 1, "worst at \(w.index)")
    }

    func testLayout() {
        // t = 0: cos half is 1, sin half is 0; cos comes first when flipped.
        let flipped = timestepEmbedding([0], dim: 8).scalars
        XCTAssertEqual(flipped, [1, 1, 1, 1, 0, 0, 0, 0])
        let plain = timestepEmbedding([0], dim: 8, flipSinToCos: false).scalars
        XCTAssertEqual(plain, [0, 0, 0, 0, 1, 1, 1, 1])
        // Odd dim: a zero last column. Frequency 0 is 1, so column 0 is cos(t) when flipped.
        let odd = timestepEmbedding([3, 7], dim: 9)
        XCTAssertEqual(odd.shape, [2, 9])
        XCTAssertEqual(odd[8], 0); XCTAssertEqual(odd[17], 0)
        XCTAssertEqual(odd[0], Foundation.cos(3), accuracy: 1e-7)
        XCTAssertEqual(odd[4], Foundation.sin(3), accuracy: 1e-7)
        // maxPeriod and shift: with shift 1 the last frequency is exactly 1/maxPeriod.
        let last = timestepEmbedding([100], dim: 4, flipSinToCos: false, downscaleFreqShift: 1, maxPeriod: 100).scalars
        XCTAssertEqual(last[1], Foundation.sin(1), accuracy: 1e-6)
        XCTAssertEqual(last[3], Foundation.cos(1), accuracy: 1e-6)
    }
}
