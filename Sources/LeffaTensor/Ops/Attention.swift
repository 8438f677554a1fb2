// Multi-head scaled-dot-product attention that never holds the n×m score matrix: the UNets'
// self-attention over 2n tokens and the Leffa flow field (values = token coordinates) both run
// through here, at sizes where one score matrix per head would be gigabytes.
//
// Forward (FlashAttention style): each work item is one (batch, head, query tile). It walks the key
// tiles with an online softmax — running maximum and sum, rescaling the partial output when the
// maximum grows — and keeps only the per-query log-sum-exp (B, H, n) for backward.
// Backward (FlashAttention-2 style) recomputes each score tile from Q, K and that log-sum-exp.
// Queries sit in SIMD lanes: a tile holds 16 queries side by side (Qᵀ packed d × 16), so scores
// come out as Sᵀ (keys × 16) and the whole softmax — maximum, exponentials, sums, rescaling — is
// lane-wise vector arithmetic with no horizontal reductions. All products run through the
// register-tiled kernels of AttentionKernels.swift, reading K, V, dO in place.
// Scores live in base 2: Qᵀ is packed pre-multiplied by scale·log₂e, so a softmax weight is one
// exp2 (FastMath) with no extra multiply; `lse` is log₂ Σ 2^S₂.
//
// Extra memory is O(n·d) plus fixed-size per-thread tiles (allocated as Storage, so they are
// counted by `Storage.live`). Every tile is computed by one thread in a fixed order, so results do
// not depend on the thread count. Not here: masks, dropout, causal attention, the head mean.
import Foundation

/// Tile sizes. Internal and mutable so tests and benchmarks can sweep them. Query counts are used
/// in groups of 16 (the lanes), rounded up. Defaults measured on this 2-core Zen 2 at n = 3072,
/// m = 6144, 8 heads of 40 (1 thread, fraction of the sgemm peak): the forward gains from many
/// queries per item, which read each key/value tile from memory once for all their lane groups
/// (16 queries 46 %, 64 62 %, 256 71–74 %, 512 74–75 %, 1024 76–79 %); the backward from long key
/// tiles (64 keys 73 %, 256 83 %).
enum AttentionTiling {
    /// Forward: queries per work item and keys per score tile.
    nonisolated(unsafe) static var forwardQueries = 512
    nonisolated(unsafe) static var forwardKeys = 256
    /// Backward: queries per block (the contraction length of dK and dV) and keys per work item tile.
    nonisolated(unsafe) static var backwardQueries = 64
    nonisolated(unsafe) static var backwardKeys = 256
    /// Backward work items wanted at least: when batch·heads is smaller, each head's key tiles are
    /// split into groups with private dQ partials summed in group order. A constant (not the
    /// thread count), so the bits do not depend on the machine.
    nonisolated(unsafe) static var backwardMinItems = 8
}

/// The sizes of one attention call. Heads are column blocks of the token rows, so row strides
/// (`ldq`, `ldv`) are H·d and H·dv: the kernels read a head in place.
struct AttentionShape {
    let B: Int, n: Int, m: Int, H: Int, d: Int, dv: Int
    var ldq: Int { H * d }
    var ldv: Int { H * dv }
}

/// Multi-head attention softmax(scale · Q Kᵀ) V per head, never materialising the n×m score matrix.
/// q: (B, n, H·d), k: (B, m, H·d), v: (B, m, H·dv) → (B, n, H·dv). Head h uses columns h·d..<(h+1)·d
/// (PyTorch/diffusers head layout, no permute needed). scale defaults to 1/√d.
public func attention(_ q: Tensor, _ k: Tensor, _ v: Tensor, heads: Int, scale: Float? = nil) -> Tensor {
    let s = AttentionShape(checking: q, k, v, heads: heads)
    let sc = scale ?? 1 / Float(s.d).squareRoot()

    let out = Tensor(zeros: [s.B, s.n, s.H * s.dv])
    let lse = Storage(count: s.B * s.H * s.n) // (B, H, n), base 2
    attentionForward(q.data, k.data, v.data, out: out.data, lse: lse.base, s, scale2: sc * log2e)

    let qs = q.storage, ks = k.storage, vs = v.storage, os = out.storage
    let qNeeds = q.requiresGrad, kNeeds = k.requiresGrad, vNeeds = v.requiresGrad
    return out.recording("attention", [q, k, v]) { g in
        let dq = qNeeds ? Tensor(zeros: [s.B, s.n, s.H * s.d]) : nil
        let dk = kNeeds ? Tensor(zeros: [s.B, s.m, s.H * s.d]) : nil
        let dv = vNeeds ? Tensor(zeros: [s.B, s.m, s.H * s.dv]) : nil
        attentionBackward(
            qs.base, ks.base, vs.base, o: os.base, lse: lse.base, gradOut: g.data,
            dq: dq?.data, dk: dk?.data, dv: dv?.data, s, scale: sc, scale2: sc * log2e)
        return [dq, dk, dv]
    }
}

/// What `attention(_:_:_:heads:scale:sharing:)` computes besides the attention, from the same
/// score tiles: a softmax of the same queries over key rows `keys` at the scores divided by
/// `temperature`, weighting `values` (B, keys.count, H·dv₂), constants that get no gradient.
/// The Leffa flow is one: target queries over the reference keys at temperature τ, values = the
/// reference grid's coordinates.
public struct SharedScores {
    public var keys: Range<Int>
    public var temperature: Float
    public var values: Tensor
    public init(keys: Range<Int>, temperature: Float, values: Tensor) {
        self.keys = keys; self.temperature = temperature; self.values = values
    }
}

/// Attention and, from the same scores, a second softmax (`SharedScores`) → (out (B, n, H·dv),
/// second (B, n, H·dv₂)). The second costs its exponentials and its dv₂-wide products only: no
/// second Q Kᵀ in forward, and its score gradient joins the main one before the dQ and dK
/// products in backward, instead of a whole attention of its own (three products of width d).
public func attention(
    _ q: Tensor, _ k: Tensor, _ v: Tensor, heads: Int, scale: Float? = nil,
    sharing shared: SharedScores
) -> (out: Tensor, second: Tensor) {
    let s = AttentionShape(checking: q, k, v, heads: heads)
    let values = shared.values
    shapeCheck(
        shared.keys.lowerBound >= 0 && shared.keys.upperBound <= s.m && !shared.keys.isEmpty && values.rank == 3
            && values.shape[0] == s.B && values.shape[1] == shared.keys.count && values.shape[2] % heads == 0,
        "attention(sharing: keys \(shared.keys))", k.shape, values.shape,
        expected: "a non-empty range of k's \(s.m) rows and values (B, \(shared.keys.count), H·dv₂)")
    precondition(
        !values.requiresGrad, "attention(sharing:): the second softmax's values get no gradient; pass a constant")
    precondition(shared.temperature > 0, "attention(sharing:): temperature \(shared.temperature) must be positive")
    let sc = scale ?? 1 / Float(s.d).squareRoot(), dv2 = values.shape[2] / heads
    let out = Tensor(zeros: [s.B, s.n, s.H * s.dv]), second = Tensor(zeros: [s.B, s.n, s.H * dv2])
    let lse = Storage(count: s.B * s.H * s.n), lse2 = Storage(count: s.B * s.H * s.n)
    let part = SecondSoftmax(
        keys: shared.keys, ratio: 1 / shared.temperature, H: s.H, dv: dv2, values: values.data,
        out: second.data, lse: lse2.base)
    attentionForward(q.data, k.data, v.data, out: out.data, lse: lse.base, s, scale2: sc * log2e, second: part)
    GraphReads.current?.note([q, k, v])
    guard GradMode.enabled, q.requiresGrad || k.requiresGrad || v.requiresGrad else { return (out, second) }

    // Two outputs, one backward: each output's node hands its gradient to an anchor created
    // before them, which runs after both (newest first) and does the kernel's backward once.
    final class Gradients { var out: Tensor?, second: Tensor? }
    let grads = Gradients()
    // `part`'s pointers stay valid while the closure holds these storages.
    let qs = q.storage, ks = k.storage, vs = v.storage, os = out.storage, s2 = second.storage, vals = values.storage
    let qNeeds = q.requiresGrad, kNeeds = k.requiresGrad, vNeeds = v.requiresGrad
    let anchor = Tensor(zeros: [0]).recording("attention (shared scores)", [q, k, v]) { _ in
        let dq = qNeeds ? Tensor(zeros: [s.B, s.n, s.H * s.d]) : nil
        let dk = kNeeds ? Tensor(zeros: [s.B, s.m, s.H * s.d]) : nil
        let dv = vNeeds ? Tensor(zeros: [s.B, s.m, s.H * s.dv]) : nil
        let g = grads.out ?? Tensor(zeros: [s.B, s.n, s.H * s.dv])
        var f = part
        f.gradOut = grads.second.map { UnsafePointer($0.data) }
        withExtendedLifetime((grads.second, g, s2, vals, lse2)) {
            attentionBackward(
                qs.base, ks.base, vs.base, o: os.base, lse: lse.base, gradOut: g.data,
                dq: dq?.data, dk: dk?.data, dv: dv?.data, s, scale: sc, scale2: sc * log2e, second: f)
        }
        grads.out = nil; grads.second = nil
        return [dq, dk, dv]
    }
    let o = out.recording("attention (shared scores) output", [anchor]) { g in
        grads.out = g; return [Tensor(zeros: [0])]
    }
    let o2 = second.recording("attention (shared scores) second output", [anchor]) { g in
        grads.second = g; return [Tensor(zeros: [0])]
    }
    return (o, o2)
}

let log2e: Float = 1.44269504088896341

extension AttentionShape {
    /// The sizes of q (B, n, H·d), k (B, m, H·d), v (B, m, H·dv), or a shape error naming them.
    init(checking q: Tensor, _ k: Tensor, _ v: Tensor, heads: Int) {
        shapeCheck(
            q.rank == 3 && k.rank == 3 && v.rank == 3, "attention", q.shape, k.shape, v.shape,
            expected: "q (B, n, H·d), k (B, m, H·d), v (B, m, H·dv)")
        shapeCheck(
            heads >= 1 && q.shape[2] % heads == 0 && v.shape[2] % heads == 0, "attention(heads: \(heads))",
            q.shape, v.shape, expected: "channel counts divisible by \(heads) heads")
        shapeCheck(
            k.shape[0] == q.shape[0] && k.shape[2] == q.shape[2] && v.shape[0] == q.shape[0]
                && v.shape[1] == k.shape[1],
            "attention", q.shape, k.shape, v.shape, expected: "q (B, n, H·d), k (B, m, H·d), v (B, m, H·dv)")
        self.init(B: q.shape[0], n: q.shape[1], m: k.shape[1], H: heads, d: q.shape[2] / heads, dv: v.shape[2] / heads)
    }
}

// MARK: - Packing

/// Queries per lane group: two 8-float vectors.
let attentionLanes = 16

/// Qᵀ of queries i0 ..< i0 + count (≤ 16) of one head: dst[p·16 + lane] = factor · src[(i0 + lane)·ld + p],
/// lanes past `count` zero.
@inline(__always)
func packTransposed(
    _ src: UnsafePointer<Float>, ld: Int, width: Int, count: Int, factor: Float,
    into dst: UnsafeMutablePointer<Float>
) {
    let L = attentionLanes
    if count < L { dst.update(repeating: 0, count: width * L) }
    for lane in 0..<count {
        let row = src + lane * ld
        for p in 0..<width { dst[p * L + lane] = factor * row[p] }
    }
}

/// Rows i ..< i + count of one head into a dense (count × pad) block, columns past `width` zero.
@inline(__always)
func packRows(
    _ src: UnsafePointer<Float>, ld: Int, width: Int, pad: Int, count: Int,
    into dst: UnsafeMutablePointer<Float>
) {
    for r in 0..<count {
        let row = src + r * ld, out = dst + r * pad
        out.update(from: row, count: width)
        if pad > width { (out + width).update(repeating: 0, count: pad - width) }
    }
}

@inline(__always) func roundUp(_ x: Int, _ multiple: Int) -> Int { (x + multiple - 1) / multiple * multiple }

// MARK: - A second softmax on the same scores

/// A second softmax read from the main attention's score tiles: over key rows `keys`, at the
/// main (base-2) scores times `ratio`, weighting its own values (B, keys.count, H·dv). Forward
/// writes `out` and `lse`; backward reads them and `gradOut`, adding its score gradient to the
/// main one before the dQ and dK products.
struct SecondSoftmax {
    let keys: Range<Int>, ratio: Float, H: Int, dv: Int
    let values: UnsafePointer<Float>
    let out: UnsafeMutablePointer<Float> // (B, n, H·dv)
    let lse: UnsafeMutablePointer<Float> // (B, H, n), base 2
    var gradOut: UnsafePointer<Float>? = nil // (B, n, H·dv), backward only
    var ldv: Int { H * dv }

    /// Rows lo ..< hi of the key tile j0 ..< j0 + cols that are its keys (lo == hi: none).
    @inline(__always) func overlap(_ j0: Int, _ cols: Int) -> (Int, Int) {
        let lo = max(keys.lowerBound, j0), hi = min(keys.upperBound, j0 + cols)
        return lo < hi ? (lo - j0, hi - j0) : (0, 0)
    }
    /// Its value row for key row j of batch b, head h.
    @inline(__always) func valueRow(_ b: Int, _ h: Int, _ j: Int) -> UnsafePointer<Float> {
        values + (b * keys.count + j - keys.lowerBound) * ldv + h * dv
    }
}

/// One key tile of the online softmax of 16 lanes: Sᵀ rows (count × 16, times `ratio` if given)
/// → Pᵀ = 2^(Sᵀ − max) into `p` (may be the scores themselves), the running max and sum in
/// `stats` (16 + 16) updated, and Oᵀ (outRows × 16) rescaled when the maximum grew.
@inline(__always)
func onlineSoftmaxStep(
    _ st: UnsafeMutablePointer<Float>, count: Int, ratio: Float?, into p: UnsafeMutablePointer<Float>,
    stats: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>, outRows: Int
) {
    let L = attentionLanes, r = Lanes(repeating: ratio ?? 1)
    @inline(__always) func score(_ j: Int, _ half: Int) -> Lanes {
        ratio == nil ? loadLanes(st + j * L + half) : r * loadLanes(st + j * L + half)
    }
    let mx = stats, sum = stats + L
    var m0 = loadLanes(mx), m1 = loadLanes(mx + 8)
    let old0 = m0, old1 = m1
    for j in 0..<count { m0 = FastMath.vmax(m0, score(j, 0)); m1 = FastMath.vmax(m1, score(j, 8)) }
    var l0 = loadLanes(sum), l1 = loadLanes(sum + 8)
    if any(m0 .> old0) || any(m1 .> old1) {
        // The maximum grew: earlier weights were relative to a smaller one.
        let c0 = softmaxWeight(old0 - m0), c1 = softmaxWeight(old1 - m1)
        l0 *= c0; l1 *= c1
        for c in 0..<outRows {
            let o = out + c * L
            storeLanes(loadLanes(o) * c0, o); storeLanes(loadLanes(o + 8) * c1, o + 8)
        }
        storeLanes(m0, mx); storeLanes(m1, mx + 8)
    }
    for j in 0..<count {
        let p0 = softmaxWeight(score(j, 0) - m0), p1 = softmaxWeight(score(j, 8) - m1)
        storeLanes(p0, p + j * L); storeLanes(p1, p + j * L + 8)
        l0 += p0; l1 += p1
    }
    storeLanes(l0, sum); storeLanes(l1, sum + 8)
}

/// The end of a lane group's online softmax: O = Oᵀ / sum into `count` rows of `out`, lse = max + log₂ sum.
@inline(__always)
func finishSoftmax(
    _ ot: UnsafePointer<Float>, stats: UnsafePointer<Float>, dv: Int, count: Int,
    out: UnsafeMutablePointer<Float>, ldo: Int, lse: UnsafeMutablePointer<Float>
) {
    let L = attentionLanes
    for lane in 0..<count {
        let inv = 1 / stats[L + lane], o = out + lane * ldo
        for c in 0..<dv { o[c] = ot[c * L + lane] * inv }
        lse[lane] = stats[lane] + log2(stats[L + lane])
    }
}

// MARK: - Forward

/// out (B, n, H·dv) = softmax₂(S₂) V per head with S₂ = scale2 · Q Kᵀ, and lse (B, H, n) =
/// log₂ Σⱼ 2^S₂. Work items: (batch, head, query tile); a tile is `groups` lane groups of 16
/// queries that share each key tile while it is in cache.
func attentionForward(
    _ q: UnsafePointer<Float>, _ k: UnsafePointer<Float>, _ v: UnsafePointer<Float>,
    out: UnsafeMutablePointer<Float>, lse: UnsafeMutablePointer<Float>,
    _ s: AttentionShape, scale2: Float, second: SecondSoftmax? = nil
) {
    let L = attentionLanes
    let groups = max(1, roundUp(AttentionTiling.forwardQueries, L) / L), bq = groups * L
    let bk = max(1, AttentionTiling.forwardKeys)
    let qTiles = (s.n + bq - 1) / bq
    let dv2 = second?.dv ?? 0
    Parallel.for(s.B * s.H * qTiles) { items in
        // Per group: Qᵀ (d × 16), Oᵀ (dv × 16), running max and sum (16 each); Sᵀ/Pᵀ tiles for
        // a pair of groups; the second softmax's Oᵀ, max and sum per group and its Pᵀ tile.
        let scratch = Storage(
            count: groups * (s.d * L + s.dv * L + 2 * L) + 2 * bk * L
                + (second == nil ? 0 : groups * (dv2 * L + 2 * L) + bk * L))
        let qt = scratch.base, ot = qt + groups * s.d * L, stats = ot + groups * s.dv * L
        let st = stats + groups * 2 * L
        let ot2 = st + 2 * bk * L, stats2 = ot2 + groups * dv2 * L, st2 = stats2 + groups * 2 * L
        for item in items {
            let t = item % qTiles, bh = item / qTiles, h = bh % s.H, b = bh / s.H
            let i0 = t * bq, rows = min(bq, s.n - i0), live = (rows + L - 1) / L
            for g in 0..<live {
                packTransposed(
                    q + (b * s.n + i0 + g * L) * s.ldq + h * s.d, ld: s.ldq, width: s.d,
                    count: min(L, rows - g * L), factor: scale2, into: qt + g * s.d * L)
            }
            ot.update(repeating: 0, count: live * s.dv * L)
            for g in 0..<live {
                (stats + g * 2 * L).update(repeating: -.infinity, count: L)
                (stats + g * 2 * L + L).update(repeating: 0, count: L)
            }
            if second != nil {
                ot2.update(repeating: 0, count: live * dv2 * L)
                for g in 0..<live {
                    (stats2 + g * 2 * L).update(repeating: -.infinity, count: L)
                    (stats2 + g * 2 * L + L).update(repeating: 0, count: L)
                }
            }
            var j0 = 0
            while j0 < s.m {
                let cols = min(bk, s.m - j0)
                let kb = k + (b * s.m + j0) * s.ldq + h * s.d, vb = v + (b * s.m + j0) * s.ldv + h * s.dv
                let (lo, hi) = second?.overlap(j0, cols) ?? (0, 0)
                // Lane groups in pairs: one product call covers both (their Qᵀ, Sᵀ and Oᵀ are
                // packed apart, hence the panel strides), then each one's softmax.
                for g in stride(from: 0, to: live, by: 2) {
                    let pair = min(2, live - g)
                    // Sᵀ (cols × 16 per group) = K Qᵀ.
                    outerProduct(
                        rows: cols, width: pair * L, len: s.d, a: kb, ars: s.ldq, axs: 1,
                        b: qt + g * s.d * L, bxs: L, bps: s.d * L, c: st, crs: L, cps: bk * L, accumulate: false)
                    for e in 0..<pair {
                        let ge = g + e, ste = st + e * bk * L
                        if let f = second, lo < hi {
                            // The second softmax first: the main one overwrites Sᵀ with Pᵀ.
                            onlineSoftmaxStep(
                                ste + lo * L, count: hi - lo, ratio: f.ratio, into: st2, stats: stats2 + ge * 2 * L,
                                out: ot2 + ge * dv2 * L, outRows: dv2)
                            outerProduct(
                                rows: dv2, width: L, len: hi - lo, a: f.valueRow(b, h, j0 + lo), ars: 1, axs: f.ldv,
                                b: st2, bxs: L, c: ot2 + ge * dv2 * L, crs: L, accumulate: true)
                        }
                        onlineSoftmaxStep(
                            ste, count: cols, ratio: nil, into: ste, stats: stats + ge * 2 * L,
                            out: ot + ge * s.dv * L, outRows: s.dv)
                    }
                    // Oᵀ (dv × 16 per group) += Vᵀ Pᵀ.
                    outerProduct(
                        rows: s.dv, width: pair * L, len: cols, a: vb, ars: 1, axs: s.ldv,
                        b: st, bxs: L, bps: bk * L, c: ot + g * s.dv * L, crs: L, cps: s.dv * L, accumulate: true)
                }
                j0 += cols
            }
            for g in 0..<live {
                let count = min(L, rows - g * L), at = b * s.n + i0 + g * L
                finishSoftmax(
                    ot + g * s.dv * L, stats: stats + g * 2 * L, dv: s.dv, count: count,
                    out: out + at * s.ldv + h * s.dv, ldo: s.ldv, lse: lse + bh * s.n + i0 + g * L)
                if let f = second {
                    finishSoftmax(
                        ot2 + g * dv2 * L, stats: stats2 + g * 2 * L, dv: dv2, count: count,
                        out: f.out + at * f.ldv + h * dv2, ldo: f.ldv, lse: f.lse + bh * s.n + i0 + g * L)
                }
            }
        }
    }
}

// MARK: - Backward

/// Writes dq, dk, dv (each optional, zero on entry) for the output gradient `gradOut` (B, n, H·dv).
/// With P = 2^(S₂ − lse) recomputed per tile:
///   dV += Pᵀ dO,  dP = dO Vᵀ,  dS = scale · P ∘ (dP − Δ) with Δ = rowsum(dO ∘ O),
///   dQ += dS K,  dK += dSᵀ Q.
/// Q and dO are packed once up front (Qᵀ and dOᵀ per lane group, and rows padded to a multiple of 8
/// when a head's width is not one). Work items are (batch, head, key group): an item owns the dK/dV
/// rows of its key tiles and loops over all query blocks; dQ is accumulated transposed, one copy
/// per key group, and the copies are summed in group order at the end. No two threads ever write
/// the same float, and no sum depends on the thread count.
func attentionBackward(
    _ q: UnsafePointer<Float>, _ k: UnsafePointer<Float>, _ v: UnsafePointer<Float>,
    o: UnsafePointer<Float>, lse: UnsafePointer<Float>, gradOut: UnsafePointer<Float>,
    dq: UnsafeMutablePointer<Float>?, dk: UnsafeMutablePointer<Float>?,
    dv: UnsafeMutablePointer<Float>?, _ s: AttentionShape, scale: Float, scale2: Float,
    second: SecondSoftmax? = nil
) {
    if dq == nil && dk == nil && dv == nil { return }
    let L = attentionLanes
    let qGroups = max(1, roundUp(AttentionTiling.backwardQueries, L) / L), bq = qGroups * L
    let bk = max(1, AttentionTiling.backwardKeys)
    let needScoresGrad = dq != nil || dk != nil
    let BH = s.B * s.H
    let kTiles = (s.m + bk - 1) / bk, qTiles = (s.n + bq - 1) / bq, nG = (s.n + L - 1) / L
    let groups = max(1, min(kTiles, (AttentionTiling.backwardMinItems + BH - 1) / BH))
    // The second softmax matters only through dS (its values are constants).
    let f = needScoresGrad && second?.gradOut != nil ? second : nil
    let dv2 = f?.dv ?? 0

    // Packed per (batch·head, lane group): scale2·Qᵀ (d × 16), dOᵀ (dv × 16), lse (+∞ in padding
    // lanes, so their P is 0) and Δ = Σ dO ∘ O. Rows of Q and dO padded to a multiple of 8 only if
    // a head's width is not one already (else read in place).
    let dPad = roundUp(s.d, 8), dvPad = roundUp(s.dv, 8)
    let padQ = dk != nil && dPad != s.d, padGo = dv != nil && dvPad != s.dv
    let qtAll = Storage(count: BH * nG * s.d * L)
    let dotAll = Storage(count: needScoresGrad ? BH * nG * s.dv * L : 0)
    let lseAll = Storage(count: BH * nG * L), deltaAll = Storage(count: BH * nG * L)
    let qRows = Storage(count: padQ ? BH * s.n * dPad : 0), goRows = Storage(count: padGo ? BH * s.n * dvPad : 0)
    // The same for the second softmax: its dOᵀ, lse and Δ per lane group.
    let dot2All = Storage(count: BH * nG * dv2 * L)
    let lse2All = Storage(count: f == nil ? 0 : BH * nG * L), delta2All = Storage(count: f == nil ? 0 : BH * nG * L)
    Parallel.for(BH * nG) { range in
        for item in range {
            let G = item % nG, bh = item / nG, h = bh % s.H, b = bh / s.H
            let i0 = G * L, count = min(L, s.n - i0)
            let qi = q + (b * s.n + i0) * s.ldq + h * s.d, gi = gradOut + (b * s.n + i0) * s.ldv + h * s.dv
            packTransposed(qi, ld: s.ldq, width: s.d, count: count, factor: scale2, into: qtAll.base + item * s.d * L)
            let lanes = item * L
            for lane in 0..<L {
                lseAll.base[lanes + lane] = lane < count ? lse[bh * s.n + i0 + lane] : .infinity
                deltaAll.base[lanes + lane] = 0
            }
            if needScoresGrad {
                packTransposed(gi, ld: s.ldv, width: s.dv, count: count, factor: 1, into: dotAll.base + item * s.dv * L)
                let oi = o + (b * s.n + i0) * s.ldv + h * s.dv
                for lane in 0..<count {
                    var acc: Float = 0
                    for c in 0..<s.dv { acc += gi[lane * s.ldv + c] * oi[lane * s.ldv + c] }
                    deltaAll.base[lanes + lane] = acc
                }
            }
            if let f, let g2 = f.gradOut {
                let gi2 = g2 + (b * s.n + i0) * f.ldv + h * dv2, oi2 = f.out + (b * s.n + i0) * f.ldv + h * dv2
                packTransposed(gi2, ld: f.ldv, width: dv2, count: count, factor: 1, into: dot2All.base + item * dv2 * L)
                for lane in 0..<L {
                    lse2All.base[lanes + lane] = lane < count ? f.lse[bh * s.n + i0 + lane] : .infinity
                    delta2All.base[lanes + lane] = 0
                }
                for lane in 0..<count {
                    var acc: Float = 0
                    for c in 0..<dv2 { acc += gi2[lane * f.ldv + c] * oi2[lane * f.ldv + c] }
                    delta2All.base[lanes + lane] = acc
                }
            }
            if padQ {
                packRows(qi, ld: s.ldq, width: s.d, pad: dPad, count: count, into: qRows.base + (bh * s.n + i0) * dPad)
            }
            if padGo {
                packRows(
                    gi, ld: s.ldv, width: s.dv, pad: dvPad, count: count, into: goRows.base + (bh * s.n + i0) * dvPad)
            }
        }
    }
    // dQᵀ per key group: (groups, B·H, lane group, d, 16).
    let dqT = Storage(count: dq != nil ? groups * BH * nG * s.d * L : 0)

    Parallel.for(BH * groups) { items in
        // Per key tile: Pᵀ and dSᵀ (bk × bq, a block's lane groups side by side), dK and dV sums.
        let scratch = Storage(count: 2 * bk * bq + bk * (dPad + dvPad))
        let pt = scratch.base, dst = pt + bk * bq, dkAcc = dst + bk * bq, dvAcc = dkAcc + bk * dPad
        let scaleV = Lanes(repeating: scale), ratio2 = Lanes(repeating: f?.ratio ?? 1)
        let scale2V = Lanes(repeating: scale * (f?.ratio ?? 1))
        for item in items {
            let g = item % groups, bh = item / groups, h = bh % s.H, b = bh / s.H
            let kh = k + b * s.m * s.ldq + h * s.d, vh = v + b * s.m * s.ldv + h * s.dv
            // Rows of Q and dO for dK and dV: packed, or in place.
            let qr = padQ ? UnsafePointer(qRows.base + bh * s.n * dPad) : q + b * s.n * s.ldq + h * s.d
            let ldQr = padQ ? dPad : s.ldq
            let gr = padGo ? UnsafePointer(goRows.base + bh * s.n * dvPad) : gradOut + b * s.n * s.ldv + h * s.dv
            let ldGr = padGo ? dvPad : s.ldv
            let dqg = dqT.base + (g * BH + bh) * nG * s.d * L

            for kt in (kTiles * g / groups)..<(kTiles * (g + 1) / groups) {
                let j0 = kt * bk, cols = min(bk, s.m - j0)
                let kb = kh + j0 * s.ldq, vb = vh + j0 * s.ldv
                let (lo, hi) = f?.overlap(j0, cols) ?? (cols, cols)
                dkAcc.update(repeating: 0, count: cols * dPad)
                dvAcc.update(repeating: 0, count: cols * dvPad)
                for qtile in 0..<qTiles {
                    let i0 = qtile * bq, rows = min(bq, s.n - i0), live = (rows + L - 1) / L
                    // Lane groups in pairs: one product call covers both (side by side in Pᵀ and
                    // dSᵀ, packed apart in Qᵀ, dOᵀ and dQᵀ, hence the panel strides).
                    for lg0 in stride(from: 0, to: live, by: 2) {
                        let pair = min(2, live - lg0), G0 = qtile * qGroups + lg0, packed0 = bh * nG + G0
                        // Pᵀ (cols × 16 per group) = 2^(K Qᵀ − lse); dSᵀ = scale · Pᵀ ∘ (V dOᵀ − Δ).
                        outerProduct(
                            rows: cols, width: pair * L, len: s.d, a: kb, ars: s.ldq, axs: 1,
                            b: qtAll.base + packed0 * s.d * L, bxs: L, bps: s.d * L, c: pt + lg0 * L, crs: bq,
                            accumulate: false)
                        if needScoresGrad {
                            outerProduct(
                                rows: cols, width: pair * L, len: s.dv, a: vb, ars: s.ldv, axs: 1,
                                b: dotAll.base + packed0 * s.dv * L, bxs: L, bps: s.dv * L, c: dst + lg0 * L,
                                crs: bq, accumulate: false)
                        }
                        for lg in lg0..<(lg0 + pair) {
                            let packed = bh * nG + qtile * qGroups + lg
                            let pg = pt + lg * L, dsg = dst + lg * L
                            let lp = lseAll.base + packed * L, dp = deltaAll.base + packed * L
                            let l0 = loadLanes(lp), l1 = loadLanes(lp + 8), d0 = loadLanes(dp), d1 = loadLanes(dp + 8)
                            @inline(__always) func weights(_ j: Int) -> (Lanes, Lanes) {
                                let pj = pg + j * bq
                                let p0 = softmaxWeight(loadLanes(pj) - l0), p1 = softmaxWeight(loadLanes(pj + 8) - l1)
                                storeLanes(p0, pj); storeLanes(p1, pj + 8)
                                return (p0, p1)
                            }
                            @inline(__always) func scoresGrad(_ j: Int, _ p0: Lanes, _ p1: Lanes) -> (Lanes, Lanes) {
                                let dj = dsg + j * bq
                                return (scaleV * (p0 * (loadLanes(dj) - d0)), scaleV * (p1 * (loadLanes(dj + 8) - d1)))
                            }
                            // Keys outside the second softmax's (all of them without one).
                            @inline(__always) func mainOnly(_ range: Range<Int>) {
                                for j in range {
                                    let (p0, p1) = weights(j)
                                    if needScoresGrad {
                                        let (ds0, ds1) = scoresGrad(j, p0, p1)
                                        storeLanes(ds0, dsg + j * bq); storeLanes(ds1, dsg + j * bq + 8)
                                    }
                                }
                            }
                            mainOnly(0..<lo); mainOnly(hi..<cols)
                            if let f, lo < hi {
                                // The second softmax's keys: its dS, scale·ratio · P₂ ∘ (dP₂ − Δ₂)
                                // with P₂ = 2^(ratio·S₂ − lse₂) and dP₂ = V₂ dO₂ᵀ (dv₂ terms), joins
                                // the main one.
                                let lp2 = lse2All.base + packed * L, dp2 = delta2All.base + packed * L,
                                    go2 = dot2All.base + packed * dv2 * L
                                let m0 = loadLanes(lp2), m1 = loadLanes(lp2 + 8), e0 = loadLanes(dp2),
                                    e1 = loadLanes(dp2 + 8)
                                for j in lo..<hi {
                                    let s0 = ratio2 * loadLanes(pg + j * bq), s1 = ratio2 * loadLanes(pg + j * bq + 8)
                                    let (p0, p1) = weights(j)
                                    var (ds0, ds1) = scoresGrad(j, p0, p1)
                                    let w0 = softmaxWeight(s0 - m0), w1 = softmaxWeight(s1 - m1)
                                    let vr = f.valueRow(b, h, j0 + j)
                                    var g0 = -e0, g1 = -e1
                                    for c in 0..<dv2 {
                                        let x = Lanes(repeating: vr[c])
                                        g0.addProduct(x, loadLanes(go2 + c * L));
                                        g1.addProduct(x, loadLanes(go2 + c * L + 8))
                                    }
                                    ds0.addProduct(scale2V, w0 * g0); ds1.addProduct(scale2V, w1 * g1)
                                    storeLanes(ds0, dsg + j * bq); storeLanes(ds1, dsg + j * bq + 8)
                                }
                            }
                        }
                        // dQᵀ (d × 16 per group) += Kᵀ dSᵀ.
                        if dq != nil {
                            outerProduct(
                                rows: s.d, width: pair * L, len: cols, a: kb, ars: 1, axs: s.ldq,
                                b: dst + lg0 * L, bxs: bq, c: dqg + G0 * s.d * L, crs: L, cps: s.d * L,
                                accumulate: true)
                        }
                    }
                    // dV (cols × dv) += P dO and dK (cols × d) += dS Q over this block's queries.
                    if dv != nil {
                        outerProduct(
                            rows: cols, width: dvPad, len: rows, a: pt, ars: bq, axs: 1,
                            b: gr + i0 * ldGr, bxs: ldGr, c: dvAcc, crs: dvPad, accumulate: true)
                    }
                    if dk != nil {
                        outerProduct(
                            rows: cols, width: dPad, len: rows, a: dst, ars: bq, axs: 1,
                            b: qr + i0 * ldQr, bxs: ldQr, c: dkAcc, crs: dPad, accumulate: true)
                    }
                }
                // This item owns these key rows.
                for j in 0..<cols {
                    if let dk {
                        let row = dk + (b * s.m + j0 + j) * s.ldq + h * s.d, acc = dkAcc + j * dPad
                        for p in 0..<s.d { row[p] += acc[p] }
                    }
                    if let dv {
                        let row = dv + (b * s.m + j0 + j) * s.ldv + h * s.dv, acc = dvAcc + j * dvPad
                        for c in 0..<s.dv { row[c] += acc[c] }
                    }
                }
            }
        }
    }

    // dQ = Σ over key groups of dQᵀ, transposed back, in group order (fixed by the shapes).
    if let dq {
        Parallel.for(BH * nG) { range in
            for item in range {
                let G = item % nG, bh = item / nG, h = bh % s.H, b = bh / s.H
                for lane in 0..<min(L, s.n - G * L) {
                    let row = dq + (b * s.n + G * L + lane) * s.ldq + h * s.d
                    for p in 0..<s.d {
                        var acc = dqT.base[(item * s.d + p) * L + lane]
                        for g in 1..<groups {
                            acc += dqT.base[((g * BH * nG + item) * s.d + p) * L + lane]
                        }
                        row[p] += acc
                    }
                }
            }
        }
    }
}
