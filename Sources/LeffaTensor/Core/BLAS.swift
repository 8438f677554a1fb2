// Row-major single-precision GEMM on OpenBLAS, split over the engine's threads.
import CBLAS

/// C[m×n] = alpha · op(A) · op(B) + beta · C, all row-major with leading dimensions.
/// Runs on the calling thread only (OpenBLAS is pinned to one thread).
@inline(__always)
public func sgemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                  alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                  b: UnsafePointer<Float>, ldb: Int,
                  beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
    if m == 0 || n == 0 { return }
    if k == 0 {
        for i in 0..<m { for j in 0..<n { c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j] } }
        return
    }
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// The same product split over `Parallel.threads`: by rows of C when it is tall, else by columns.
/// Each element of C is computed by exactly one thread with the same K order, so results do not
/// depend on the thread count.
public func gemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                 alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                 b: UnsafePointer<Float>, ldb: Int,
                 beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
    let work = Double(m) * Double(n) * Double(k)
    if Parallel.threads == 1 || work < 2e6 {
        sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
              b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
        return
    }
    // Split the larger output side into 16-aligned blocks (full SIMD panels for the kernel).
    if m >= n {
        let blocks = (m + 15) / 16
        Parallel.for(blocks) { r in
            let lo = r.lowerBound * 16, hi = min(m, r.upperBound * 16)
            let aOff = transA ? lo : lo * lda
            sgemm(transA: transA, transB: transB, m: hi - lo, n: n, k: k, alpha: alpha,
                  a: a + aOff, lda: lda, b: b, ldb: ldb, beta: beta, c: c + lo * ldc, ldc: ldc)
        }
    } else {
        let blocks = (n + 15) / 16
        Parallel.for(blocks) { r in
            let lo = r.lowerBound * 16, hi = min(n, r.upperBound * 16)
            let bOff = transB ? lo * ldb : lo
            sgemm(transA: transA, transB: transB, m: m, n: hi - lo, k: k, alpha: alpha,
                  a: a, lda: lda, b: b + bOff, ldb: ldb, beta: beta, c: c + lo, ldc: ldc)
        }
    }
}
