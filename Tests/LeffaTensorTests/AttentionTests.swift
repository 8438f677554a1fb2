// Attention against a full-softmax reference in double precision (values and all three gradients),
// finite differences, thread-count independence, the memory bound, and FastMath's exponentials.
import XCTest
import Foundation
@testable import LeffaTensor
import TestSupport

final class AttentionTests: XCTestCase {
    struct Case { let B, n, m, H, d, dv: Int; var scale: Float? = nil; var spread: Float = 1 }

    /// Sizes that are not multiples of any tile, n ≠ m, dv ≠ d (dv = 2 is the Leffa flow: values
    /// are token coordinates), custom scales, and one peaked softmax (spread 4) for the online max.
    let cases = [
        Case(B: 1, n: 1, m: 1, H: 1, d: 1, dv: 1),
        Case(B: 2, n: 37, m: 53, H: 3, d: 5, dv: 2, scale: 0.3),
        Case(B: 1, n: 64, m: 29, H: 2, d: 8, dv: 8),
        Case(B: 3, n: 17, m: 100, H: 1, d: 16, dv: 3, spread: 4),
        Case(B: 1, n: 50, m: 50, H: 4, d: 4, dv: 2, scale: 1 / (2 * 2)),   // 1/(√d·τ), τ = 2
        Case(B: 1, n: 45, m: 70, H: 2, d: 40, dv: 40),                     // SD1.5's head: 16 + 16 + 8 columns
    ]

    /// Small tiles so the cases above span several query and key tiles with ragged ends, and the
    /// backward splits heads into key groups (batch·heads < 8).
    static let smallTiles = (fq: 16, fk: 24, bq: 8, bk: 20)

    func withTiling<T>(_ t: (fq: Int, fk: Int, bq: Int, bk: Int)?, _ body: () -> T) -> T {
        guard let t else { return body() }
        let saved = (AttentionTiling.forwardQueries, AttentionTiling.forwardKeys,
                     AttentionTiling.backwardQueries, AttentionTiling.backwardKeys)
        (AttentionTiling.forwardQueries, AttentionTiling.forwardKeys) = (t.fq, t.fk)
        (AttentionTiling.backwardQueries, AttentionTiling.backwardKeys) = (t.bq, t.bk)
        defer {
            (AttentionTiling.forwardQueries, AttentionTiling.forwardKeys,
             AttentionTiling.backwardQueries, AttentionTiling.backwardKeys) = saved
        }
        return body()
    }

    /// Full softmax per head in double: output and the gradients of Σ out·gradOut.
    func reference(_ q: Tensor, _ k: Tensor, _ v: Tensor, _ c: Case, gradOut: Tensor)
        -> (out: [Double], dq: [Double], dk: [Double], dv: [Double]) {
        let (B, n, m, H, d, dv) = (c.B, c.n, c.m, c.H, c.d, c.dv)
        let scale = Double(c.scale ?? 1 / Float(d).squareRoot())
        var out = [Double](repeating: 0, count: B * n * H * dv)
        var gq = [Double](repeating: 0, count: q.count), gk = [Double](repeating: 0, count: k.count)
        var gv = [Double](repeating: 0, count: v.count)
        func Q(_ b: Int, _ i: Int, _ h: Int, _ c: Int) -> Double { Double(q[(b * n + i) * H * d + h * d + c]) }
        func K(_ b: Int, _ j: Int, _ h: Int, _ c: Int) -> Double { Double(k[(b * m + j) * H * d + h * d + c]) }
        func V(_ b: Int, _ j: Int, _ h: Int, _ c: Int) -> Double { Double(v[(b * m + j) * H * dv + h * dv + c]) }
        func G(_ b: Int, _ i: Int, _ h: Int, _ c: Int) -> Double { Double(gradOut[(b * n + i) * H * dv + h * dv + c]) }
        for b in 0..<B {
            for h in 0..<H {
                for i in 0..<n {
                    var s = (0..<m).map { j in scale * (0..<d).reduce(0.0) { $0 + Q(b, i, h, $1) * K(b, j, h, $1) } }
                    let mx = s.max()!
                    s = s.map { Foundation.exp($0 - mx) }
                    let z = s.reduce(0, +)
                    let p = s.map { $0 / z }
                    for c in 0..<dv {
                        out[(b * n + i) * H * dv + h * dv + c] = (0..<m).reduce(0.0) { $0 + p[$1] * V(b, $1, h, c) }
                    }
                    let dp = (0..<m).map { j in (0..<dv).reduce(0.0) { $0 + G(b, i, h, $1) * V(b, j, h, $1) } }
                    let delta = (0..<m).reduce(0.0) { $0 + p[$1] * dp[$1] }
                    for j in 0..<m {
                        let ds = p[j] * (dp[j] - delta)
                        for c in 0..<dv { gv[(b * m + j) * H * dv + h * dv + c] += p[j] * G(b, i, h, c) }
                        for c in 0..<d {
                            gq[(b * n + i) * H * d + h * d + c] += scale * ds * K(b, j, h, c)
                            gk[(b * m + j) * H * d + h * d + c] += scale * ds * Q(b, i, h, c)
                        }
                    }
                }
            }
        }
        return (out, gq, gk, gv)
    }

    func inputs(_ c: Case, seed: UInt64) -> (Tensor, Tensor, Tensor, Tensor) {
        (Tensor.randn([c.B, c.n, c.H * c.d], seed: seed, scale: c.spread).requiringGrad(),
         Tensor.randn([c.B, c.m, c.H * c.d], seed: seed + 1).requiringGrad(),
         Tensor.randn([c.B, c.m, c.H * c.dv], seed: seed + 2).requiringGrad(),
         Tensor.randn([c.B, c.n, c.H * c.dv], seed: seed + 3))
    }

    /// Float32 results against the double reference: errors come from float32 sums over ≤ 100 keys
    /// and ~2-ulp exponentials, far below what a wrong index or factor produces (checked below).
    /// (TestSupport's `Tolerance` has no public initialiser, hence a local pair.)
    let rtol = 2e-4, atol = 2e-5

    /// Largest |got − want| / (atol + rtol·|want|); ≤ 1 means within tolerance.
    func worstError(_ got: [Float], _ want: [Double]) -> (ratio: Double, index: Int) {
        precondition(got.count == want.count, "\(got.count) vs \(want.count) elements")
        var worst = 0.0, at = 0
        for i in 0..<got.count {
            let e = abs(Double(got[i]) - want[i]) / (atol + rtol * abs(want[i]))
            if e > worst || e.isNaN { worst = e.isNaN ? .infinity : e; at = i }
        }
        return (worst, at)
    }

    func testMatchesFullSoftmaxReference() {
        for tiling in [nil, Self.smallTiles] {
            for (ci, c) in cases.enumerated() {
                let (q, k, v, g) = inputs(c, seed: UInt64(10 * ci + 1))
                let out = withTiling(tiling) { () -> Tensor in
                    let o = attention(q, k, v, heads: c.H, scale: c.scale)
                    o.backward(g)
                    return o
                }
                let ref = reference(q, k, v, c, gradOut: g)
                let label = "case \(ci) \(c), tiles \(tiling.map { "\($0)" } ?? "default")"
                XCTAssertEqual(out.shape, [c.B, c.n, c.H * c.dv])
                for (name, got, want) in [("out", out.scalars, ref.out), ("dq", q.grad!.scalars, ref.dq),
                                          ("dk", k.grad!.scalars, ref.dk), ("dv", v.grad!.scalars, ref.dv)] {
                    let w = worstError(got, want)
                    XCTAssertLessThanOrEqual(w.ratio, 1, "\(name) \(label): worst at \(w.index): \(got[w.index]) vs \(want[w.index])")
                }
            }
        }
    }

    func testReferenceComparisonCatchesAWrongScale() {
        // The same comparison with a 1 % wrong scale must fail on the values and on every gradient.
        let c = cases[1]
        let (q, k, v, g) = inputs(c, seed: 99)
        let out = attention(q, k, v, heads: c.H, scale: c.scale! * 1.01)
        out.backward(g)
        let ref = reference(q, k, v, c, gradOut: g)
        for (got, want) in [(out.scalars, ref.out), (q.grad!.scalars, ref.dq), (k.grad!.scalars, ref.dk), (v.grad!.scalars, ref.dv)] {
            XCTAssertGreaterThan(worstError(got, want).ratio, 1)
        }
    }

    func testFiniteDifferenceGradients() {
        for tiling in [nil, Self.smallTiles] {
            let q = Tensor.randn([2, 19, 2 * 3], seed: 41), k = Tensor.randn([2, 23, 2 * 3], seed: 42)
            let v = Tensor.randn([2, 23, 2 * 2], seed: 43)
            let r = withTiling(tiling) { checkGradients([q, k, v]) { x in attention(x[0], x[1], x[2], heads: 2, scale: 0.7) } }
            XCTAssertTrue(r.ok, "\(r)")
        }
    }

    func testGradientsOnlyForInputsThatNeedThem() {
        // The Leffa flow: v = token coordinates, a constant.
        let q = Tensor.randn([1, 12, 8], seed: 51).requiringGrad(), k = Tensor.randn([1, 12, 8], seed: 52)
        let v = Tensor.randn([1, 12, 2 * 2], seed: 53)
        let out = attention(q, k, v, heads: 2)
        XCTAssertEqual(out.producer, "attention")
        out.backward(Tensor.randn(out.shape, seed: 54))
        XCTAssertNotNil(q.grad)
        XCTAssertNil(k.grad)
        XCTAssertNil(v.grad)
        let none = attention(q.detached(), k, v, heads: 2)
        XCTAssertNil(none.producer)
    }

    func testSameBitsForAnyThreadCount() {
        let saved = Parallel.threads
        defer { Parallel.threads = saved }
        let c = Case(B: 1, n: 200, m: 300, H: 2, d: 8, dv: 4)
        func run(_ threads: Int, _ tiling: (fq: Int, fk: Int, bq: Int, bk: Int)?) -> [[Float]] {
            Parallel.threads = threads
            let (q, k, v, g) = inputs(c, seed: 61)
            return withTiling(tiling) {
                let out = attention(q, k, v, heads: c.H)
                out.backward(g)
                return [out.scalars, q.grad!.scalars, k.grad!.scalars, v.grad!.scalars]
            }
        }
        for tiling in [nil, Self.smallTiles] {
            let one = run(1, tiling), two = run(2, tiling), three = run(3, tiling)
            for i in 0..<4 {
                XCTAssertEqual(one[i].map(\.bitPattern), two[i].map(\.bitPattern), "tensor \(i), 1 vs 2 threads")
                XCTAssertEqual(one[i].map(\.bitPattern), three[i].map(\.bitPattern), "tensor \(i), 1 vs 3 threads")
            }
        }
    }

    // MARK: - A second softmax on the same scores (the Leffa flow)

    /// Cases for `attention(sharing:)`: the second softmax's keys (a range not aligned with any tile),
    /// temperature and value width. The last is the Leffa flow's shape: keys = the second half,
    /// τ = 2, values = 2 coordinates per head.
    let sharedCases: [(c: Case, keys: Range<Int>, tau: Float, dv2: Int)] = [
        (Case(B: 1, n: 1, m: 1, H: 1, d: 1, dv: 1), 0..<1, 1, 1),
        (Case(B: 2, n: 37, m: 53, H: 3, d: 5, dv: 4, scale: 0.3), 11..<47, 2, 2),
        (Case(B: 1, n: 45, m: 90, H: 2, d: 40, dv: 40), 45..<90, 2, 2),
        (Case(B: 3, n: 17, m: 100, H: 1, d: 16, dv: 3, spread: 4), 0..<100, 0.5, 3),
    ]

    /// (out, second) and the gradients of Σ out·g + Σ second·g₂ against the double reference of two
    /// separate attentions: the main one, and softmax(scale/τ · Q K[keys]ᵀ) · values.
    func testSharedScoresMatchTwoSeparateAttentions() {
        for tiling in [nil, Self.smallTiles] {
            for (ci, t) in sharedCases.enumerated() {
                let c = t.c
                let (q, k, v, g) = inputs(c, seed: UInt64(200 + 10 * ci))
                let values = Tensor.randn([c.B, t.keys.count, c.H * t.dv2], seed: UInt64(205 + 10 * ci))
                let g2 = Tensor.randn([c.B, c.n, c.H * t.dv2], seed: UInt64(206 + 10 * ci))
                let (out, second) = withTiling(tiling) { () -> (Tensor, Tensor) in
                    let r = attention(q, k, v, heads: c.H, scale: c.scale,
                                      sharing: SharedScores(keys: t.keys, temperature: t.tau, values: values))
                    (sum(r.out * g) + sum(r.second * g2)).backward()
                    return r
                }
                let main = reference(q, k, v, c, gradOut: g)
                let kPart = slice(k.detached(), dim: 1, start: t.keys.lowerBound, length: t.keys.count)
                let c2 = Case(B: c.B, n: c.n, m: t.keys.count, H: c.H, d: c.d, dv: t.dv2,
                              scale: (c.scale ?? 1 / Float(c.d).squareRoot()) / t.tau)
                let part = reference(q, kPart, values, c2, gradOut: g2)
                var dq = main.dq, dk = main.dk
                for i in 0..<dq.count { dq[i] += part.dq[i] }
                let row = c.H * c.d
                for b in 0..<c.B {
                    for j in 0..<t.keys.count {
                        for x in 0..<row { dk[(b * c.m + t.keys.lowerBound + j) * row + x] += part.dk[(b * t.keys.count + j) * row + x] }
                    }
                }
                let label = "shared case \(ci), tiles \(tiling.map { "\($0)" } ?? "default")"
                XCTAssertEqual(second.shape, [c.B, c.n, c.H * t.dv2])
                for (name, got, want) in [("out", out.scalars, main.out), ("second", second.scalars, part.out),
                                          ("dq", q.grad!.scalars, dq), ("dk", k.grad!.scalars, dk), ("dv", v.grad!.scalars, main.dv)] {
                    let w = worstError(got, want)
                    XCTAssertLessThanOrEqual(w.ratio, 1, "\(name) \(label): worst at \(w.index): \(got[w.index]) vs \(want[w.index])")
                }
            }
        }
    }

    func testSharedScoresFiniteDifferences() {
        for tiling in [nil, Self.smallTiles] {
            let q = Tensor.randn([2, 19, 2 * 3], seed: 241), k = Tensor.randn([2, 40, 2 * 3], seed: 242)
            let v = Tensor.randn([2, 40, 2 * 2], seed: 243), values = Tensor.randn([2, 21, 2 * 2], seed: 244)
            let r = withTiling(tiling) {
                checkGradients([q, k, v]) { x in
                    let (o, o2) = attention(x[0], x[1], x[2], heads: 2, scale: 0.7,
                                            sharing: SharedScores(keys: 19..<40, temperature: 2, values: values))
                    return concat([o, o2], dim: 2)
                }
            }
            XCTAssertTrue(r.ok, "\(r)")
        }
    }

    func testSharedScoresSameBitsForAnyThreadCount() {
        let saved = Parallel.threads
        defer { Parallel.threads = saved }
        let c = Case(B: 1, n: 200, m: 400, H: 2, d: 8, dv: 8)
        func run(_ threads: Int) -> [[Float]] {
            Parallel.threads = threads
            let (q, k, v, g) = inputs(c, seed: 261)
            let values = Tensor.randn([1, 200, 2 * 2], seed: 265), g2 = Tensor.randn([1, 200, 2 * 2], seed: 266)
            let (o, o2) = attention(q, k, v, heads: c.H, sharing: SharedScores(keys: 200..<400, temperature: 2, values: values))
            (sum(o * g) + sum(o2 * g2)).backward()
            return [o.scalars, o2.scalars, q.grad!.scalars, k.grad!.scalars, v.grad!.scalars]
        }
        let one = run(1), two = run(2), three = run(3)
        for i in 0..<5 {
            XCTAssertEqual(one[i].map(\.bitPattern), two[i].map(\.bitPattern), "tensor \(i), 1 vs 2 threads")
            XCTAssertEqual(one[i].map(\.bitPattern), three[i].map(\.bitPattern), "tensor \(i), 1 vs 3 threads")
        }
    }

    func testMemoryStaysFarBelowOneScoreMatrix() {
        // n = 4096 queries, m = 8192 keys, one head: a float32 score matrix would be 128 MiB.
        let (n, m, d) = (4096, 8192, 8)
        let scoreMatrix = n * m * MemoryLayout<Float>.stride
        let bound = scoreMatrix / 4
        let q = Tensor.randn([1, n, d], seed: 71).requiringGrad(), k = Tensor.randn([1, m, d], seed: 72).requiringGrad()
        let v = Tensor.randn([1, m, 2], seed: 73).requiringGrad(), g = Tensor.randn([1, n, 2], seed: 74)
        Storage.live.resetPeak()
        let before = Storage.live.bytes
        let out = attention(q, k, v, heads: 1)
        out.backward(g)
        let growth = Storage.live.peakBytes - before
        XCTAssertLessThan(growth, bound, "peak growth \(growth) bytes; one score matrix is \(scoreMatrix)")
        // What it actually needs: inputs' gradients, O, lse, Δ, dQ partials and the tiles.
        XCTAssertLessThan(growth, 4 << 20, "peak growth \(growth) bytes")
        XCTAssertTrue(q.grad!.scalars.allSatisfy(\.isFinite) && k.grad!.scalars.allSatisfy(\.isFinite))
    }

    // MARK: - FastMath

    /// Units in the last place between a float result and the exact value.
    func ulps(_ got: Float, _ exact: Double) -> Double {
        let e = Float(exact)
        return abs(Double(got) - exact) / Double(e.ulp)
    }

    func testFastExpMatchesFoundation() {
        // −100…88 in steps that hit every binade and many mantissas, plus the edges.
        var xs: [Float] = stride(from: -100.0, through: 88.0, by: 0.000731).map { Float($0) }
        // Both ends of the normal range, bit by bit, and the flush region.
        var e = FastMath.expLow.nextDown.nextDown
        for _ in 0..<64 { xs.append(e); e = e.nextUp }
        e = FastMath.expHigh
        for _ in 0..<64 { xs.append(e); e = e.nextDown }
        xs += [0, -0.0, 1, -1, 1e-8, -1e-8, -87.34, -103.9, -1000, -.infinity]
        var y = [Float](repeating: .nan, count: xs.count)
        FastMath.exp(xs, &y, count: xs.count)                     // count not a multiple of the width
        var worst = 0.0, at: Float = 0
        for (x, got) in zip(xs, y) {
            if x < FastMath.expLow {
                XCTAssertEqual(got, 0, "exp(\(x)) must flush to 0 (the true value is subnormal)")
                continue
            }
            let u = ulps(got, Foundation.exp(Double(x)))
            if u > worst { worst = u; at = x }
            XCTAssertEqual(got, FastMath.exp(x), "buffer and scalar paths differ at \(x)")
        }
        XCTAssertLessThanOrEqual(worst, 2, "worst \(worst) ulp at x = \(at)")
        XCTAssertEqual(FastMath.exp(100), .infinity)
        XCTAssertEqual(FastMath.exp(FastMath.expHigh.nextUp), .infinity)
    }

    func testFastExp2AndShiftedSum() {
        var worst = 0.0
        for x in stride(from: -126.0, through: 127.0, by: 0.00317).map({ Float($0) }) {
            worst = max(worst, ulps(FastMath.exp2(x), Foundation.exp2(Double(x))))
        }
        XCTAssertLessThanOrEqual(worst, 2, "exp2 worst \(worst) ulp")
        XCTAssertEqual(FastMath.exp2(-126.5), 0)
        XCTAssertEqual(FastMath.exp2(-Float.infinity), 0)
        // One softmax row: in place 2^(x − max), and the sum of what it wrote.
        var row = (0..<37).map { Float($0 % 11) * 3.7 - 20 }
        let original = row
        let mx = FastMath.maximum(row, count: row.count)
        XCTAssertEqual(mx, original.max()!)
        let sum = FastMath.exp2Shifted(&row, count: row.count, shift: mx)
        var refSum = 0.0
        for (got, x) in zip(row, original) {
            let want = Foundation.exp2(Double(x - mx))
            XCTAssertEqual(Double(got), want, accuracy: want * 3e-7)
            refSum += want
        }
        XCTAssertEqual(Double(sum), refSum, accuracy: refSum * 1e-6)
    }
}
