// Resampling of (B, C, H, W) images: nearest upsampling by an integer factor (UNet upsamplers),
// nearest and bilinear resizing to a size (PyTorch `F.interpolate`: masks and densepose to latent
// size, the Leffa flow to image size), and bilinear `grid_sample` (warping the reference image by
// the Leffa flow). Forward and backward side by side.
// Index and weight formulas follow PyTorch: the resizes copy its CPU kernels' float arithmetic, so
// source indices agree exactly; grid_sample unnormalises as ((x + 1)/2)·(W − 1) (its reference and
// CUDA form; the vectorised CPU kernel's (x + 1)·((W − 1)/2) differs by an ulp). Backward scatter-adds run one task per (b, c) plane (no two threads
// write one element), and the grid gradient sums channels in order: results do not depend on the
// thread count. Not here: align_corners variants other than the ones Leffa uses, bicubic,
// antialiasing, border/reflection padding.
import Foundation

/// Rough number of output elements per task, so small images do not pay for thread hand-offs.
private let resampleGrain = 4096

@inline(__always)
private func dims4(_ x: Tensor, _ op: String) -> (Int, Int, Int, Int) {
    shapeCheck(x.rank == 4, op, x.shape, expected: "(B, C, H, W)")
    return (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
}

// MARK: - Nearest, integer factor

/// (B, C, H, W) → (B, C, s·H, s·W), every pixel repeated s×s times (diffusers `Upsample2D`,
/// `F.interpolate(scale_factor: s, mode: "nearest")`).
public func upsampleNearest(_ x: Tensor, scale s: Int) -> Tensor {
    let (B, C, H, W) = dims4(x, "upsampleNearest(scale: \(s))")
    shapeCheck(s >= 1, "upsampleNearest(scale: \(s))", x.shape, expected: "a scale of at least 1")
    let Wo = W * s, rows = B * C * H
    let out = Tensor(zeros: [B, C, H * s, Wo])
    let px = x.data, po = out.data
    Parallel.for(rows, grain: max(1, resampleGrain / max(Wo * s, 1))) { r in
        for row in r {
            let src = px + row * W, dst = po + row * s * Wo
            for j in 0..<W { let v = src[j]; for k in 0..<s { dst[j * s + k] = v } }
            for k in 1..<s { (dst + k * Wo).update(from: dst, count: Wo) }
        }
    }
    let inShape = x.shape
    return out.recording("upsampleNearest", [x]) { g in
        // Each input pixel sums its s×s block, rows of the block in order.
        let gx = Tensor(zeros: inShape), pg = g.data, q = gx.data
        Parallel.for(rows, grain: max(1, resampleGrain / max(Wo * s, 1))) { r in
            for row in r {
                let dst = q + row * W
                for di in 0..<s {
                    let gr = pg + (row * s + di) * Wo
                    for j in 0..<W {
                        var a: Float = 0
                        for dj in 0..<s { a += gr[j * s + dj] }
                        dst[j] += a
                    }
                }
            }
        }
        return [gx]
    }
}

// MARK: - Nearest, to a size

/// Source index of each output index, PyTorch's `nearest` (not `nearest-exact`):
/// min(⌊dst · (in/out)⌋, in − 1) with the product in float.
func nearestSourceIndices(input n: Int, output m: Int) -> [Int] {
    if n == m { return Array(0..<m) }
    let scale = Float(n) / Float(m)
    return (0..<m).map { min(Int((Float($0) * scale).rounded(.down)), n - 1) }
}

/// (B, C, H, W) → (B, C, size.0, size.1), `F.interpolate(size:, mode: "nearest")`.
public func resizeNearest(_ x: Tensor, size: (Int, Int)) -> Tensor {
    let (B, C, H, W) = dims4(x, "resizeNearest(size: \(size))")
    let (Ho, Wo) = size
    shapeCheck(
        Ho > 0 && Wo > 0 && H > 0 && W > 0, "resizeNearest(size: \(size))", x.shape,
        expected: "non-empty input and output")
    let rowSrc = nearestSourceIndices(input: H, output: Ho), colSrc = nearestSourceIndices(input: W, output: Wo)
    let out = Tensor(zeros: [B, C, Ho, Wo])
    let px = x.data, po = out.data
    colSrc.withUnsafeBufferPointer { cb in
        let cs = cb.baseAddress!
        Parallel.for(B * C * Ho, grain: max(1, resampleGrain / Wo)) { r in
            for orow in r {
                let plane = orow / Ho, i = orow % Ho
                let src = px + (plane * H + rowSrc[i]) * W, dst = po + orow * Wo
                for j in 0..<Wo { dst[j] = src[cs[j]] }
            }
        }
    }
    let inShape = x.shape
    return out.recording("resizeNearest", [x]) { g in
        let gx = Tensor(zeros: inShape), pg = g.data, q = gx.data
        colSrc.withUnsafeBufferPointer { cb in
            let cs = cb.baseAddress!
            Parallel.for(B * C, grain: max(1, resampleGrain / (Ho * Wo))) { r in
                for plane in r {
                    for i in 0..<Ho {
                        let dst = q + (plane * H + rowSrc[i]) * W, gr = pg + (plane * Ho + i) * Wo
                        for j in 0..<Wo { dst[cs[j]] += gr[j] }
                    }
                }
            }
        }
        return [gx]
    }
}

// MARK: - Bilinear, to a size

/// For each output index: the two source indices and their weights, PyTorch's
/// `align_corners=False` rule in float: src = max((dst + ½)·(in/out) − ½, 0),
/// i0 = min(⌊src⌋, in − 1), i1 = i0 + 1 unless at the edge, λ1 = clamp(src − i0, 0, 1), λ0 = 1 − λ1.
struct LinearTaps {
    var i0: [Int], i1: [Int], l0: [Float], l1: [Float]

    init(input n: Int, output m: Int) {
        i0 = []; i1 = []; l0 = []; l1 = []
        i0.reserveCapacity(m); i1.reserveCapacity(m); l0.reserveCapacity(m); l1.reserveCapacity(m)
        let scale = Float(n) / Float(m)
        for d in 0..<m {
            if n == m { i0.append(d); i1.append(d); l0.append(1); l1.append(0); continue }
            let src = max(scale * (Float(d) + 0.5) - 0.5, 0)
            let a = min(Int(src.rounded(.down)), n - 1)
            let lam = min(max(src - Float(a), 0), 1)
            i0.append(a); i1.append(a + (a < n - 1 ? 1 : 0)); l1.append(lam); l0.append(1 - lam)
        }
    }
}

/// (B, C, H, W) → (B, C, size.0, size.1), `F.interpolate(size:, mode: "bilinear",
/// align_corners: False)` without antialiasing (also for shrinking).
public func resizeBilinear(_ x: Tensor, size: (Int, Int)) -> Tensor {
    let (B, C, H, W) = dims4(x, "resizeBilinear(size: \(size))")
    let (Ho, Wo) = size
    shapeCheck(
        Ho > 0 && Wo > 0 && H > 0 && W > 0, "resizeBilinear(size: \(size))", x.shape,
        expected: "non-empty input and output")
    let ty = LinearTaps(input: H, output: Ho), tx = LinearTaps(input: W, output: Wo)
    let out = Tensor(zeros: [B, C, Ho, Wo])
    let px = x.data, po = out.data
    tx.i0.withUnsafeBufferPointer { a0 in
        tx.i1.withUnsafeBufferPointer { a1 in
            tx.l0.withUnsafeBufferPointer { b0 in
                tx.l1.withUnsafeBufferPointer { b1 in
                    let x0 = a0.baseAddress!, x1 = a1.baseAddress!, lx0 = b0.baseAddress!, lx1 = b1.baseAddress!
                    Parallel.for(B * C * Ho, grain: max(1, resampleGrain / Wo)) { r in
                        for orow in r {
                            let plane = orow / Ho, i = orow % Ho
                            let r0 = px + (plane * H + ty.i0[i]) * W, r1 = px + (plane * H + ty.i1[i]) * W
                            let ly0 = ty.l0[i], ly1 = ty.l1[i], dst = po + orow * Wo
                            for j in 0..<Wo {
                                let top = r0[x0[j]] * lx0[j] + r0[x1[j]] * lx1[j]
                                let bottom = r1[x0[j]] * lx0[j] + r1[x1[j]] * lx1[j]
                                dst[j] = top * ly0 + bottom * ly1
                            }
                        }
                    }
                }
            }
        }
    }
    let inShape = x.shape
    return out.recording("resizeBilinear", [x]) { g in
        let gx = Tensor(zeros: inShape), pg = g.data, q = gx.data
        tx.i0.withUnsafeBufferPointer { a0 in
            tx.i1.withUnsafeBufferPointer { a1 in
                tx.l0.withUnsafeBufferPointer { b0 in
                    tx.l1.withUnsafeBufferPointer { b1 in
                        let x0 = a0.baseAddress!, x1 = a1.baseAddress!, lx0 = b0.baseAddress!, lx1 = b1.baseAddress!
                        Parallel.for(B * C, grain: max(1, resampleGrain / (Ho * Wo))) { r in
                            for plane in r {
                                for i in 0..<Ho {
                                    let r0 = q + (plane * H + ty.i0[i]) * W, r1 = q + (plane * H + ty.i1[i]) * W
                                    let ly0 = ty.l0[i], ly1 = ty.l1[i], gr = pg + (plane * Ho + i) * Wo
                                    for j in 0..<Wo {
                                        let t = gr[j]
                                        r0[x0[j]] += t * ly0 * lx0[j]
                                        r0[x1[j]] += t * ly0 * lx1[j]
                                        r1[x0[j]] += t * ly1 * lx0[j]
                                        r1[x1[j]] += t * ly1 * lx1[j]
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return [gx]
    }
}

// MARK: - Grid sample

/// One sampling point of `grid_sample` (bilinear, align_corners=True): the pixel position and the
/// north-west corner. Corner weights follow PyTorch: nw = (x_se − x)(y_se − y), ne = (x − x_sw)(y_sw − y),
/// sw = (x_ne − x)(y − y_ne), se = (x − x_nw)(y − y_nw).
struct GridPoint {
    var ix: Float, iy: Float, x0: Int, y0: Int

    @inline(__always)
    init(_ gx: Float, _ gy: Float, width W: Int, height H: Int) {
        ix = ((gx + 1) / 2) * Float(W - 1)
        iy = ((gy + 1) / 2) * Float(H - 1)
        x0 = GridPoint.floorIndex(ix, Float(W + 1))
        y0 = GridPoint.floorIndex(iy, Float(H + 1))
    }
    /// ⌊v⌋ for v in [−2, hi]; v below (or NaN) gives −2 and v above gives hi: either way no corner
    /// is inside, which is all that matters for such points. Clamping first keeps the Int conversion
    /// defined, and truncation plus a fix-up avoids a libm `floorf` call on baseline x86-64.
    @inline(__always)
    static func floorIndex(_ v: Float, _ hi: Float) -> Int {
        let c = v >= -2 ? (v <= hi ? v : hi) : -2
        let t = Int(c)
        return Float(t) > c ? t - 1 : t
    }
    /// Distances to the corners: (x − x0, x0+1 − x, y − y0, y0+1 − y).
    @inline(__always) var dxw: Float { ix - Float(x0) }
    @inline(__always) var dxe: Float { Float(x0 + 1) - ix }
    @inline(__always) var dyn: Float { iy - Float(y0) }
    @inline(__always) var dys: Float { Float(y0 + 1) - iy }
}

/// F.grid_sample(input, grid, mode: "bilinear", padding_mode: "zeros", align_corners: True):
/// input (B, C, H, W), grid (B, Hout, Wout, 2) holding (x, y) in [−1, 1] (−1 is the centre of the
/// first pixel, +1 of the last), output (B, C, Hout, Wout). Corners outside the image read as 0.
/// Gradients flow to both the input and the grid.
public func gridSample(_ input: Tensor, _ grid: Tensor) -> Tensor {
    let (B, C, H, W) = dims4(input, "gridSample")
    shapeCheck(
        grid.rank == 4 && grid.shape[0] == B && grid.shape[3] == 2, "gridSample", input.shape, grid.shape,
        expected: "input (B, C, H, W) and grid (B, Hout, Wout, 2)")
    let Ho = grid.shape[1], Wo = grid.shape[2], HW = H * W, HWo = Ho * Wo
    let out = Tensor(zeros: [B, C, Ho, Wo])
    let pin = input.data, pgr = grid.data, po = out.data
    // One task per output row (b, i): corners and weights once, then every channel.
    Parallel.for(B * Ho, grain: max(1, resampleGrain / max(Wo * C, 1))) { r in
        withUnsafeTemporaryAllocation(of: Int.self, capacity: 4 * max(Wo, 1)) { ob in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: 4 * max(Wo, 1)) { wb in
                let off = ob.baseAddress!, wt = wb.baseAddress!
                for brow in r {
                    let b = brow / Ho
                    let gRow = pgr + brow * Wo * 2
                    for j in 0..<Wo {
                        let p = GridPoint(gRow[2 * j], gRow[2 * j + 1], width: W, height: H)
                        // Corners nw, ne, sw, se: offset in the plane (−1 when outside) and weight.
                        let xIn0 = p.x0 >= 0 && p.x0 < W, xIn1 = p.x0 + 1 >= 0 && p.x0 + 1 < W
                        let yIn0 = p.y0 >= 0 && p.y0 < H, yIn1 = p.y0 + 1 >= 0 && p.y0 + 1 < H
                        let o = p.y0 * W + p.x0, e = off + 4 * j, v = wt + 4 * j
                        e[0] = yIn0 && xIn0 ? o : -1; v[0] = p.dxe * p.dys
                        e[1] = yIn0 && xIn1 ? o + 1 : -1; v[1] = p.dxw * p.dys
                        e[2] = yIn1 && xIn0 ? o + W : -1; v[2] = p.dxe * p.dyn
                        e[3] = yIn1 && xIn1 ? o + W + 1 : -1; v[3] = p.dxw * p.dyn
                    }
                    let i = brow % Ho
                    for c in 0..<C {
                        let plane = pin + (b * C + c) * HW, dst = po + (b * C + c) * HWo + i * Wo
                        for j in 0..<Wo {
                            var acc: Float = 0
                            for k in 0..<4 { let o = off[4 * j + k]; if o >= 0 { acc += plane[o] * wt[4 * j + k] } }
                            dst[j] = acc
                        }
                    }
                }
            }
        }
    }

    let inV = input.detached(), gridV = grid.detached()
    let inNeeds = input.requiresGrad, gridNeeds = grid.requiresGrad
    return out.recording("gridSample", [input, grid]) { g in
        let pg = g.data, pgr = gridV.data, pin = inV.data
        var gIn: Tensor? = nil, gGrid: Tensor? = nil
        if inNeeds {
            // Scatter each output gradient to its corners, one (b, c) plane per task.
            let t = Tensor(zeros: [B, C, H, W]), q = t.data
            Parallel.for(B * C, grain: max(1, resampleGrain / max(HWo, 1))) { r in
                for bc in r {
                    let b = bc / C, dst = q + bc * HW, gp = pg + bc * HWo, gRows = pgr + b * HWo * 2
                    for k in 0..<HWo {
                        let p = GridPoint(gRows[2 * k], gRows[2 * k + 1], width: W, height: H)
                        let t = gp[k]
                        let xIn0 = p.x0 >= 0 && p.x0 < W, xIn1 = p.x0 + 1 >= 0 && p.x0 + 1 < W
                        if p.y0 >= 0 && p.y0 < H {
                            let row = dst + p.y0 * W
                            if xIn0 { row[p.x0] += p.dxe * p.dys * t }
                            if xIn1 { row[p.x0 + 1] += p.dxw * p.dys * t }
                        }
                        if p.y0 + 1 >= 0 && p.y0 + 1 < H {
                            let row = dst + (p.y0 + 1) * W
                            if xIn0 { row[p.x0] += p.dxe * p.dyn * t }
                            if xIn1 { row[p.x0 + 1] += p.dxw * p.dyn * t }
                        }
                    }
                }
            }
            gIn = t
        }
        if gridNeeds {
            // d out/d ix = Σ_c g·(−nw·(y_se − y) + ne·(y_sw − y) − sw·(y − y_ne) + se·(y − y_nw)), and
            // likewise for iy; then the chain rule through ix = (gx + 1)/2·(W − 1). Channels summed in order.
            let t = Tensor(zeros: grid.shape), q = t.data
            let sx = Float(W - 1) / 2, sy = Float(H - 1) / 2
            Parallel.for(B * Ho, grain: max(1, resampleGrain / max(Wo * C, 1))) { r in
                for brow in r {
                    let b = brow / Ho, i = brow % Ho
                    let gRow = pgr + brow * Wo * 2, dst = q + brow * Wo * 2
                    for j in 0..<Wo {
                        let p = GridPoint(gRow[2 * j], gRow[2 * j + 1], width: W, height: H)
                        let xIn0 = p.x0 >= 0 && p.x0 < W, xIn1 = p.x0 + 1 >= 0 && p.x0 + 1 < W
                        let yIn0 = p.y0 >= 0 && p.y0 < H, yIn1 = p.y0 + 1 >= 0 && p.y0 + 1 < H
                        let oNW = p.y0 * W + p.x0
                        var gix: Float = 0, giy: Float = 0
                        for c in 0..<C {
                            let plane = pin + (b * C + c) * HW
                            let go = pg[(b * C + c) * HWo + i * Wo + j]
                            let nw: Float = yIn0 && xIn0 ? plane[oNW] : 0
                            let ne: Float = yIn0 && xIn1 ? plane[oNW + 1] : 0
                            let sw: Float = yIn1 && xIn0 ? plane[oNW + W] : 0
                            let se: Float = yIn1 && xIn1 ? plane[oNW + W + 1] : 0
                            gix += go * (-nw * p.dys + ne * p.dys - sw * p.dyn + se * p.dyn)
                            giy += go * (-nw * p.dxe - ne * p.dxw + sw * p.dxe + se * p.dxw)
                        }
                        dst[2 * j] = gix * sx
                        dst[2 * j + 1] = giy * sy
                    }
                }
            }
            gGrid = t
        }
        return [gIn, gGrid]
    }
}
