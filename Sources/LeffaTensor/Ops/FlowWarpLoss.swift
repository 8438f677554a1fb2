// The Leffa loss's per-layer tail (SPEC §3 steps 4–6) as one op: upsample the flow to image size
// (bilinear, align_corners=False), warp the reference by it (grid_sample, bilinear, zeros,
// align_corners=True), and take the mean squared masked error against the target, per sample.
// Why fused: the unfused chain (permute, resizeBilinear, permute, gridSample, sub, mul, square,
// mean) writes and reads several full-image temporaries per layer and as many again in backward;
// here one pass over the pixels does it all and keeps nothing image-sized.
// The upsampled grid and the sample are computed with the same taps, corner rules and float
// arithmetic as `resizeBilinear` and `gridSample` (Resample.swift), so the warp is bit-identical to
// the chain's; only the final sums differ in order. Since each sample's flow reaches only that
// sample's (scalar) loss, the forward pass also computes d loss_b / d flow_b from the corners it
// has loaded, and backward just scales it by the output gradient. Determinism: forward sums each
// (sample, row) in Double and adds rows in order; the gradient reduces each output row over
// columns into a private low-res row, then each low-res row sums the output rows in order. No
// reduction depends on the thread count.
import Foundation

/// Rough number of pixel·channel updates per task.
private let warpGrain = 4096

/// Per-sample masked warp error: mean over (C, H, W) of ((tgt − warp(ref, up(flow))) · mask)².
/// flow (B, h, w, 2) (x, y) in [-1, 1]; ref, tgt (B, C, H, W); mask (B, 1, H, W) → (B).
/// Gradient only w.r.t. flow (images and mask are data).
public func flowWarpLoss(flow: Tensor, reference: Tensor, target: Tensor, mask: Tensor) -> Tensor {
    shapeCheck(
        flow.rank == 4 && flow.shape[3] == 2 && reference.rank == 4 && target.shape == reference.shape
            && flow.shape[0] == reference.shape[0]
            && mask.shape == [reference.shape[0], 1, reference.shape[2], reference.shape[3]],
        "flowWarpLoss", flow.shape, reference.shape, target.shape, mask.shape,
        expected: "flow (B, h, w, 2), reference and target (B, C, H, W), mask (B, 1, H, W)")
    let B = reference.shape[0], C = reference.shape[1], H = reference.shape[2], W = reference.shape[3]
    let h = flow.shape[1], w = flow.shape[2]
    shapeCheck(
        h > 0 && w > 0 && H > 0 && W > 0, "flowWarpLoss", flow.shape, reference.shape,
        expected: "non-empty flow and images")
    let ty = LinearTaps(input: h, output: H), tx = LinearTaps(input: w, output: W)
    let N = Double(C * H * W)
    let grain = max(1, warpGrain / max(W * C, 1))
    // flow_b only reaches loss_b, a scalar: its gradient is g_b times the Jacobian row
    // d loss_b / d flow_b, which the forward pass computes from the corners it has loaded anyway.
    // Backward is then a scale of a flow-sized tensor instead of a second pass over the pixels.
    let wantGrad = GradMode.isEnabled && flow.requiresGrad

    // Forward: one Double partial sum per (b, row), rows added in order. With wantGrad, also the
    // loss's gradient w.r.t. each pixel's grid point, reduced over columns through the horizontal
    // taps into rowGrad (B, H, w, 2).
    let rowSums = UnsafeMutablePointer<Double>.allocate(capacity: B * H)
    defer { rowSums.deallocate() }
    let rowGrad = wantGrad ? Tensor(zeros: [B, H, w, 2]) : nil
    let pR = rowGrad?.data
    let pf = flow.data, pr = reference.data, pt = target.data, pm = mask.data
    let sx = Float(W - 1) / 2, sy = Float(H - 1) / 2
    let coef = Float(-2 / N) // d loss / d warp = coef · m · diff
    withTaps(tx) { x0, x1, lx0, lx1 in
        Parallel.for(B * H, grain: grain) { r in
            for brow in r {
                let b = brow / H, i = brow % H
                let mRow = pm + brow * W
                let f0 = pf + (b * h + ty.i0[i]) * w * 2, f1 = pf + (b * h + ty.i1[i]) * w * 2
                let ly0 = ty.l0[i], ly1 = ty.l1[i]
                var acc = 0.0
                for j in 0..<W {
                    let m = mRow[j]
                    if m == 0 { continue } // no error, no gradient
                    let p = warpPoint(f0, f1, x0[j], x1[j], lx0[j], lx1[j], ly0, ly1, W, H)
                    let c4 = Corners(p, W, H)
                    // Channels summed in float per pixel, pixels in Double: one Double add per pixel.
                    var px: Float = 0
                    guard let dst = pR.map({ $0 + brow * w * 2 }) else {
                        for c in 0..<C {
                            let d = (pt[(b * C + c) * H * W + i * W + j] - c4.sample(pr + (b * C + c) * H * W)) * m
                            px += d * d
                        }
                        acc += Double(px)
                        continue
                    }
                    var gix: Float = 0, giy: Float = 0
                    for c in 0..<C {
                        let plane = pr + (b * C + c) * H * W
                        let nw, ne, sw, se: Float
                        if c4.interior {
                            nw = plane[c4.o0]; ne = plane[c4.o1]; sw = plane[c4.o2]; se = plane[c4.o3]
                        } else {
                            nw = c4.nw(plane); ne = c4.ne(plane); sw = c4.sw(plane); se = c4.se(plane)
                        }
                        // gridSample's sum (a zero corner adds exactly nothing, as skipping it).
                        let warp = nw * c4.w0 + ne * c4.w1 + sw * c4.w2 + se * c4.w3
                        let d = (pt[(b * C + c) * H * W + i * W + j] - warp) * m
                        px += d * d
                        // gridSample's grid gradient: d warp / d ix, d warp / d iy.
                        let go = coef * m * d
                        gix += go * (-nw * p.dys + ne * p.dys - sw * p.dyn + se * p.dyn)
                        giy += go * (-nw * p.dxe - ne * p.dxw + sw * p.dxe + se * p.dxw)
                    }
                    acc += Double(px)
                    let gX = gix * sx, gY = giy * sy
                    dst[2 * x0[j]] += gX * lx0[j]; dst[2 * x0[j] + 1] += gY * lx0[j]
                    dst[2 * x1[j]] += gX * lx1[j]; dst[2 * x1[j] + 1] += gY * lx1[j]
                }
                rowSums[brow] = acc
            }
        }
    }
    let out = Tensor(zeros: [B])
    for b in 0..<B {
        var s = 0.0
        for i in 0..<H { s += rowSums[b * H + i] }
        out.data[b] = Float(s / N)
    }
    guard let pR else { return out }

    // The vertical taps' transpose, per low-res row (b, y), output rows in order: the Jacobian
    // (B, h, w, 2), the only thing backward keeps.
    let jac = Tensor(zeros: [B, h, w, 2]), q = jac.data
    Parallel.for(B * h, grain: max(1, warpGrain / max(H * w * 2, 1))) { r in
        for by in r {
            let b = by / h, y = by % h, dst = q + by * w * 2
            for i in 0..<H {
                var wgt: Float = 0
                if ty.i0[i] == y { wgt += ty.l0[i] }
                if ty.i1[i] == y { wgt += ty.l1[i] }
                if wgt == 0 { continue }
                let src = pR + (b * H + i) * w * 2
                for k in 0..<(w * 2) { dst[k] += wgt * src[k] }
            }
        }
    }
    withExtendedLifetime(rowGrad) {}
    let per = h * w * 2
    return out.recording("flowWarpLoss", [flow]) { g in
        let gFlow = Tensor(zeros: [B, h, w, 2]), pg = gFlow.data, pj = jac.data
        for b in 0..<B {
            let s = g.data[b]
            for k in (b * per)..<((b + 1) * per) { pg[k] = s * pj[k] }
        }
        return [gFlow]
    }
}

/// Runs `body` with raw pointers to a tap table's columns.
@inline(__always)
private func withTaps<R>(
    _ t: LinearTaps, _ body: (UnsafePointer<Int>, UnsafePointer<Int>, UnsafePointer<Float>, UnsafePointer<Float>) -> R
) -> R {
    t.i0.withUnsafeBufferPointer { a0 in
        t.i1.withUnsafeBufferPointer { a1 in
            t.l0.withUnsafeBufferPointer { b0 in
                t.l1.withUnsafeBufferPointer { b1 in
                    body(a0.baseAddress!, a1.baseAddress!, b0.baseAddress!, b1.baseAddress!)
                }
            }
        }
    }
}

/// The upsampled flow at one pixel, exactly as `resizeBilinear` computes it (per channel: top row
/// blended in x, bottom row blended in x, then blended in y), turned into a sampling point.
/// f0, f1: the two flow rows (w, 2) of this output row.
@inline(__always)
private func warpPoint(
    _ f0: UnsafePointer<Float>, _ f1: UnsafePointer<Float>, _ x0: Int, _ x1: Int,
    _ lx0: Float, _ lx1: Float, _ ly0: Float, _ ly1: Float, _ W: Int, _ H: Int
) -> GridPoint {
    let topX = f0[2 * x0] * lx0 + f0[2 * x1] * lx1, botX = f1[2 * x0] * lx0 + f1[2 * x1] * lx1
    let topY = f0[2 * x0 + 1] * lx0 + f0[2 * x1 + 1] * lx1, botY = f1[2 * x0 + 1] * lx0 + f1[2 * x1 + 1] * lx1
    return GridPoint(topX * ly0 + botX * ly1, topY * ly0 + botY * ly1, width: W, height: H)
}

/// The four corners of a sampling point: plane offsets (−1 when outside) and weights, in
/// `gridSample`'s order nw, ne, sw, se, so sums round the same way.
private struct Corners {
    var o0: Int, o1: Int, o2: Int, o3: Int
    var w0: Float, w1: Float, w2: Float, w3: Float

    @inline(__always)
    init(_ p: GridPoint, _ W: Int, _ H: Int) {
        let xIn0 = p.x0 >= 0 && p.x0 < W, xIn1 = p.x0 + 1 >= 0 && p.x0 + 1 < W
        let yIn0 = p.y0 >= 0 && p.y0 < H, yIn1 = p.y0 + 1 >= 0 && p.y0 + 1 < H
        let o = p.y0 * W + p.x0
        o0 = yIn0 && xIn0 ? o : -1; w0 = p.dxe * p.dys
        o1 = yIn0 && xIn1 ? o + 1 : -1; w1 = p.dxw * p.dys
        o2 = yIn1 && xIn0 ? o + W : -1; w2 = p.dxe * p.dyn
        o3 = yIn1 && xIn1 ? o + W + 1 : -1; w3 = p.dxw * p.dyn
        interior = xIn0 && xIn1 && yIn0 && yIn1
    }
    @inline(__always) func nw(_ plane: UnsafePointer<Float>) -> Float { o0 >= 0 ? plane[o0] : 0 }
    @inline(__always) func ne(_ plane: UnsafePointer<Float>) -> Float { o1 >= 0 ? plane[o1] : 0 }
    @inline(__always) func sw(_ plane: UnsafePointer<Float>) -> Float { o2 >= 0 ? plane[o2] : 0 }
    @inline(__always) func se(_ plane: UnsafePointer<Float>) -> Float { o3 >= 0 ? plane[o3] : 0 }
    /// All four corners inside the image (the common case): no per-corner tests.
    var interior: Bool
    /// Bilinear sample, zero outside: the corners inside, added in order (as `gridSample`).
    @inline(__always) func sample(_ plane: UnsafePointer<Float>) -> Float {
        if interior { return plane[o0] * w0 + plane[o1] * w1 + plane[o2] * w2 + plane[o3] * w3 }
        var acc: Float = 0
        if o0 >= 0 { acc += plane[o0] * w0 }
        if o1 >= 0 { acc += plane[o1] * w1 }
        if o2 >= 0 { acc += plane[o2] * w2 }
        if o3 >= 0 { acc += plane[o3] * w3 }
        return acc
    }
}
