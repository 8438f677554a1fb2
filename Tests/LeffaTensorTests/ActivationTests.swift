import XCTest
import Foundation
@testable import LeffaTensor
@testable import TestSupport

/// Float activations against Double formulas: a few float roundings (≈ 2e-7 relative) plus the
/// absolute error of float erf/exp where 1 + erf(x/√2) cancels for x ≪ 0 (≈ 1e-7 absolute).
/// The tanh approximation of GELU is off by up to 5e-4, far outside this.
private let activationTolerance = Tolerance(rtol: 1e-6, atol: 3e-7, why: "float activations vs Double formula")

private func silu(_ v: Double) -> Double { v / (1 + Foundation.exp(-v)) }
private func gelu(_ v: Double) -> Double { 0.5 * v * (1 + Foundation.erf(v / 2.0.squareRoot())) }

/// Double softmax along `dim` of a row-major tensor.
private func softmaxReference(_ x: Tensor, dim d: Int) -> [Float] {
    let outer = x.shape[..<d].reduce(1, *), n = x.shape[d], inner = x.shape[(d + 1)...].reduce(1, *)
    var out = [Float](repeating: 0, count: x.count)
    for o in 0..<outer {
        for j in 0..<inner {
            let idx = (0..<n).map { (o * n + $0) * inner + j }
            let m = idx.map { Double(x[$0]) }.max()!
            let e = idx.map { Foundation.exp(Double(x[$0]) - m) }
            let s = e.reduce(0, +)
            for (k, i) in idx.enumerated() { out[i] = Float(e[k] / s) }
        }
    }
    return out
}

final class ActivationTests: XCTestCase {
    func testSiluAndGeluMatchFormulas() {
        let x = Tensor.randn([4, 1000], seed: 1, scale: 4)
        let s = silu(x), g = gelu(x)
        let es = worstError(s.scalars, x.scalars.map { Float(silu(Double($0))) }, activationTolerance)
        let eg = worstError(g.scalars, x.scalars.map { Float(gelu(Double($0))) }, activationTolerance)
        XCTAssertLessThanOrEqual(es.ratio, 1, "silu worst at x = \(x[es.index])")
        XCTAssertLessThanOrEqual(eg.ratio, 1, "gelu worst at x = \(x[eg.index])")
        // Known values of the exact GELU (x·Φ(x)); tanh-GELU(1) = 0.841192 would fail.
        let known = gelu(Tensor([1, -1, 0.5, 0, 3], shape: [5])).scalars
        let expected: [Float] = [0.8413447460685429, -0.15865525393145707, 0.34573123063700656, 0, 2.9959502]
        for (a, b) in zip(known, expected) { XCTAssertEqual(a, b, accuracy: 1e-6) }
        // Extremes: no NaN or overflow.
        let ext = Tensor([-100, 100, -20, 20], shape: [4])
        XCTAssertEqual(silu(ext).scalars.map { $0.isFinite }, [true, true, true, true])
        XCTAssertEqual(gelu(ext).scalars, [-0, 100, -0, 20])
    }

    /// GELU's Φ and φ: relative error under 3e-6 for |x| ≤ 5, and in the lower tail (where
    /// 1 + erf(x) would cancel to 0) under 3e-5 down to −13, where x²/2 rounded to float sets the
    /// limit; lanes and tails alike, exact limits.
    func testNormalCDFAndDensity() {
        for (lo, hi, bound) in [(-5.0, 5.0, 3e-6), (-13.0, 9.0, 3e-5)] {
            var worstCDF = 0.0, worstPDF = 0.0, at = 0.0
            var x = lo
            while x <= hi {
                let v = FastMath.normal(FastMath.Vector(repeating: Float(x)))
                let xf = Double(Float(x))
                let cdf = 0.5 * Foundation.erfc(-xf / 2.0.squareRoot()), pdf = Foundation.exp(-xf * xf / 2) / (2 * Double.pi).squareRoot()
                let e = abs(Double(v.cdf[3]) / cdf - 1)
                if e > worstCDF { worstCDF = e; at = xf }
                worstPDF = max(worstPDF, abs(Double(v.pdf[5]) / pdf - 1))
                x += 0.00731
            }
            XCTAssertLessThan(worstCDF, bound, "Φ on [\(lo), \(hi)] worst at x = \(at)")
            XCTAssertLessThan(worstPDF, bound, "φ on [\(lo), \(hi)]")
        }
        let limits = FastMath.normal(FastMath.Vector([-100, 100, 0, -0.0, 40, -40, .infinity, -.infinity]))
        XCTAssertEqual(limits.cdf, FastMath.Vector([0, 1, 0.5, 0.5, 1, 0, 1, 0]))
        // A buffer whose length is not a multiple of the lane count: the tail gets the same bits.
        let xs = (0..<13).map { Float($0) * 0.37 - 2 }
        var out = [Float](repeating: 0, count: 13)
        xs.withUnsafeBufferPointer { p in out.withUnsafeMutableBufferPointer { FastMath.map(p.baseAddress!, $0.baseAddress!, count: 13) { FastMath.normal($0).cdf } } }
        for (i, v) in xs.enumerated() { XCTAssertEqual(out[i], FastMath.normal(FastMath.Vector(repeating: v)).cdf[0], "element \(i)") }
    }

    func testActivationGradients() {
        let x = Tensor.randn([3, 7], seed: 2, scale: 2)
        let r1 = checkGradients([x]) { silu($0[0]) }
        XCTAssertTrue(r1.ok, "silu: \(r1)")
        let r2 = checkGradients([x]) { gelu($0[0]) }
        XCTAssertTrue(r2.ok, "gelu: \(r2)")
        let h = Tensor.randn([2, 3, 10], seed: 3, scale: 2)
        let r3 = checkGradients([h], samples: 40) { geglu($0[0]) }
        XCTAssertTrue(r3.ok, "geglu: \(r3)")
    }

    func testActivationDerivativesMatchFormulas() {
        // Backward against the Double derivatives (tighter than finite differences).
        let x = Tensor.randn([2000], seed: 4, scale: 4)
        func grad(_ f: (Tensor) -> Tensor) -> [Float] {
            let v = x.copy().requiringGrad()
            f(v).backward(Tensor(repeating: 1, shape: [2000]))
            return v.grad!.scalars
        }
        let ds = x.scalars.map { v -> Float in
            let s = 1 / (1 + Foundation.exp(-Double(v))); return Float(s * (1 + Double(v) * (1 - s)))
        }
        let dg = x.scalars.map { v -> Float in
            let d = Double(v); return Float(0.5 * (1 + Foundation.erf(d / 2.0.squareRoot())) + d * Foundation.exp(-0.5 * d * d) / (2 * Double.pi).squareRoot())
        }
        XCTAssertLessThanOrEqual(worstError(grad(silu), ds, activationTolerance).ratio, 1)
        XCTAssertLessThanOrEqual(worstError(grad(gelu), dg, activationTolerance).ratio, 1)
    }

    func testGegluSplitsValueThenGate() {
        // Last dim 2D: first half is the value, second half the gate (diffusers GEGLU).
        let x = Tensor.randn([2, 3, 8], seed: 5, scale: 2)
        let y = geglu(x)
        XCTAssertEqual(y.shape, [2, 3, 4])
        var expected: [Float] = []
        for row in 0..<6 {
            for j in 0..<4 { expected.append(Float(Double(x[row * 8 + j]) * gelu(Double(x[row * 8 + 4 + j])))) }
        }
        XCTAssertLessThanOrEqual(worstError(y.scalars, expected, activationTolerance).ratio, 1)
    }

    func testSoftmaxMatchesDoubleReference() {
        // 70 columns: one full 64-column tile and a partial one when dim is not the last.
        let x = Tensor.randn([3, 5, 70], seed: 6, scale: 3)
        for dim in [-1, 0, 1, 2] {
            let d = dim < 0 ? 3 + dim : dim
            let e = worstError(softmax(x, dim: dim).scalars, softmaxReference(x, dim: d), Tolerances.float32)
            XCTAssertLessThanOrEqual(e.ratio, 1, "dim \(dim): worst at \(e.index)")
        }
        // Shifting the input does not change the result, and large inputs do not overflow.
        let big = softmax(x + 1000, dim: -1).scalars
        XCTAssertLessThanOrEqual(worstError(big, softmaxReference(x, dim: 2), Tolerances.float32).ratio, 1)
        let rowSums = (0..<15).map { r in (0..<70).map { Double(big[r * 70 + $0]) }.reduce(0, +) }
        for s in rowSums { XCTAssertEqual(s, 1, accuracy: 1e-6) }
    }

    func testSoftmaxGradients() {
        let x = Tensor.randn([2, 3, 5], seed: 7)
        for dim in [-1, 1, 0] {
            let r = checkGradients([x], samples: 30) { softmax($0[0], dim: dim) }
            XCTAssertTrue(r.ok, "dim \(dim): \(r)")
        }
    }

    func testBackwardCapturesNoCopies() {
        let x = Tensor.randn([4, 6, 10], seed: 9)
        XCTAssertEqual(opsExtraRetainedBytes([x]) { silu($0[0]) }, 0)
        XCTAssertEqual(opsExtraRetainedBytes([x]) { gelu($0[0]) }, 0)
        XCTAssertEqual(opsExtraRetainedBytes([x]) { geglu($0[0]) }, 0)
        XCTAssertEqual(opsExtraRetainedBytes([x]) { softmax($0[0], dim: 1) }, 0)
    }

    func testActivationsAreThreadCountInvariant() {
        let x = Tensor.randn([64, 1000], seed: 8, scale: 3)
        opsRunsBitIdentical([x]) { silu($0[0]) }
        opsRunsBitIdentical([x]) { gelu($0[0]) }
        opsRunsBitIdentical([x]) { geglu($0[0]) }
        opsRunsBitIdentical([x]) { softmax($0[0], dim: -1) }
        opsRunsBitIdentical([x.reshaped([8, 8, 1000])]) { softmax($0[0], dim: 1) }
    }
}
