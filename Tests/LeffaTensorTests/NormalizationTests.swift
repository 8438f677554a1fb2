import XCTest
@testable import LeffaTensor
@testable import TestSupport

/// Output of a normalisation against a Double reference computed from the same float inputs: relative
/// error below 1e-5 (the brief); outputs are O(1), so atol 1e-6 is on the same scale and covers
/// outputs near 0 where x̂·w and b cancel.
private let normalizationTolerance = Tolerance(rtol: 1e-5, atol: 1e-6, why: "normalisation vs Double reference")

/// Runs `f` on copies of `inputs` with `Parallel.threads` 1 and then 2 (restored afterwards), runs
/// backward with a fixed seed gradient, and fails unless the outputs and every input gradient
/// are bit-identical. Used by the op-family tests in this target.
func opsRunsBitIdentical(_ inputs: [Tensor], file: StaticString = #filePath, line: UInt = #line,
                         _ f: ([Tensor]) -> Tensor) {
    let saved = Parallel.threads
    defer { Parallel.threads = saved }
    var runs: [[[UInt32]]] = []
    for threads in [1, 2] {
        Parallel.threads = threads
        let xs = inputs.map { $0.copy().requiringGrad() }
        let y = f(xs)
        y.backward(Tensor.randn(y.shape, seed: 4242))
        runs.append([y.scalars.map(\.bitPattern)] + xs.map { $0.grad?.scalars.map(\.bitPattern) ?? [] })
    }
    for (k, (a, b)) in zip(runs[0], runs[1]).enumerated() {
        let differing = zip(a, b).filter { $0 != $1 }.count
        XCTAssertTrue(a.count == b.count && differing == 0,
                      "\(k == 0 ? "output" : "gradient of input \(k - 1)"): \(differing) of \(a.count) values differ between 1 and 2 threads",
                      file: file, line: line)
    }
}

/// Tensor bytes an op keeps alive beyond its output once the graph is recorded (inputs needing a
/// gradient): its backward closure's captures. Views of the inputs cost nothing; a copy would.
func opsExtraRetainedBytes(_ inputs: [Tensor], _ f: ([Tensor]) -> Tensor) -> Int {
    let xs = inputs.map { $0.copy().requiringGrad() }
    let before = Storage.live.bytes
    let y = f(xs)
    let extra = Storage.live.bytes - before - y.count * MemoryLayout<Float>.stride
    withExtendedLifetime(y) {}
    return extra
}

/// Double-precision group norm written straight from the PyTorch definition.
private func groupNormDouble(_ x: [Double], _ shape: [Int], groups: Int, weight: [Double]?, bias: [Double]?, eps: Double) -> [Double] {
    let B = shape[0], C = shape[1], S = x.count / (B * C), cpg = C / groups
    var out = [Double](repeating: 0, count: x.count)
    for b in 0..<B {
        for g in 0..<groups {
            let range = ((b * C + g * cpg) * S)..<((b * C + (g + 1) * cpg) * S)
            let m = x[range].reduce(0, +) / Double(range.count)
            let v = x[range].map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(range.count)
            for i in range {
                let c = (i / S) % C
                out[i] = (x[i] - m) / (v + eps).squareRoot() * (weight?[c] ?? 1) + (bias?[c] ?? 0)
            }
        }
    }
    return out
}

private func groupNormReference(_ x: Tensor, groups: Int, weight: Tensor?, bias: Tensor?, eps: Double) -> [Float] {
    groupNormDouble(x.scalars.map(Double.init), x.shape, groups: groups, weight: weight?.scalars.map(Double.init),
                    bias: bias?.scalars.map(Double.init), eps: eps).map { Float($0) }
}

/// Double-precision layer norm over the last dimension.
private func layerNormDouble(_ x: [Double], C: Int, weight: [Double]?, bias: [Double]?, eps: Double) -> [Double] {
    var out = [Double](repeating: 0, count: x.count)
    for r in 0..<(x.count / C) {
        let row = x[(r * C)..<((r + 1) * C)]
        let m = row.reduce(0, +) / Double(C)
        let v = row.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(C)
        for j in 0..<C { out[r * C + j] = (x[r * C + j] - m) / (v + eps).squareRoot() * (weight?[j] ?? 1) + (bias?[j] ?? 0) }
    }
    return out
}

private func layerNormReference(_ x: Tensor, weight: Tensor?, bias: Tensor?, eps: Double) -> [Float] {
    layerNormDouble(x.scalars.map(Double.init), C: x.dim(-1), weight: weight?.scalars.map(Double.init),
                    bias: bias?.scalars.map(Double.init), eps: eps).map { Float($0) }
}

/// Gradients of Σ f(inputs)·R by central differences of a Double function (step 1e-6): accurate to
/// ~1e-8, so a float backward can be held to the golden-gradient tolerance rather than FD's 2e-2.
private func doubleDifferences(_ inputs: [[Double]], weights: [Double], _ f: ([[Double]]) -> [Double]) -> [[Double]] {
    func loss(_ xs: [[Double]]) -> Double { zip(f(xs), weights).map { $0 * $1 }.reduce(0, +) }
    return inputs.indices.map { k in
        inputs[k].indices.map { i in
            var p = inputs, m = inputs
            p[k][i] += 1e-6; m[k][i] -= 1e-6
            return (loss(p) - loss(m)) / 2e-6
        }
    }
}

final class NormalizationTests: XCTestCase {
    func testGroupNormMatchesDoubleReference() {
        // Offset means stress the variance (|mean| ≫ std); odd sizes exercise the SIMD tails.
        let x = Tensor.randn([2, 6, 5, 7], seed: 1, scale: 3) + 4
        let w = Tensor.randn([6], seed: 2), b = Tensor.randn([6], seed: 3)
        for (groups, eps) in [(3, Float(1e-5)), (6, 1e-6), (1, 1e-5)] {
            let y = groupNorm(x, groups: groups, weight: w, bias: b, eps: eps)
            XCTAssertEqual(y.shape, x.shape)
            let e = worstError(y.scalars, groupNormReference(x, groups: groups, weight: w, bias: b, eps: Double(eps)), normalizationTolerance)
            XCTAssertLessThanOrEqual(e.ratio, 1, "groups \(groups): worst at \(e.index)")
        }
        // Without affine parameters, and for (B, C) and (B, C, L) inputs.
        let plain = groupNorm(x, groups: 2, weight: nil, bias: nil, eps: 1e-5)
        XCTAssertLessThanOrEqual(worstError(plain.scalars, groupNormReference(x, groups: 2, weight: nil, bias: nil, eps: 1e-5), normalizationTolerance).ratio, 1)
        let x2 = Tensor.randn([3, 8], seed: 4), x3 = Tensor.randn([2, 8, 9], seed: 5)
        XCTAssertLessThanOrEqual(worstError(groupNorm(x2, groups: 4, weight: nil, bias: nil, eps: 1e-5).scalars,
                                            groupNormReference(x2, groups: 4, weight: nil, bias: nil, eps: 1e-5), normalizationTolerance).ratio, 1)
        XCTAssertLessThanOrEqual(worstError(groupNorm(x3, groups: 2, weight: nil, bias: nil, eps: 1e-5).scalars,
                                            groupNormReference(x3, groups: 2, weight: nil, bias: nil, eps: 1e-5), normalizationTolerance).ratio, 1)
    }

    func testGroupNormAccurateOnLargeGroups() {
        // SD1.5-like group: 10 channels × 64×48 = 30720 elements, mean 100, std 0.5. Summing in float
        // without a shift, or subtracting the mean rounded to float, fails this (ratios ~4 and ~18).
        let x = Tensor.randn([1, 320, 64, 48], seed: 6, scale: 0.5) + 100
        let w = Tensor.randn([320], seed: 7), b = Tensor.randn([320], seed: 8)
        let y = groupNorm(x, groups: 32, weight: w, bias: b, eps: 1e-6)
        let e = worstError(y.scalars, groupNormReference(x, groups: 32, weight: w, bias: b, eps: 1e-6), normalizationTolerance)
        XCTAssertLessThanOrEqual(e.ratio, 1, "worst at \(e.index)")
    }

    func testGroupNormGradients() {
        let x = Tensor.randn([2, 6, 3, 4], seed: 9, scale: 2) + 1
        let w = Tensor.randn([6], seed: 10), b = Tensor.randn([6], seed: 11)
        let r = checkGradients([x, w, b], samples: 40) { groupNorm($0[0], groups: 3, weight: $0[1], bias: $0[2], eps: 1e-5) }
        XCTAssertTrue(r.ok, "\(r)")
        let plain = checkGradients([x]) { groupNorm($0[0], groups: 2, weight: nil, bias: nil, eps: 1e-5) }
        XCTAssertTrue(plain.ok, "\(plain)")
        // Only the parameters need a gradient (the input is a constant).
        let xc = x.copy()
        let params = checkGradients([w, b]) { groupNorm(xc, groups: 6, weight: $0[0], bias: $0[1], eps: 1e-5) }
        XCTAssertTrue(params.ok, "\(params)")
        XCTAssertNil(xc.grad)
    }

    func testGradientsMatchDoubleDifferences() {
        let x = Tensor.randn([2, 4, 3, 5], seed: 31, scale: 2) + 3
        let w = Tensor.randn([4], seed: 32), b = Tensor.randn([4], seed: 33)
        let r = Tensor.randn(x.shape, seed: 34)
        let xs = [x, w, b].map { $0.copy().requiringGrad() }
        groupNorm(xs[0], groups: 2, weight: xs[1], bias: xs[2], eps: 1e-5).backward(r)
        let ref = doubleDifferences([x, w, b].map { $0.scalars.map(Double.init) }, weights: r.scalars.map(Double.init)) {
            groupNormDouble($0[0], x.shape, groups: 2, weight: $0[1], bias: $0[2], eps: 1e-5)
        }
        for k in 0..<3 {
            let e = worstError(xs[k].grad!.scalars, ref[k].map { Float($0) }, Tolerances.goldenGradient)
            XCTAssertLessThanOrEqual(e.ratio, 1, "groupNorm input \(k): worst at \(e.index)")
        }
        let t = Tensor.randn([3, 5, 19], seed: 35, scale: 2) + (-1)
        let lw = Tensor.randn([19], seed: 36), lb = Tensor.randn([19], seed: 37), lr = Tensor.randn(t.shape, seed: 38)
        let ts = [t, lw, lb].map { $0.copy().requiringGrad() }
        layerNorm(ts[0], weight: ts[1], bias: ts[2], eps: 1e-5).backward(lr)
        let lref = doubleDifferences([t, lw, lb].map { $0.scalars.map(Double.init) }, weights: lr.scalars.map(Double.init)) {
            layerNormDouble($0[0], C: 19, weight: $0[1], bias: $0[2], eps: 1e-5)
        }
        for k in 0..<3 {
            let e = worstError(ts[k].grad!.scalars, lref[k].map { Float($0) }, Tolerances.goldenGradient)
            XCTAssertLessThanOrEqual(e.ratio, 1, "layerNorm input \(k): worst at \(e.index)")
        }
    }

    func testLayerNormMatchesDoubleReference() {
        for C in [13, 40, 320] {
            let x = Tensor.randn([3, 7, C], seed: UInt64(12 + C), scale: 2) + (-5)
            let w = Tensor.randn([C], seed: 13), b = Tensor.randn([C], seed: 14)
            let y = layerNorm(x, weight: w, bias: b, eps: 1e-5)
            let e = worstError(y.scalars, layerNormReference(x, weight: w, bias: b, eps: 1e-5), normalizationTolerance)
            XCTAssertLessThanOrEqual(e.ratio, 1, "C \(C): worst at \(e.index)")
            let plain = layerNorm(x, weight: nil, bias: nil, eps: 1e-5)
            XCTAssertLessThanOrEqual(worstError(plain.scalars, layerNormReference(x, weight: nil, bias: nil, eps: 1e-5), normalizationTolerance).ratio, 1)
        }
    }

    func testLayerNormGradients() {
        // 75 rows: three row blocks for the weight/bias sums, the last one partial; C = 13 and 24
        // cover the SIMD body and its tail.
        for C in [13, 24] {
            let x = Tensor.randn([3, 25, C], seed: 15, scale: 2) + 1
            let w = Tensor.randn([C], seed: 16), b = Tensor.randn([C], seed: 17)
            let r = checkGradients([x, w, b], samples: 40) { layerNorm($0[0], weight: $0[1], bias: $0[2], eps: 1e-5) }
            XCTAssertTrue(r.ok, "C \(C): \(r)")
        }
        let x = Tensor.randn([4, 10], seed: 18)
        let plain = checkGradients([x]) { layerNorm($0[0], weight: nil, bias: nil, eps: 1e-5) }
        XCTAssertTrue(plain.ok, "\(plain)")
        let w = Tensor.randn([10], seed: 19)
        let onlyW = checkGradients([w]) { layerNorm(x, weight: $0[0], bias: nil, eps: 1e-5) }
        XCTAssertTrue(onlyW.ok, "\(onlyW)")
    }

    func testBackwardCapturesNoCopies() {
        let x = Tensor.randn([2, 8, 6, 5], seed: 26), w = Tensor.randn([8], seed: 27), b = Tensor.randn([8], seed: 28)
        XCTAssertEqual(opsExtraRetainedBytes([x, w, b]) { groupNorm($0[0], groups: 4, weight: $0[1], bias: $0[2], eps: 1e-5) }, 0)
        let t = Tensor.randn([3, 4, 8], seed: 29), lw = Tensor.randn([8], seed: 30)
        XCTAssertEqual(opsExtraRetainedBytes([t, lw]) { layerNorm($0[0], weight: $0[1], bias: nil, eps: 1e-5) }, 0)
    }

    func testNormalizationIsThreadCountInvariant() {
        let x = Tensor.randn([2, 64, 24, 20], seed: 20, scale: 2) + 3
        let w = Tensor.randn([64], seed: 21), b = Tensor.randn([64], seed: 22)
        opsRunsBitIdentical([x, w, b]) { groupNorm($0[0], groups: 32, weight: $0[1], bias: $0[2], eps: 1e-5) }
        let t = Tensor.randn([2, 300, 96], seed: 23), lw = Tensor.randn([96], seed: 24), lb = Tensor.randn([96], seed: 25)
        opsRunsBitIdentical([t, lw, lb]) { layerNorm($0[0], weight: $0[1], bias: $0[2], eps: 1e-5) }
    }
}
