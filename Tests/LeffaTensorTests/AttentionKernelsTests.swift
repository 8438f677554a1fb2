// Attention's outer-product kernels (AttentionKernels.swift, CAVX512Kernels): every kernel this CPU
// can run against a plain loop of the same fused multiply-adds, bit for bit, at row counts and
// widths around every block edge, with panel strides and both orientations of A; and the whole
// attention with each kernel set, bit for bit. On a CPU without AVX-512 the AVX-512 cases say so
// and only the 8-wide kernels are checked.
import XCTest
@testable import LeffaTensor
import TestSupport

final class AttentionKernelsTests: XCTestCase {
    func withKernels<T>(_ k: AttentionKernels.Choice, _ body: () -> T) -> T {
        let saved = AttentionKernels.current
        AttentionKernels.current = k
        defer { AttentionKernels.current = saved }
        return body()
    }

    /// C (rows × width in panels of 16 at strides bps / cps, then 8 columns) against
    /// c = fma(a, b, c) in index order, with guard values around C that must stay untouched.
    func check(
        rows: Int, width: Int, len: Int, aByRows: Bool, bps: Int, cps: Int, accumulate: Bool,
        _ kernels: AttentionKernels.Choice, file: StaticString = #filePath, line: UInt = #line
    ) {
        var seed = UInt64(rows * 1000 + width * 10 + len)
        func random(_ n: Int) -> [Float] { seed += 1; return Tensor.randn([n], seed: seed).scalars }
        let (ars, axs) = aByRows ? (len + 3, 1) : (1, rows + 5)
        let a = random(max(1, (rows - 1) * ars + (len - 1) * axs + 1))
        // Where column w of B's and C's rows lives, and row strides past a row's last column
        // (B's rows of different x may overlap: they are only read).
        func col(_ w: Int, _ ps: Int) -> Int { (w / 16) * ps + w % 16 }
        let bxs = 16 + 8, crs = col(width - 1, cps) + 1 + 3
        let b = random(col(width - 1, bps) + 1 + len * bxs)
        let cCount = rows * crs + 64
        let c0 = random(cCount)
        var want = c0
        for r in 0..<rows {
            for w in 0..<width {
                var acc: Float = accumulate ? c0[r * crs + col(w, cps)] : 0
                for x in 0..<len { acc = acc.addingProduct(a[r * ars + x * axs], b[x * bxs + col(w, bps)]) }
                want[r * crs + col(w, cps)] = acc
            }
        }
        var got = c0
        withKernels(kernels) {
            a.withUnsafeBufferPointer { ap in
                b.withUnsafeBufferPointer { bp in
                    got.withUnsafeMutableBufferPointer { cp in
                        outerProduct(
                            rows: rows, width: width, len: len, a: ap.baseAddress!, ars: ars, axs: axs,
                            b: bp.baseAddress!, bxs: bxs, bps: bps, c: cp.baseAddress!, crs: crs, cps: cps,
                            accumulate: accumulate)
                    }
                }
            }
        }
        let wrong = (0..<cCount).filter { got[$0].bitPattern != want[$0].bitPattern }
        XCTAssertTrue(
            wrong.isEmpty,
            "\(kernels.label): rows \(rows) width \(width) len \(len) A by \(aByRows ? "rows" : "columns") "
                + "panels \(bps)/\(cps) accumulate \(accumulate): \(wrong.count) floats differ, "
                + "first at \(wrong.first ?? 0)",
            file: file, line: line)
    }

    func testEveryKernelMatchesPlainFusedMultiplyAdds() {
        for kernels in AttentionKernels.available {
            for rows in [1, 2, 5, 6, 7, 11, 12, 13, 23, 24, 25, 40, 41] {
                for width in [8, 16, 24, 32, 40, 48, 64] {
                    for len in [0, 1, 7, 40] {
                        check(rows: rows, width: width, len: len, aByRows: true, bps: 16, cps: 16,
                              accumulate: len != 7, kernels)
                        check(rows: rows, width: width, len: len, aByRows: false, bps: 16, cps: 16,
                              accumulate: len == 7, kernels)
                    }
                }
                // Lane groups packed apart: panels at other strides (the last panel's 8-column
                // tail does not occur there; widths are whole panels).
                for width in [16, 32, 48] {
                    check(rows: rows, width: width, len: 9, aByRows: true, bps: 40 * 16, cps: 29 * 16,
                          accumulate: false, kernels)
                    check(rows: rows, width: width, len: 9, aByRows: false, bps: 3 * 16, cps: 5 * 16,
                          accumulate: true, kernels)
                }
            }
        }
    }

    /// Forward and all gradients, plain and with shared scores, at tile-edge sizes and SD1.5's
    /// head width: the same bits with every kernel set this CPU runs.
    func testAttentionGivesTheSameBitsWithEveryKernelSet() throws {
        let kernels = AttentionKernels.available
        guard kernels.count > 1 else {
            throw XCTSkip("this CPU runs one attention kernel set (\(kernels[0].rawValue)); nothing to compare")
        }
        let cases: [(B: Int, n: Int, m: Int, H: Int, d: Int, dv: Int)] = [
            (1, 45, 70, 2, 40, 40), (2, 37, 53, 3, 5, 2), (1, 300, 600, 2, 40, 40), (1, 100, 200, 1, 80, 80),
        ]
        for (ci, c) in cases.enumerated() {
            func run() -> [[UInt32]] {
                let q = Tensor.randn([c.B, c.n, c.H * c.d], seed: UInt64(ci * 10 + 1)).requiringGrad()
                let k = Tensor.randn([c.B, c.m, c.H * c.d], seed: UInt64(ci * 10 + 2)).requiringGrad()
                let v = Tensor.randn([c.B, c.m, c.H * c.dv], seed: UInt64(ci * 10 + 3)).requiringGrad()
                let values = Tensor.randn([c.B, c.m - c.m / 2, c.H * 2], seed: UInt64(ci * 10 + 4))
                let (o, flow) = attention(
                    q, k, v, heads: c.H, sharing: SharedScores(keys: c.m / 2..<c.m, temperature: 2, values: values))
                let plain = attention(q, k, v, heads: c.H)
                (sum(o * Tensor.randn(o.shape, seed: 5)) + sum(flow * Tensor.randn(flow.shape, seed: 6))
                    + sum(plain * Tensor.randn(plain.shape, seed: 7))).backward()
                return [o, flow, plain, q.grad!, k.grad!, v.grad!].map { $0.scalars.map(\.bitPattern) }
            }
            let first = withKernels(kernels[0], run)
            for other in kernels.dropFirst() {
                let got = withKernels(other, run)
                for (i, name) in ["out", "flow", "plain out", "dq", "dk", "dv"].enumerated() {
                    XCTAssertEqual(first[i], got[i], "case \(c): \(name), \(kernels[0].label) vs \(other.label)")
                }
            }
        }
    }
}
