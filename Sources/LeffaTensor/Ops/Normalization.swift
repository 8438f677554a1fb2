// Normalisation: group norm (PyTorch `nn.GroupNorm`: the UNet resnets and the inputs of the
// transformers) and layer norm over the last dimension (`nn.LayerNorm`: inside the transformer
// blocks). Forward and backward side by side.
//
// Accuracy: statistics are two-pass (mean, then squared deviations from it), summed in float SIMD
// lanes over short blocks whose partials add up in Double, the mean's sum shifted by the first
// element: a 10⁵-element group keeps ~1e-7 relative error even when |mean| ≫ std. Outputs are
// ((x − mean_hi) − mean_lo)·rstd·w + b with the mean split into two floats, not x·scale + shift,
// which would lose digits when |mean| ≫ std.
// Determinism: every sum belongs to one task (a group, a plane, a row or a fixed block of rows) and
// runs in a fixed order, so results do not depend on `Parallel.threads`.
// Not here: batch norm, RMS norm, running statistics.
import Foundation

// MARK: - Accurate sums (also used by softmax)

/// Elements summed in float lanes before a block's partial joins the Double total: short enough
/// that float rounding stays near 1e-7 relative, long enough that the Double adds cost nothing.
private let laneBlock = 256

@inline(__always)
private func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
}

/// Σ p[i] for i < n.
@inline(__always)
func laneSum(_ p: UnsafePointer<Float>, _ n: Int) -> Double {
    var total = 0.0, i = 0
    while i < n {
        let end = min(n, i + laneBlock)
        var acc = SIMD8<Float>()
        while i + 8 <= end { acc += load8(p + i); i += 8 }
        var tail: Float = 0
        while i < end { tail += p[i]; i += 1 }
        total += Double(acc.sum()) + Double(tail)
    }
    return total
}

/// The mean of p[0..<n], summed as Σ (p[i] − p[0]) so the float lanes hold numbers the size of
/// the spread, not of the mean: with |mean| ≫ std a plain float sum loses the low digits that
/// normalisation then divides by std.
@inline(__always)
private func laneMean(_ p: UnsafePointer<Float>, _ n: Int) -> Double {
    if n == 0 { return 0 }
    let k = p[0], kv = SIMD8<Float>(repeating: k)
    var total = 0.0, i = 0
    while i < n {
        let end = min(n, i + laneBlock)
        var acc = SIMD8<Float>()
        while i + 8 <= end { acc += load8(p + i) - kv; i += 8 }
        var tail: Float = 0
        while i < end { tail += p[i] - k; i += 1 }
        total += Double(acc.sum()) + Double(tail)
    }
    return Double(k) + total / Double(n)
}

/// Σ (p[i] − m)² for i < n: the second pass of a two-pass variance.
@inline(__always)
private func laneSumSquaredDeviations(_ p: UnsafePointer<Float>, _ n: Int, _ m: Float) -> Double {
    var total = 0.0, i = 0
    let mv = SIMD8<Float>(repeating: m)
    while i < n {
        let end = min(n, i + laneBlock)
        var acc = SIMD8<Float>()
        while i + 8 <= end { let d = load8(p + i) - mv; acc += d * d; i += 8 }
        var tail: Float = 0
        while i < end { let d = p[i] - m; tail += d * d; i += 1 }
        total += Double(acc.sum()) + Double(tail)
    }
    return total
}

/// Σ p[i]·q[i] for i < n.
@inline(__always)
func laneDot(_ p: UnsafePointer<Float>, _ q: UnsafePointer<Float>, _ n: Int) -> Double {
    var total = 0.0, i = 0
    while i < n {
        let end = min(n, i + laneBlock)
        var acc = SIMD8<Float>()
        while i + 8 <= end { acc += load8(p + i) * load8(q + i); i += 8 }
        var tail: Float = 0
        while i < end { tail += p[i] * q[i]; i += 1 }
        total += Double(acc.sum()) + Double(tail)
    }
    return total
}

/// (Σ g[i], Σ g[i]·(x[i] − m)) for i < n: what a normalisation backward needs from one plane,
/// centred so that a large mean does not cancel digits away.
@inline(__always)
private func laneSumAndCentredDot(_ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int, _ m: Float) -> (
    Double, Double
) {
    var s1 = 0.0, s2 = 0.0, i = 0
    let mv = SIMD8<Float>(repeating: m)
    while i < n {
        let end = min(n, i + laneBlock)
        var a1 = SIMD8<Float>(), a2 = SIMD8<Float>()
        while i + 8 <= end {
            let gv = load8(g + i)
            a1 += gv; a2 += gv * (load8(x + i) - mv)
            i += 8
        }
        var t1: Float = 0, t2: Float = 0
        while i < end { t1 += g[i]; t2 += g[i] * (x[i] - m); i += 1 }
        s1 += Double(a1.sum()) + Double(t1)
        s2 += Double(a2.sum()) + Double(t2)
    }
    return (s1, s2)
}

/// A Double mean as float hi + lo: (x − hi) − lo is exact to float rounding of the result even
/// when |mean| ≫ std, where x − Float(mean) would carry the mean's rounding (~|mean|·6e-8).
@inline(__always)
private func splitMean(_ m: Double) -> (Float, Float) {
    let hi = Float(m)
    return (hi, Float(m - Double(hi)))
}

// MARK: - Group norm

/// PyTorch `nn.GroupNorm`: x (B, C, …) split into `groups` groups of C/groups consecutive channels;
/// each (sample, group) is normalised with its mean and biased variance over (C/groups × spatial),
/// then channel c is scaled by weight[c] and shifted by bias[c] (both (C), optional).
/// Backward keeps only x and the per-group mean and 1/σ.
public func groupNorm(_ x: Tensor, groups: Int, weight: Tensor?, bias: Tensor?, eps: Float) -> Tensor {
    shapeCheck(x.rank >= 2, "groupNorm", x.shape, expected: "(B, C, …)")
    let B = x.shape[0], C = x.shape[1]
    shapeCheck(
        groups >= 1 && C % groups == 0, "groupNorm(groups: \(groups))", x.shape,
        expected: "channels C = \(C) divisible by \(groups) groups")
    if let weight {
        shapeCheck(weight.shape == [C], "groupNorm (weight)", weight.shape, x.shape, expected: "weight (\(C))")
    }
    if let bias { shapeCheck(bias.shape == [C], "groupNorm (bias)", bias.shape, x.shape, expected: "bias (\(C))") }
    let S = B * C == 0 ? 0 : x.count / (B * C) // spatial size per channel plane
    let cpg = C / groups, n = cpg * S // channels and elements per group
    let out = Tensor(zeros: x.shape)
    var mean = [Double](repeating: 0, count: B * groups) // (B, G)
    var rstd = [Double](repeating: 0, count: B * groups) // (B, G) 1/√(var + eps)
    let px = x.data, po = out.data, pw = weight?.data, pb = bias?.data
    mean.withUnsafeMutableBufferPointer { mb in
        rstd.withUnsafeMutableBufferPointer { rb in
            let pm = mb.baseAddress!, pr = rb.baseAddress!
            // One task per (sample, group): statistics, then that group's outputs while it is in cache.
            Parallel.for(B * groups) { r in
                for bg in r {
                    let src = px + bg * n, dst = po + bg * n
                    let m = laneMean(src, n)
                    let v = n == 0 ? 0 : laneSumSquaredDeviations(src, n, Float(m)) / Double(n)
                    let rs = 1 / (v + Double(eps)).squareRoot()
                    pm[bg] = m; pr[bg] = rs
                    let (mHi, mLo) = splitMean(m), rf = Float(rs), c0 = (bg % groups) * cpg
                    for k in 0..<cpg {
                        let c = c0 + k
                        let a = rf * (pw?[c] ?? 1), b = pb?[c] ?? 0
                        let xs = src + k * S, ys = dst + k * S
                        for i in 0..<S { ys[i] = ((xs[i] - mHi) - mLo) * a + b }
                    }
                }
            }
        }
    }

    let xv = x.detached(), wv = weight?.detached(), mean0 = mean, rstd0 = rstd
    let xNeeds = x.requiresGrad, wNeeds = weight?.requiresGrad ?? false, bNeeds = bias?.requiresGrad ?? false
    var inputs = [x]
    if let weight { inputs.append(weight) }
    if let bias { inputs.append(bias) }
    let hasWeight = weight != nil, hasBias = bias != nil
    return out.recording("groupNorm", inputs) { g in
        let pg = g.data, px = xv.data, pw = wv?.data, mean = mean0, rstd = rstd0
        // Per (sample, channel) plane: Σ g and Σ g·(x − mean), (B, C).
        var sg = [Double](repeating: 0, count: B * C), sgx = [Double](repeating: 0, count: B * C)
        sg.withUnsafeMutableBufferPointer { a in
            sgx.withUnsafeMutableBufferPointer { b in
                let pa = a.baseAddress!, pbx = b.baseAddress!
                Parallel.for(B * C, grain: max(1, 4096 / max(S, 1))) { r in
                    for bc in r {
                        let bg = (bc / C) * groups + (bc % C) / cpg
                        // Centred on the float mean, then corrected to the exact one: Σg(x−m) = Σg(x−m_f) − (m−m_f)Σg.
                        let mf = Float(mean[bg])
                        let (s1, s2) = laneSumAndCentredDot(pg + bc * S, px + bc * S, S, mf)
                        pa[bc] = s1; pbx[bc] = s2 - (mean[bg] - Double(mf)) * s1
                    }
                }
            }
        }
        var gx: Tensor? = nil
        if xNeeds {
            // dx = rstd·(w·g − mean(w·g) − x̂·mean(w·g·x̂)), x̂ = (x − mean)·rstd, folded per plane into
            // dx = A·g + D·(x − mean) + K.
            var coef = [Float](repeating: 0, count: 3 * B * C) // (B, C) × (A, D, K)
            for bg in 0..<(B * groups) {
                let b = bg / groups, c0 = (bg % groups) * cpg, rs = rstd[bg]
                var s1 = 0.0, s2 = 0.0
                for c in c0..<(c0 + cpg) {
                    let w = Double(pw?[c] ?? 1)
                    s1 += w * sg[b * C + c]; s2 += w * sgx[b * C + c]
                }
                let m1 = s1 / Double(n), m2 = s2 * rs / Double(n)
                for c in c0..<(c0 + cpg) {
                    let w = Double(pw?[c] ?? 1), bc = b * C + c
                    // K absorbs the float mean's rounding: D·(x − m) = D·(x − m_f) + D·(m_f − m).
                    let d = -rs * rs * m2
                    coef[3 * bc] = Float(rs * w); coef[3 * bc + 1] = Float(d)
                    coef[3 * bc + 2] = Float(-rs * m1 + d * (Double(Float(mean[bg])) - mean[bg]))
                }
            }
            let t = Tensor(zeros: xv.shape), pt = t.data
            coef.withUnsafeBufferPointer { cb in
                let pc = cb.baseAddress!
                Parallel.for(B * C, grain: max(1, 4096 / max(S, 1))) { r in
                    for bc in r {
                        let bg = (bc / C) * groups + (bc % C) / cpg
                        let a = pc[3 * bc], d = pc[3 * bc + 1], k = pc[3 * bc + 2], mf = Float(mean[bg])
                        let gs = pg + bc * S, xs = px + bc * S, ts = pt + bc * S
                        for i in 0..<S { ts[i] = a * gs[i] + d * (xs[i] - mf) + k }
                    }
                }
            }
            gx = t
        }
        var grads: [Tensor?] = [gx]
        // dweight[c] = Σ_b rstd·Σ g·(x − mean), dbias[c] = Σ_b Σ g, summed over b in order.
        if hasWeight {
            var gw: Tensor? = nil
            if wNeeds {
                let t = Tensor(zeros: [C])
                for c in 0..<C {
                    var acc = 0.0
                    for b in 0..<B { acc += rstd[b * groups + c / cpg] * sgx[b * C + c] }
                    t[c] = Float(acc)
                }
                gw = t
            }
            grads.append(gw)
        }
        if hasBias {
            var gb: Tensor? = nil
            if bNeeds {
                let t = Tensor(zeros: [C])
                for c in 0..<C {
                    var acc = 0.0
                    for b in 0..<B { acc += sg[b * C + c] }
                    t[c] = Float(acc)
                }
                gb = t
            }
            grads.append(gb)
        }
        return grads
    }
}

// MARK: - Layer norm

/// Rows per block when layer norm's backward sums weight and bias gradients over rows: each block
/// has its own partial row, and the partials are added in block order, so the sums do not depend
/// on how blocks are spread over threads.
private let layerNormRowBlock = 32

/// PyTorch `nn.LayerNorm(C)`: x (…, C) normalised over the last dimension with its mean and biased
/// variance, then scaled by weight (C) and shifted by bias (C), both optional.
/// Backward keeps only x and the per-row mean and 1/σ.
public func layerNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, eps: Float) -> Tensor {
    shapeCheck(x.rank >= 1 && x.dim(-1) > 0, "layerNorm", x.shape, expected: "(…, C) with C > 0")
    let C = x.dim(-1), rows = x.count / C
    if let weight {
        shapeCheck(weight.shape == [C], "layerNorm (weight)", weight.shape, x.shape, expected: "weight (\(C))")
    }
    if let bias { shapeCheck(bias.shape == [C], "layerNorm (bias)", bias.shape, x.shape, expected: "bias (\(C))") }
    let out = Tensor(zeros: x.shape)
    let ones = [Float](repeating: 1, count: weight == nil ? C : 0)
    let zeros = [Float](repeating: 0, count: bias == nil ? C : 0)
    // Per row: the mean as float hi + lo (see `splitMean`) and 1/σ, (rows) each.
    var meanHi = [Float](repeating: 0, count: rows), meanLo = [Float](repeating: 0, count: rows)
    var rstd = [Float](repeating: 0, count: rows)
    let px = x.data, po = out.data
    ones.withUnsafeBufferPointer { ob in
        zeros.withUnsafeBufferPointer { zb in
            meanHi.withUnsafeMutableBufferPointer { hb in
                meanLo.withUnsafeMutableBufferPointer { lb in
                    rstd.withUnsafeMutableBufferPointer { rb in
                        let pw = weight.map { UnsafePointer($0.data) } ?? ob.baseAddress!
                        let pb = bias.map { UnsafePointer($0.data) } ?? zb.baseAddress!
                        let pHi = hb.baseAddress!, pLo = lb.baseAddress!, pr = rb.baseAddress!
                        Parallel.for(rows, grain: max(1, 8192 / C)) { r in
                            for row in r {
                                let xs = px + row * C, ys = po + row * C
                                let m = laneMean(xs, C)
                                let (hi, lo) = splitMean(m)
                                let v = laneSumSquaredDeviations(xs, C, hi) / Double(C)
                                let rs = Float(1 / (v + Double(eps)).squareRoot())
                                pHi[row] = hi; pLo[row] = lo; pr[row] = rs
                                for j in 0..<C { ys[j] = ((xs[j] - hi) - lo) * rs * pw[j] + pb[j] }
                            }
                        }
                    }
                }
            }
        }
    }

    let xv = x.detached(), wv = weight?.detached(), meanHi0 = meanHi, meanLo0 = meanLo, rstd0 = rstd
    let xNeeds = x.requiresGrad, wNeeds = weight?.requiresGrad ?? false, bNeeds = bias?.requiresGrad ?? false
    var inputs = [x]
    if let weight { inputs.append(weight) }
    if let bias { inputs.append(bias) }
    let hasWeight = weight != nil, hasBias = bias != nil
    return out.recording("layerNorm", inputs) { g in
        let pg = g.data, px = xv.data, meanHi = meanHi0, meanLo = meanLo0, rstd = rstd0
        let blocks = (rows + layerNormRowBlock - 1) / layerNormRowBlock
        let wantParams = wNeeds || bNeeds
        let gx = xNeeds ? Tensor(zeros: xv.shape) : nil
        // Per block of rows: Σ g·x̂ and Σ g for every column, (blocks, C) each.
        var partW = [Float](repeating: 0, count: wantParams ? blocks * C : 0)
        var partB = [Float](repeating: 0, count: wantParams ? blocks * C : 0)
        let unit = [Float](repeating: 1, count: wv == nil ? C : 0)
        unit.withUnsafeBufferPointer { ub in
            partW.withUnsafeMutableBufferPointer { pwb in
                partB.withUnsafeMutableBufferPointer { pbb in
                    let pw = wv.map { UnsafePointer($0.data) } ?? ub.baseAddress!
                    // (An empty array's buffer may still have a base address: test `wantParams`, not nil.)
                    let qW = wantParams ? pwb.baseAddress : nil, qB = wantParams ? pbb.baseAddress : nil, pgx = gx?.data
                    meanHi.withUnsafeBufferPointer { hb in
                        meanLo.withUnsafeBufferPointer { lb in
                            rstd.withUnsafeBufferPointer { rb in
                                let pHi = hb.baseAddress!, pLo = lb.baseAddress!, pr = rb.baseAddress!
                                Parallel.for(blocks) { r in
                                    for blk in r {
                                        for row in (blk * layerNormRowBlock)..<min(rows, (blk + 1) * layerNormRowBlock)
                                        {
                                            let gs = pg + row * C, xs = px + row * C
                                            let hi = pHi[row], lo = pLo[row], rs = pr[row]
                                            if let pgx {
                                                // dx = rs·(w·g − mean(w·g) − x̂·mean(w·g·x̂)).
                                                var a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), t1: Float = 0,
                                                    t2: Float = 0
                                                let hv = SIMD8<Float>(repeating: hi), lv = SIMD8<Float>(repeating: lo)
                                                var j = 0
                                                while j + 8 <= C {
                                                    let wg = load8(gs + j) * load8(pw + j)
                                                    a1 += wg; a2 += wg * ((load8(xs + j) - hv) - lv)
                                                    j += 8
                                                }
                                                while j < C {
                                                    let wg = gs[j] * pw[j]; t1 += wg; t2 += wg * ((xs[j] - hi) - lo);
                                                    j += 1
                                                }
                                                let m1 = Float((Double(a1.sum()) + Double(t1)) / Double(C))
                                                let m2 = Float((Double(a2.sum()) + Double(t2)) / Double(C)) * rs * rs
                                                let ds = pgx + row * C
                                                for j in 0..<C {
                                                    ds[j] = rs * (gs[j] * pw[j] - m1 - ((xs[j] - hi) - lo) * m2)
                                                }
                                            }
                                            if let qW, let qB {
                                                let dW = qW + blk * C, dB = qB + blk * C
                                                for j in 0..<C {
                                                    dW[j] += gs[j] * (((xs[j] - hi) - lo) * rs); dB[j] += gs[j]
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        var grads: [Tensor?] = [gx]
        if wantParams {
            var accW = [Double](repeating: 0, count: C), accB = [Double](repeating: 0, count: C)
            for blk in 0..<blocks {
                for j in 0..<C { accW[j] += Double(partW[blk * C + j]); accB[j] += Double(partB[blk * C + j]) }
            }
            if hasWeight { grads.append(wNeeds ? Tensor(accW.map { Float($0) }, shape: [C]) : nil) }
            if hasBias { grads.append(bNeeds ? Tensor(accB.map { Float($0) }, shape: [C]) : nil) }
        } else {
            if hasWeight { grads.append(nil) }
            if hasBias { grads.append(nil) }
        }
        return grads
    }
}
