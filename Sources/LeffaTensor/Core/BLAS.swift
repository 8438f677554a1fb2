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

/// The same product split over `Parallel.threads`, always by rows of C in blocks of
/// `gemmRowBlock`, so results do not depend on the thread count. Why only rows, and why 24:
/// OpenBLAS computes a row-major C as the column-major Cᵀ, and an element's bits depend on which
/// micro-kernel panel holds it. Rows of C are OpenBLAS's N panels (4, 8 or 12 wide by CPU): a
/// block boundary at a multiple of 24 is also a panel boundary, and the products are identical
/// to one call (measured on Zen: blocks of 12 or 24 match bit for bit, blocks of 8 or 16 differ in
/// ~20 % of the elements). Columns are its M dimension, whose result changes with any split.
public func gemm(
    transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
    alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    let work = Double(m) * Double(n) * Double(k)
    let blocks = (m + gemmRowBlock - 1) / gemmRowBlock
    if Parallel.threads == 1 || work < 2e6 || blocks < 2 {
        sgemm(
            transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
            b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
        return
    }
    Parallel.for(blocks) { r in
        let lo = r.lowerBound * gemmRowBlock, hi = min(m, r.upperBound * gemmRowBlock)
        let aOff = transA ? lo : lo * lda
        sgemm(
            transA: transA, transB: transB, m: hi - lo, n: n, k: k, alpha: alpha,
            a: a + aOff, lda: lda, b: b, ldb: ldb, beta: beta, c: c + lo * ldc, ldc: ldc)
    }
}

/// Rows of C per block of a split `gemm` (see there): a multiple of every OpenBLAS sgemm N panel.
public let gemmRowBlock = 24
