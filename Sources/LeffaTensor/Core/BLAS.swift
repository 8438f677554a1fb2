// Row-major single-precision GEMM on OpenBLAS, split over the engine's threads.
import CBLAS

/// C[m×n] = alpha · op(A) · op(B) + beta · C, all row-major with leading dimensions.
/// Runs on the calling thread only (OpenBLAS is pinned to one thread).
@inline(__always)
public func sgemm(
    transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
    alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    if m == 0 || n == 0 { return }
    if k == 0 {
        for i in 0..<m { for j in 0..<n { c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j] } }
        return
    }
    cblas_sgemm(
        CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
        Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// The same product split into row parts that the threads share, so results do not depend on
/// the thread count. Two rules make that hold:
/// - Parts are whole blocks of `gemmRowBlock` rows. OpenBLAS computes a row-major C as the
///   column-major Cᵀ, and an element's bits depend on which micro-kernel panel holds it. Rows of
///   C are OpenBLAS's N panels (4, 8 or 12 wide by CPU): a boundary at a multiple of 24 is also a
///   panel boundary (measured on Zen: blocks of 12 or 24 match one call bit for bit, blocks of 8
///   or 16 differ in ~20 % of the elements). Columns are its M dimension, whose result changes
///   with any split.
/// - The parts depend on the shape alone, never on the thread count: OpenBLAS's AVX-512 build
///   picks another kernel (its "direct" and small-matrix sgemm) by the size of each call, so on
///   such a CPU a part's bits follow its size (1 and 2 threads differed when the parts were one
///   per thread).
public func gemm(
    transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
    alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    let parts = gemmParts(m: m, n: n, k: k)
    if parts.count == 1 {
        sgemm(
            transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
            b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
        return
    }
    Parallel.for(parts.count) { r in
        for p in r {
            let lo = p * parts.rows, hi = min(m, lo + parts.rows)
            let aOff = transA ? lo : lo * lda
            sgemm(
                transA: transA, transB: transB, m: hi - lo, n: n, k: k, alpha: alpha,
                a: a + aOff, lda: lda, b: b, ldb: ldb, beta: beta, c: c + lo * ldc, ldc: ldc)
        }
    }
}

/// How `gemm` splits an m × n × k product: `count` parts of `rows` rows (the last may be shorter),
/// from the shape alone. One part below 2 M multiply-adds; otherwise about one part per 4 M (so
/// repacking B per part stays small next to the part's work), 1, 2, 4, 8, 12 or 16 of them
/// (whole rounds for 2 or 4 threads; enough for the threads of one rank), each a multiple of
/// `gemmRowBlock` rows.
public func gemmParts(m: Int, n: Int, k: Int) -> (count: Int, rows: Int) {
    let work = Double(m) * Double(n) * Double(k)
    let blocks = (m + gemmRowBlock - 1) / gemmRowBlock
    if work < 2e6 || blocks < 2 { return (1, m) }
    var want = max(1, min(16, Int(work / 4e6)))
    if want > 2 { want = (want + 3) / 4 * 4 }   // whole rounds for 2 or 4 threads
    want = min(want, blocks)
    let rows = (blocks + want - 1) / want * gemmRowBlock
    return ((m + rows - 1) / rows, rows)
}

/// Rows of C per block of a split `gemm` (see there): a multiple of every OpenBLAS sgemm N panel.
public let gemmRowBlock = 24
