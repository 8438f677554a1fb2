// Activations: SiLU (resnets, time embedding), exact GELU and GEGLU (the transformer feed-forward),
// softmax along any dimension. Forward and backward side by side; formulas are PyTorch's own
// (same operation order), so values match the published model to float rounding.
// Exponentials come from FastMath (vectorised), GELU's Φ from FastMath.normal. Not here: approximate (tanh) GELU, log-softmax,
// the fused attention softmax (that lives with attention).
import Foundation

/// Grain for element-wise loops that take exponentials.
private let transcendentalGrain = 1 << 12

// MARK: - SiLU

/// x·σ(x), computed as x / (1 + e⁻ˣ) like PyTorch.
public func silu(_ x: Tensor) -> Tensor {
    let out = Tensor(zeros: x.shape)
    let p = x.data, q = out.data
    Parallel.for(x.count, grain: transcendentalGrain) { r in
        FastMath.map(p + r.lowerBound, q + r.lowerBound, count: r.count) { v in v / (1 + FastMath.exp(0 - v)) }
    }
    let xv = x.detached()
    return out.recording("silu", [x]) { g in
        // d/dx = σ(x)·(1 + x·(1 − σ(x))).
        let gx = Tensor(zeros: xv.shape), p = xv.data, pg = g.data, q = gx.data
        Parallel.for(xv.count, grain: transcendentalGrain) { r in
            FastMath.map(p + r.lowerBound, q + r.lowerBound, count: r.count) { v in
                let s = 1 / (1 + FastMath.exp(0 - v))
                return s * (1 + v * (1 - s))
            }
            for i in r { q[i] = pg[i] * q[i] }
        }
        return [gx]
    }
}

// MARK: - GELU (exact)

/// x·Φ(x) = x·½·(1 + erf(x/√2)): PyTorch's default GELU, not the tanh approximation. Φ comes from
/// FastMath.normal (vectorised, more accurate than 1 + erf for negative x).
public func gelu(_ x: Tensor) -> Tensor {
    let out = Tensor(zeros: x.shape)
    let p = x.data, q = out.data
    Parallel.for(x.count, grain: transcendentalGrain) { r in
        FastMath.map(p + r.lowerBound, q + r.lowerBound, count: r.count) { v in v * FastMath.normal(v).cdf }
    }
    let xv = x.detached()
    return out.recording("gelu", [x]) { g in
        // dGELU/dx = Φ(x) + x·φ(x).
        let gx = Tensor(zeros: xv.shape), p = xv.data, pg = g.data, q = gx.data
        Parallel.for(xv.count, grain: transcendentalGrain) { r in
            FastMath.map(p + r.lowerBound, q + r.lowerBound, count: r.count) { v in
                let n = FastMath.normal(v); return n.cdf + v * n.pdf
            }
            for i in r { q[i] *= pg[i] }
        }
        return [gx]
    }
}

// MARK: - GEGLU

/// diffusers `GEGLU` after its projection: x (…, 2D) → (…, D), value = first half of the last
/// dimension, gate = second half, out = value · GELU(gate).
public func geglu(_ x: Tensor) -> Tensor {
    shapeCheck(x.rank >= 1 && x.dim(-1) % 2 == 0, "geglu", x.shape, expected: "(…, 2D): an even last dimension")
    let D = x.dim(-1) / 2, rows = D == 0 ? 0 : x.count / (2 * D)
    let out = Tensor(zeros: Array(x.shape.dropLast()) + [D])
    let p = x.data, q = out.data
    Parallel.for(rows, grain: max(1, transcendentalGrain / max(D, 1))) { r in
        for row in r {
            let v = p + row * 2 * D, gate = v + D, o = q + row * D
            FastMath.map(gate, o, count: D) { g in g * FastMath.normal(g).cdf }
            for j in 0..<D { o[j] = v[j] * o[j] }
        }
    }
    let xv = x.detached()
    return out.recording("geglu", [x]) { g in
        // d value = g·GELU(gate); d gate = g·value·GELU'(gate), GELU' = Φ + gate·φ.
        let gx = Tensor(zeros: xv.shape), p = xv.data, pg = g.data, q = gx.data
        Parallel.for(rows, grain: max(1, transcendentalGrain / max(D, 1))) { r in
            for row in r {
                let v = p + row * 2 * D, gate = v + D, gr = pg + row * D
                let dv = q + row * 2 * D, dgate = dv + D
                // One Φ, φ per gate element serves both (the tail through zero-padded lanes).
                @inline(__always) func lanes(_ gt: FastMath.Vector, _ go: FastMath.Vector, _ val: FastMath.Vector) -> (
                    FastMath.Vector, FastMath.Vector
                ) {
                    let phi = FastMath.normal(gt)
                    return (go * (gt * phi.cdf), go * val * (phi.cdf + gt * phi.pdf))
                }
                var j = 0
                while j + FastMath.width <= D {
                    let (a, b) = lanes(FastMath.load(gate + j), FastMath.load(gr + j), FastMath.load(v + j))
                    FastMath.store(a, dv + j); FastMath.store(b, dgate + j)
                    j += FastMath.width
                }
                if j < D {
                    let n = D - j
                    let (a, b) = lanes(
                        FastMath.loadPartial(gate + j, n, fill: 0), FastMath.loadPartial(gr + j, n, fill: 0),
                        FastMath.loadPartial(v + j, n, fill: 0))
                    FastMath.storePartial(a, dv + j, n); FastMath.storePartial(b, dgate + j, n)
                }
            }
        }
        return [gx]
    }
}

// MARK: - Softmax

/// Columns handled together when softmax runs along a dimension that is not the last: each task
/// walks the reduced dimension over this many contiguous columns (vectorisable, cache friendly).
private let softmaxColumnTile = 64

/// exp(x − max) / Σ exp(x − max) along `dim` (negative counts from the end), PyTorch's
/// `softmax`: the maximum is subtracted first so large inputs do not overflow.
/// Backward keeps only the output.
public func softmax(_ x: Tensor, dim: Int = -1) -> Tensor {
    let d = dim < 0 ? x.rank + dim : dim
    shapeCheck(d >= 0 && d < x.rank, "softmax(dim: \(dim))", x.shape, expected: "a dimension within the rank")
    let (outer, n, inner) = splitAround(x.shape, d)
    let out = Tensor(zeros: x.shape)
    let p = x.data, q = out.data
    if n > 0 {
        if inner == 1 {
            Parallel.for(outer, grain: max(1, 4096 / n)) { r in
                for row in r {
                    let xs = p + row * n, ys = q + row * n
                    var m = xs[0]
                    for j in 1..<n { m = max(m, xs[j]) }
                    for j in 0..<n { ys[j] = exp(xs[j] - m) }
                    let inv = Float(1 / laneSum(ys, n))
                    for j in 0..<n { ys[j] *= inv }
                }
            }
        } else {
            let tiles = (inner + softmaxColumnTile - 1) / softmaxColumnTile
            Parallel.for(outer * tiles, grain: max(1, 4096 / (n * softmaxColumnTile))) { r in
                withUnsafeTemporaryAllocation(of: Float.self, capacity: softmaxColumnTile) { mb in
                    withUnsafeTemporaryAllocation(of: Double.self, capacity: softmaxColumnTile) { sb in
                        let mx = mb.baseAddress!, s = sb.baseAddress!
                        for task in r {
                            let o = task / tiles, j0 = (task % tiles) * softmaxColumnTile
                            let w = min(softmaxColumnTile, inner - j0)
                            let xs = p + o * n * inner + j0, ys = q + o * n * inner + j0
                            for j in 0..<w { mx[j] = xs[j]; s[j] = 0 }
                            for k in 1..<n { let row = xs + k * inner; for j in 0..<w { mx[j] = max(mx[j], row[j]) } }
                            for k in 0..<n {
                                let xr = xs + k * inner, yr = ys + k * inner
                                for j in 0..<w { let e = exp(xr[j] - mx[j]); yr[j] = e; s[j] += Double(e) }
                            }
                            for j in 0..<w { mx[j] = Float(1 / s[j]) } // reuse as 1/Σ
                            for k in 0..<n { let yr = ys + k * inner; for j in 0..<w { yr[j] *= mx[j] } }
                        }
                    }
                }
            }
        }
    }
    let yv = out.detached()
    return out.recording("softmax", [x]) { g in
        // dx = y·(g − Σ g·y) along the softmax dimension.
        let gx = Tensor(zeros: yv.shape), py = yv.data, pg = g.data, q = gx.data
        if n == 0 { return [gx] }
        if inner == 1 {
            Parallel.for(outer, grain: max(1, 4096 / n)) { r in
                for row in r {
                    let ys = py + row * n, gs = pg + row * n, ds = q + row * n
                    let dot = Float(laneDot(gs, ys, n))
                    for j in 0..<n { ds[j] = ys[j] * (gs[j] - dot) }
                }
            }
        } else {
            let tiles = (inner + softmaxColumnTile - 1) / softmaxColumnTile
            Parallel.for(outer * tiles, grain: max(1, 4096 / (n * softmaxColumnTile))) { r in
                withUnsafeTemporaryAllocation(of: Double.self, capacity: softmaxColumnTile) { sb in
                    withUnsafeTemporaryAllocation(of: Float.self, capacity: softmaxColumnTile) { fb in
                        let s = sb.baseAddress!, dot = fb.baseAddress!
                        for task in r {
                            let o = task / tiles, j0 = (task % tiles) * softmaxColumnTile
                            let w = min(softmaxColumnTile, inner - j0), base = o * n * inner + j0
                            for j in 0..<w { s[j] = 0 }
                            for k in 0..<n {
                                let yr = py + base + k * inner, gr = pg + base + k * inner
                                for j in 0..<w { s[j] += Double(yr[j] * gr[j]) }
                            }
                            for j in 0..<w { dot[j] = Float(s[j]) }
                            for k in 0..<n {
                                let off = base + k * inner
                                for j in 0..<w { q[off + j] = py[off + j] * (pg[off + j] - dot[j]) }
                            }
                        }
                    }
                }
            }
        }
        return [gx]
    }
}
