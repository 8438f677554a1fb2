// The register-tiled products inside attention. Attention's matrices are thin (a head is 40–160
// wide, a tile 16–256 long), where a BLAS call spends much of its time packing and in edge
// kernels: OpenBLAS ran these tiles at 55–65 % of its own peak here. Attention therefore keeps
// its operands in layouts these kernels read in place (queries in SIMD lanes, `Attention.swift`)
// and calls one outer-product kernel for all five of its products.
//
// The kernel: a 6 × 16 block of C in twelve AVX registers (6 × 8 with `outer8`), and per step of
// the contraction 6 broadcasts of A and 2 vector loads of B for 12 fused multiply-adds; measured
// at 82–94 % of OpenBLAS's large-sgemm peak on an AVX2 EPYC. The contraction runs in index order
// with one FMA per term, so a C element's bits depend only on its inputs, never on the tiling
// around the call or on the thread that runs it.
//
// On CPUs with AVX-512 the products run in a C kernel built for it (CAVX512Kernels: up to 12 × 32
// in ZMM registers, 173 GFLOP/s per core in cache on the Xeon of 2026-12-06 against 85 for this
// one and 131 for OpenBLAS's sgemm) with the same order of terms, so the two give the same bits
// and a run's results do not depend on which one a node has.
import CAVX512Kernels
import CBLAS

/// Which code runs attention's products: chosen once from the CPU, switchable for tests and benchmarks.
public enum AttentionKernels {
    public enum Choice: String, Sendable, CaseIterable {
        /// The Swift kernels below (8-float vectors: AVX2 + FMA on x86-64).
        case vectors8 = "8-float vectors"
        /// The C kernel of CAVX512Kernels.
        case avx512 = "AVX-512"
        /// A short name for tables.
        public var label: String { self == .avx512 ? "AVX-512" : "8-wide" }
    }
    /// The choices this CPU can run, best last.
    public static let available: [Choice] = leffa_cpu_vector_level() >= 2 ? [.vectors8, .avx512] : [.vectors8]
    nonisolated(unsafe) static var choice = available.last!
    /// The kernels in use. Setting one the CPU cannot run stops the program (it would fault later).
    public static var current: Choice {
        get { choice }
        set {
            precondition(available.contains(newValue), "this CPU cannot run the \(newValue.rawValue) attention kernels")
            choice = newValue
        }
    }
}

@usableFromInline typealias Lanes = SIMD8<Float>

@inline(__always) func loadLanes(_ p: UnsafePointer<Float>) -> Lanes {
    UnsafeRawPointer(p).loadUnaligned(as: Lanes.self)
}
@inline(__always) func storeLanes(_ v: Lanes, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: Lanes.self)
}

typealias SixRows = (
    UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>,
    UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>
)

/// The six A rows a kernel reads; rows past `rows` read row 0 again (never past A's valid rows).
@inline(__always)
func rowPointers(_ a: UnsafePointer<Float>, _ ars: Int, _ rows: Int) -> SixRows {
    (
        a, a + (rows > 1 ? ars : 0), a + (rows > 2 ? 2 * ars : 0),
        a + (rows > 3 ? 3 * ars : 0), a + (rows > 4 ? 4 * ars : 0), a + (rows > 5 ? 5 * ars : 0)
    )
}

/// C[r][0..<16] = (accumulate ? C[r] : 0) + Σ_{x < len} A[r·ars + x·axs] · B[x·bxs + 0..<16]
/// for r < rows (1…6). A is read by broadcasts, so either of its strides may be 1; rows beyond
/// `rows` are computed from row 0 again (no read past A's valid rows) and not stored.
@inline(__always)
func outer16(
    rows: Int, len: Int, a: UnsafePointer<Float>, ars: Int, axs: Int,
    b: UnsafePointer<Float>, bxs: Int, c: UnsafeMutablePointer<Float>, crs: Int, accumulate: Bool
) {
    let (a0, a1, a2, a3, a4, a5) = rowPointers(a, ars, rows)
    var c00 = Lanes(), c01 = Lanes(), c10 = Lanes(), c11 = Lanes(), c20 = Lanes(), c21 = Lanes()
    var c30 = Lanes(), c31 = Lanes(), c40 = Lanes(), c41 = Lanes(), c50 = Lanes(), c51 = Lanes()
    if accumulate {
        c00 = loadLanes(c); c01 = loadLanes(c + 8)
        if rows > 1 { c10 = loadLanes(c + crs); c11 = loadLanes(c + crs + 8) }
        if rows > 2 { c20 = loadLanes(c + 2 * crs); c21 = loadLanes(c + 2 * crs + 8) }
        if rows > 3 { c30 = loadLanes(c + 3 * crs); c31 = loadLanes(c + 3 * crs + 8) }
        if rows > 4 { c40 = loadLanes(c + 4 * crs); c41 = loadLanes(c + 4 * crs + 8) }
        if rows > 5 { c50 = loadLanes(c + 5 * crs); c51 = loadLanes(c + 5 * crs + 8) }
    }
    var ax = 0, bx = b
    for _ in 0..<len {
        let b0 = loadLanes(bx), b1 = loadLanes(bx + 8)
        var s = Lanes(repeating: a0[ax]); c00.addProduct(s, b0); c01.addProduct(s, b1)
        s = Lanes(repeating: a1[ax]); c10.addProduct(s, b0); c11.addProduct(s, b1)
        s = Lanes(repeating: a2[ax]); c20.addProduct(s, b0); c21.addProduct(s, b1)
        s = Lanes(repeating: a3[ax]); c30.addProduct(s, b0); c31.addProduct(s, b1)
        s = Lanes(repeating: a4[ax]); c40.addProduct(s, b0); c41.addProduct(s, b1)
        s = Lanes(repeating: a5[ax]); c50.addProduct(s, b0); c51.addProduct(s, b1)
        ax += axs; bx += bxs
    }
    storeLanes(c00, c); storeLanes(c01, c + 8)
    if rows > 1 { storeLanes(c10, c + crs); storeLanes(c11, c + crs + 8) }
    if rows > 2 { storeLanes(c20, c + 2 * crs); storeLanes(c21, c + 2 * crs + 8) }
    if rows > 3 { storeLanes(c30, c + 3 * crs); storeLanes(c31, c + 3 * crs + 8) }
    if rows > 4 { storeLanes(c40, c + 4 * crs); storeLanes(c41, c + 4 * crs + 8) }
    if rows > 5 { storeLanes(c50, c + 5 * crs); storeLanes(c51, c + 5 * crs + 8) }
}

/// `outer16` for an 8-wide block of C (the last columns of a row whose width is 8 mod 16).
@inline(__always)
func outer8(
    rows: Int, len: Int, a: UnsafePointer<Float>, ars: Int, axs: Int,
    b: UnsafePointer<Float>, bxs: Int, c: UnsafeMutablePointer<Float>, crs: Int, accumulate: Bool
) {
    let (a0, a1, a2, a3, a4, a5) = rowPointers(a, ars, rows)
    var c0 = Lanes(), c1 = Lanes(), c2 = Lanes(), c3 = Lanes(), c4 = Lanes(), c5 = Lanes()
    if accumulate {
        c0 = loadLanes(c)
        if rows > 1 { c1 = loadLanes(c + crs) }
        if rows > 2 { c2 = loadLanes(c + 2 * crs) }
        if rows > 3 { c3 = loadLanes(c + 3 * crs) }
        if rows > 4 { c4 = loadLanes(c + 4 * crs) }
        if rows > 5 { c5 = loadLanes(c + 5 * crs) }
    }
    var ax = 0, bx = b
    for _ in 0..<len {
        let b0 = loadLanes(bx)
        c0.addProduct(Lanes(repeating: a0[ax]), b0); c1.addProduct(Lanes(repeating: a1[ax]), b0)
        c2.addProduct(Lanes(repeating: a2[ax]), b0); c3.addProduct(Lanes(repeating: a3[ax]), b0)
        c4.addProduct(Lanes(repeating: a4[ax]), b0); c5.addProduct(Lanes(repeating: a5[ax]), b0)
        ax += axs; bx += bxs
    }
    storeLanes(c0, c)
    if rows > 1 { storeLanes(c1, c + crs) }
    if rows > 2 { storeLanes(c2, c + 2 * crs) }
    if rows > 3 { storeLanes(c3, c + 3 * crs) }
    if rows > 4 { storeLanes(c4, c + 4 * crs) }
    if rows > 5 { storeLanes(c5, c + 5 * crs) }
}

/// C (rows × width) (+)= A · B for every row and for a C `width` that is a multiple of 8, in
/// panels of 16 columns: panel p of B starts at b + p·bps and of C at c + p·cps (16 and 16, the
/// defaults, for plain matrices; other strides let lane groups packed apart share one call, so
/// the AVX-512 kernel reads each A value once for two of them), and a last 8 columns at panel
/// width / 16. Here: row blocks of 6 through `outer16` per panel, and `outer8` for a last 8 columns.
@inline(__always)
func outerProduct(
    rows: Int, width: Int, len: Int, a: UnsafePointer<Float>, ars: Int, axs: Int,
    b: UnsafePointer<Float>, bxs: Int, bps: Int = 16, c: UnsafeMutablePointer<Float>, crs: Int, cps: Int = 16,
    accumulate: Bool
) {
    #if arch(x86_64)
    if AttentionKernels.choice == .avx512 {
        leffa_outer_product_avx512(rows, width, len, a, ars, axs, b, bxs, bps, c, crs, cps, accumulate ? 1 : 0)
        return
    }
    #endif
    let panels = width / 16
    var r = 0
    while r < rows {
        let rs = min(6, rows - r), ar = a + r * ars, cr = c + r * crs
        for p in 0..<panels {
            outer16(
                rows: rs, len: len, a: ar, ars: ars, axs: axs, b: b + p * bps, bxs: bxs, c: cr + p * cps, crs: crs,
                accumulate: accumulate)
        }
        if width % 16 != 0 {
            outer8(
                rows: rs, len: len, a: ar, ars: ars, axs: axs, b: b + panels * bps, bxs: bxs, c: cr + panels * cps,
                crs: crs, accumulate: accumulate)
        }
        r += 6
    }
}

/// 2ˣ for the softmax weights of attention, where x = score − (maximum or log-sum-exp) ≤ 0:
/// 0 below −126 and for −∞. A degree-5 polynomial in Horner form with fused multiply-adds
/// (relative error 1.8e-7 in float32, fitted here for 2ᶠ on [−½, ½]): after the products this is
/// attention's largest cost (one per score against 2·(d + dv) multiply-adds), so it uses the
/// cheapest form that keeps float32 accuracy, not FastMath's libm-grade one.
@inline(__always)
func softmaxWeight(_ x: Lanes) -> Lanes {
    let t = x + FastMath.roundMagic
    let f = x - (t - FastMath.roundMagic)
    var p = Lanes(repeating: 9.671508894744791e-3).addingProduct(Lanes(repeating: 1.3264699362881376e-3), f)
    p = Lanes(repeating: 5.5507337752569e-2).addingProduct(p, f)
    p = Lanes(repeating: 2.4022242143895642e-1).addingProduct(p, f)
    p = Lanes(repeating: 6.931469776122539e-1).addingProduct(p, f)
    p = Lanes(repeating: 1).addingProduct(p, f)
    return FastMath.scaleByPowerOfTwo(p, t).replacing(with: 0, where: x .< -126)
}
