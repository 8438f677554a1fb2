// Multi-head scaled-dot-product attention that never holds the n×m score matrix: the UNets'
// self-attention over 2n tokens and the Leffa flow field (values = token coordinates) both run
// through here, at sizes where one score matrix per head would be gigabytes.
//
// Forward (FlashAttention style): each work item is one (batch, head, query tile). It walks the key
// tiles with an online softmax — running row maximum and row sum, rescaling the partial output when
// the maximum grows — and keeps only the per-query log-sum-exp (B, H, n) for backward.
// Backward (FlashAttention-2 style) recomputes each score tile from Q, K and that log-sum-exp.
// Scores live in base 2 internally: S₂ = scale·log₂e·Q·Kᵀ comes out of the GEMM already scaled, so
// a softmax weight is one exp2 (FastMath) with no extra multiply; `lse` is log₂ Σ 2^S₂.
//
// Extra memory is O(n·d) plus fixed-size per-thread tiles (allocated as Storage, so they are
// counted by `Storage.live`). Every tile is computed by one thread in a fixed order, so results do
// not depend on the thread count. Not here: masks, dropout, causal attention, the head mean.
import Foundation

/// Tile sizes. Internal and mutable so tests and benchmarks can sweep them. Defaults measured on a
/// 2-core Zen 4 at n = 3072, m = 6144, 8 heads of 40: forward 192×512 (a 384 KiB score tile in the
/// 1 MiB L2; anything in 128–384 × 256–768 is within 3 %), backward 128×128 (two 64 KiB tiles;
/// 64–256 × 64–256 within 6 %, the same at n = 12288).
enum AttentionTiling {
    /// Forward: query rows per work item and keys per score tile.
    nonisolated(unsafe) static var forwardQueries = 192
    nonisolated(unsafe) static var forwardKeys = 512
    /// Backward: query rows and keys per recomputed score tile.
    nonisolated(unsafe) static var backwardQueries = 128
    nonisolated(unsafe) static var backwardKeys = 128
    /// Backward work items wanted at least: when batch·heads is smaller, each head's key tiles are
    /// split into groups with private dQ partials summed in group order. A constant (not the
    /// thread count), so the bits do not depend on the machine.
    nonisolated(unsafe) static var backwardMinItems = 8
}

/// The sizes of one attention call. Heads are column blocks of the token rows, so row strides
/// (`ldq`, `ldv`) are H·d and H·dv: sgemm reads a head in place.
struct AttentionShape {
    let B: Int, n: Int, m: Int, H: Int, d: Int, dv: Int
    var ldq: Int { H * d }
    var ldv: Int { H * dv }
}

/// Multi-head attention softmax(scale · Q Kᵀ) V per head, never materialising the n×m score matrix.
/// q: (B, n, H·d), k: (B, m, H·d), v: (B, m, H·dv) → (B, n, H·dv). Head h uses columns h·d..<(h+1)·d
/// (PyTorch/diffusers head layout, no permute needed). scale defaults to 1/√d.
public func attention(_ q: Tensor, _ k: Tensor, _ v: Tensor, heads: Int, scale: Float? = nil) -> Tensor {
    shapeCheck(q.rank == 3 && k.rank == 3 && v.rank == 3, "attention", q.shape, k.shape, v.shape,
               expected: "q (B, n, H·d), k (B, m, H·d), v (B, m, H·dv)")
    shapeCheck(heads >= 1 && q.shape[2] % heads == 0 && v.shape[2] % heads == 0, "attention(heads: \(heads))",
               q.shape, v.shape, expected: "channel counts divisible by \(heads) heads")
    shapeCheck(k.shape[0] == q.shape[0] && k.shape[2] == q.shape[2] && v.shape[0] == q.shape[0] && v.shape[1] == k.shape[1],
               "attention", q.shape, k.shape, v.shape, expected: "q (B, n, H·d), k (B, m, H·d), v (B, m, H·dv)")
    let s = AttentionShape(B: q.shape[0], n: q.shape[1], m: k.shape[1], H: heads,
                           d: q.shape[2] / heads, dv: v.shape[2] / heads)
    let sc = scale ?? 1 / Float(s.d).squareRoot()
    let log2e: Float = 1.44269504088896341

    let out = Tensor(zeros: [s.B, s.n, s.H * s.dv])
    let lse = Storage(count: s.B * s.H * s.n)                                     // (B, H, n), base 2
    attentionForward(q.data, k.data, v.data, out: out.data, lse: lse.base, s, scale2: sc * log2e)

    let qs = q.storage, ks = k.storage, vs = v.storage, os = out.storage
    let qNeeds = q.requiresGrad, kNeeds = k.requiresGrad, vNeeds = v.requiresGrad
    return out.recording("attention", [q, k, v]) { g in
        let dq = qNeeds ? Tensor(zeros: [s.B, s.n, s.H * s.d]) : nil
        let dk = kNeeds ? Tensor(zeros: [s.B, s.m, s.H * s.d]) : nil
        let dv = vNeeds ? Tensor(zeros: [s.B, s.m, s.H * s.dv]) : nil
        attentionBackward(qs.base, ks.base, vs.base, o: os.base, lse: lse.base, gradOut: g.data,
                          dq: dq?.data, dk: dk?.data, dv: dv?.data, s, scale: sc, scale2: sc * log2e)
        return [dq, dk, dv]
    }
}

// MARK: - Forward

/// out (B, n, H·dv) = softmax₂(S₂) V per head with S₂ = scale2 · Q Kᵀ, and lse (B, H, n) =
/// log₂ Σⱼ 2^S₂. `out` must be zero on entry. Work items: (batch, head, query tile).
func attentionForward(_ q: UnsafePointer<Float>, _ k: UnsafePointer<Float>, _ v: UnsafePointer<Float>,
                      out: UnsafeMutablePointer<Float>, lse: UnsafeMutablePointer<Float>,
                      _ s: AttentionShape, scale2: Float) {
    let bq = AttentionTiling.forwardQueries, bk = AttentionTiling.forwardKeys
    let qTiles = (s.n + bq - 1) / bq
    Parallel.for(s.B * s.H * qTiles) { items in
        let scratch = Storage(count: bq * bk + 2 * bq)
        let scores = scratch.base                      // (rows, cols) tile of S₂, then of P
        let rowMax = scores + bq * bk, rowSum = rowMax + bq
        for item in items {
            let t = item % qTiles, bh = item / qTiles, h = bh % s.H, b = bh / s.H
            let i0 = t * bq, rows = min(bq, s.n - i0)
            let qt = q + (b * s.n + i0) * s.ldq + h * s.d          // (rows, d), stride ldq
            let kh = k + b * s.m * s.ldq + h * s.d                 // (m, d), stride ldq
            let vh = v + b * s.m * s.ldv + h * s.dv                // (m, dv), stride ldv
            let ot = out + (b * s.n + i0) * s.ldv + h * s.dv       // (rows, dv), stride ldv
            for r in 0..<rows { rowMax[r] = -.infinity; rowSum[r] = 0 }
            var j0 = 0
            while j0 < s.m {
                let cols = min(bk, s.m - j0)
                sgemm(transB: true, m: rows, n: cols, k: s.d, alpha: scale2, a: qt, lda: s.ldq,
                      b: kh + j0 * s.ldq, ldb: s.ldq, c: scores, ldc: cols)
                for r in 0..<rows {
                    let row = scores + r * cols, old = rowMax[r]
                    let mx = max(old, FastMath.maximum(row, count: cols))
                    let tileSum = FastMath.exp2Shifted(row, count: cols, shift: mx)
                    if mx != old {
                        // The maximum grew: earlier weights were relative to a smaller one.
                        let c = FastMath.exp2(old - mx)
                        rowSum[r] *= c
                        let o = ot + r * s.ldv
                        for j in 0..<s.dv { o[j] *= c }
                        rowMax[r] = mx
                    }
                    rowSum[r] += tileSum
                }
                sgemm(m: rows, n: s.dv, k: cols, a: scores, lda: cols, b: vh + j0 * s.ldv, ldb: s.ldv,
                      beta: 1, c: ot, ldc: s.ldv)
                j0 += cols
            }
            let lt = lse + bh * s.n + i0
            for r in 0..<rows {
                let inv = 1 / rowSum[r], o = ot + r * s.ldv
                for j in 0..<s.dv { o[j] *= inv }
                lt[r] = rowMax[r] + log2(rowSum[r])
            }
        }
    }
}

// MARK: - Backward

/// Writes dq, dk, dv (each optional, zero on entry) for the output gradient `gradOut` (B, n, H·dv).
/// With P = 2^(S₂ − lse) recomputed per tile:
///   dV += Pᵀ dO,  dP = dO Vᵀ,  dS = P ∘ (dP − Δ) with Δ = rowsum(dO ∘ O),
///   dQ += scale · dS K,  dK += scale · dSᵀ Q.
/// Work items are (batch, head, key group): an item owns the dK/dV rows of its key tiles, loops over
/// all query tiles, and adds into its own dQ (group 0 straight into `dq`, others into partials that
/// are summed in group order afterwards). No two threads ever write the same float.
func attentionBackward(_ q: UnsafePointer<Float>, _ k: UnsafePointer<Float>, _ v: UnsafePointer<Float>,
                       o: UnsafePointer<Float>, lse: UnsafePointer<Float>, gradOut: UnsafePointer<Float>,
                       dq: UnsafeMutablePointer<Float>?, dk: UnsafeMutablePointer<Float>?,
                       dv: UnsafeMutablePointer<Float>?, _ s: AttentionShape, scale: Float, scale2: Float) {
    if dq == nil && dk == nil && dv == nil { return }
    let bq = AttentionTiling.backwardQueries, bk = AttentionTiling.backwardKeys
    let needScoresGrad = dq != nil || dk != nil
    let BH = s.B * s.H
    let kTiles = (s.m + bk - 1) / bk, qTiles = (s.n + bq - 1) / bq
    let groups = max(1, min(kTiles, (AttentionTiling.backwardMinItems + BH - 1) / BH))

    // Δ (B, H, n) = Σ over a head's dv columns of dO ∘ O.
    let delta = Storage(count: needScoresGrad ? BH * s.n : 0)
    if needScoresGrad {
        let dp = delta.base
        Parallel.for(s.B * s.n, grain: max(1, 4096 / max(s.ldv, 1))) { rows in
            for bi in rows {
                let b = bi / s.n, i = bi % s.n
                for h in 0..<s.H {
                    let go = gradOut + bi * s.ldv + h * s.dv, oo = o + bi * s.ldv + h * s.dv
                    var acc: Float = 0
                    for j in 0..<s.dv { acc += go[j] * oo[j] }
                    dp[(b * s.H + h) * s.n + i] = acc
                }
            }
        }
    }
    // dQ partials of groups 1..<groups: (groups − 1, B, H, n, d), contiguous per head.
    let partial = Storage(count: dq != nil && groups > 1 ? (groups - 1) * BH * s.n * s.d : 0)

    Parallel.for(BH * groups) { items in
        let scratch = Storage(count: 2 * bq * bk)
        let p = scratch.base, ds = p + bq * bk                  // (rows, cols) tiles: P and dP → dS
        for item in items {
            let g = item % groups, bh = item / groups, h = bh % s.H, b = bh / s.H
            let qh = q + b * s.n * s.ldq + h * s.d, kh = k + b * s.m * s.ldq + h * s.d
            let vh = v + b * s.m * s.ldv + h * s.dv, goh = gradOut + b * s.n * s.ldv + h * s.dv
            let lh = lse + bh * s.n, deltaH = delta.base + bh * s.n
            // This item's dQ: (n, d) with row stride ldq in `dq`, or d in its partial.
            let dqh: UnsafeMutablePointer<Float>?, ldDq: Int
            if let dq, g == 0 { dqh = dq + b * s.n * s.ldq + h * s.d; ldDq = s.ldq }
            else if dq != nil { dqh = partial.base + ((g - 1) * BH + bh) * s.n * s.d; ldDq = s.d }
            else { dqh = nil; ldDq = 0 }

            for kt in (kTiles * g / groups)..<(kTiles * (g + 1) / groups) {
                let j0 = kt * bk, cols = min(bk, s.m - j0)
                let kt0 = kh + j0 * s.ldq, vt0 = vh + j0 * s.ldv
                for qt in 0..<qTiles {
                    let i0 = qt * bq, rows = min(bq, s.n - i0)
                    let qt0 = qh + i0 * s.ldq, got = goh + i0 * s.ldv
                    // P = 2^(S₂ − lse), (rows, cols).
                    sgemm(transB: true, m: rows, n: cols, k: s.d, alpha: scale2, a: qt0, lda: s.ldq,
                          b: kt0, ldb: s.ldq, c: p, ldc: cols)
                    for r in 0..<rows { FastMath.exp2Shifted(p + r * cols, count: cols, shift: lh[i0 + r]) }
                    // dV (cols, dv) += Pᵀ dO.
                    if let dv {
                        sgemm(transA: true, m: cols, n: s.dv, k: rows, a: p, lda: cols, b: got, ldb: s.ldv,
                              beta: 1, c: dv + (b * s.m + j0) * s.ldv + h * s.dv, ldc: s.ldv)
                    }
                    guard needScoresGrad else { continue }
                    // dS = P ∘ (dO Vᵀ − Δ), (rows, cols).
                    sgemm(transB: true, m: rows, n: cols, k: s.dv, a: got, lda: s.ldv, b: vt0, ldb: s.ldv,
                          c: ds, ldc: cols)
                    for r in 0..<rows {
                        let pr = p + r * cols, dr = ds + r * cols, dl = deltaH[i0 + r]
                        for j in 0..<cols { dr[j] = pr[j] * (dr[j] - dl) }
                    }
                    // dQ (rows, d) += scale · dS K;  dK (cols, d) += scale · dSᵀ Q.
                    if let dqh {
                        sgemm(m: rows, n: s.d, k: cols, alpha: scale, a: ds, lda: cols, b: kt0, ldb: s.ldq,
                              beta: 1, c: dqh + i0 * ldDq, ldc: ldDq)
                    }
                    if let dk {
                        sgemm(transA: true, m: cols, n: s.d, k: rows, alpha: scale, a: ds, lda: cols, b: qt0,
                              ldb: s.ldq, beta: 1, c: dk + (b * s.m + j0) * s.ldq + h * s.d, ldc: s.ldq)
                    }
                }
            }
        }
    }

    // dQ += partials, in group order (fixed by the shapes, not by the threads).
    if let dq, groups > 1 {
        let pp = partial.base
        Parallel.for(s.B * s.n, grain: max(1, 4096 / max(s.ldq, 1))) { rows in
            for bi in rows {
                let b = bi / s.n, i = bi % s.n
                for h in 0..<s.H {
                    let dst = dq + bi * s.ldq + h * s.d
                    for g in 1..<groups {
                        let src = pp + (((g - 1) * BH + b * s.H + h) * s.n + i) * s.d
                        for c in 0..<s.d { dst[c] += src[c] }
                    }
                }
            }
        }
    }
}
