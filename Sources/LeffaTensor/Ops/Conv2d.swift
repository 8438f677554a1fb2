// 2-D convolution with PyTorch `F.conv2d` semantics (no groups, no dilation) and its backward,
// as sequences of single-threaded sgemm calls that the engine's threads share out.
//
// Two paths, chosen from the shapes:
//  • pointwise (1×1, stride 1, no padding): one GEMM per image, W (Cout, Cin) · x (Cin, H·W).
//  • everything else: im2col by blocks. The columns of a whole batch are numbered b·N + pixel
//    (N = Ho·Wo) and cut into blocks of a few hundred; a thread builds one block's column matrix
//    (Cin·kh·kw, block) in its own buffer and multiplies it at once: out = W · col, dW += dOut · colᵀ,
//    dcol = Wᵀ · dOut then scattered back (col2im). No full column matrix ever exists, and small
//    late-stage maps of several images share one block (wider GEMMs).
//    Measured against the "shifted GEMMs over a zero-padded input" alternative (one GEMM per
//    tap, no column buffer): im2col blocks were as fast at 320 channels 64×48 and much faster at
//    640 to 1280 channels on 32×24 to 8×6 maps (one long K = Cin·9 beats nine K = Cin passes).
//
// Determinism: work is cut into items (column block × row block forward, input-channel block
// backward) whose sizes depend only on the shapes; every output element comes from one sgemm
// call with the full reduction, and the reductions over pixels (dW, col2im, bias) run over the
// blocks in order inside one item. Same inputs, same bits, for any thread count.
// Memory: per-thread blocks die with the call; backward keeps x only when dW is wanted and the
// weight only when dX is.
// Not here: groups, dilation, transposed convolution as a public op.

/// Zero padding per side; the VAE's downsampler pads (top 0, bottom 1, left 0, right 1).
public struct Padding2D: Equatable, Sendable {
    public var top, bottom, left, right: Int
    public init(top: Int, bottom: Int, left: Int, right: Int) {
        self.top = top; self.bottom = bottom; self.left = left; self.right = right
    }
    /// `p` on every side (PyTorch's `padding=p`).
    public static func same(_ p: Int) -> Padding2D { Padding2D(top: p, bottom: p, left: p, right: p) }
    var isZero: Bool { top == 0 && bottom == 0 && left == 0 && right == 0 }
}

/// x (B, Cin, H, W) ⋆ weight (Cout, Cin, k, k) + bias (Cout) → (B, Cout, Ho, Wo), PyTorch's
/// `F.conv2d(x, weight, bias, stride, padding)`.
public func conv2d(_ x: Tensor, _ weight: Tensor, _ bias: Tensor? = nil, stride: Int = 1, padding: Int = 0) -> Tensor {
    conv2d(x, weight, bias, stride: (stride, stride), padding: .same(padding))
}

/// x (B, Cin, H, W) ⋆ weight (Cout, Cin, kh, kw) + bias (Cout) → (B, Cout, Ho, Wo) with
/// Ho = (H + top + bottom − kh) / strideH + 1, Wo likewise.
public func conv2d(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?, stride: (Int, Int), padding: Padding2D) -> Tensor {
    let op = "conv2d"
    shapeCheck(
        x.rank == 4 && weight.rank == 4 && x.shape[1] == weight.shape[1], op, x.shape, weight.shape,
        expected: "x (B, Cin, H, W) and weight (Cout, Cin, kh, kw)")
    precondition(stride.0 >= 1 && stride.1 >= 1, "conv2d: stride must be at least 1, got \(stride)")
    precondition(
        min(padding.top, padding.bottom, padding.left, padding.right) >= 0,
        "conv2d: negative padding \(padding)")
    let g = ConvGeometry(
        batch: x.shape[0], cin: x.shape[1], h: x.shape[2], w: x.shape[3],
        cout: weight.shape[0], kh: weight.shape[2], kw: weight.shape[3],
        sh: stride.0, sw: stride.1, pad: padding)
    shapeCheck(
        g.h + padding.top + padding.bottom >= g.kh && g.w + padding.left + padding.right >= g.kw,
        op, x.shape, weight.shape,
        expected: "a kernel that fits the padded input (padding \(padding), stride \(stride))")
    if let bias {
        shapeCheck(bias.shape == [g.cout], "conv2d (bias)", bias.shape, weight.shape, expected: "bias (\(g.cout))")
    }

    let out = Tensor(zeros: [g.batch, g.cout, g.ho, g.wo])
    convForward(g, x: x.data, weight: weight.data, bias: bias?.data, out: out.data)

    let xNeeds = x.requiresGrad, wNeeds = weight.requiresGrad
    let hasBias = bias != nil, bNeeds = bias?.requiresGrad ?? false
    // dX needs only W, dW needs only x: keep each only when the other's gradient is wanted.
    let xv: Tensor? = wNeeds ? x.detached() : nil
    let wv: Tensor? = xNeeds ? weight.detached() : nil
    var inputs = [x, weight]
    if let bias { inputs.append(bias) }
    return out.recording(op, inputs) { gOut in
        var grads: [Tensor?] = [nil, nil]
        if let wv {
            let dx = Tensor(zeros: [g.batch, g.cin, g.h, g.w])
            convBackwardInput(g, gradOut: gOut.data, weight: wv.data, gradX: dx.data)
            grads[0] = dx
        }
        if let xv {
            let dw = Tensor(zeros: [g.cout, g.cin, g.kh, g.kw])
            convBackwardWeight(g, x: xv.data, gradOut: gOut.data, gradW: dw.data)
            grads[1] = dw
        }
        if hasBias { grads.append(bNeeds ? convBiasGradient(g, gradOut: gOut.data) : nil) }
        return grads
    }
}

// MARK: - Geometry and work split

struct ConvGeometry {
    let batch, cin, h, w, cout, kh, kw, sh, sw: Int
    let pad: Padding2D
    var ho: Int { (h + pad.top + pad.bottom - kh) / sh + 1 }
    var wo: Int { (w + pad.left + pad.right - kw) / sw + 1 }
    var taps: Int { kh * kw }
    var isPointwise: Bool { kh == 1 && kw == 1 && sh == 1 && sw == 1 && pad.isZero }
}

/// Splits `n` columns into blocks of about `target`; with 4 or more blocks the count is rounded up
/// to a multiple of 4 so 2 or 4 threads get equal work. A function of the shape only.
func columnBlocks(_ n: Int, target: Int) -> (count: Int, size: Int) {
    var count = max(1, (n + target - 1) / target)
    if count >= 4 { count = (count + 3) / 4 * 4 }
    let size = (n + count - 1) / count
    return ((n + size - 1) / size, size)
}

/// When there are too few column blocks to keep the threads busy (small late-stage maps), also
/// splits the `m` output rows, in multiples of 16 (whole SIMD panels of the kernel).
func rowBlocks(_ m: Int, items: Int) -> (count: Int, size: Int) {
    guard items < 4, m > 16 else { return (1, m) }
    let want = min((m + 15) / 16, (4 + items - 1) / items)
    let size = ((m + want - 1) / want + 15) / 16 * 16
    return ((m + size - 1) / size, size)
}

/// Input channels per backward item: about 384 column-matrix rows (channels × taps) per GEMM,
/// the count rounded up to a multiple of 4 for balance.
func channelBlocks(_ g: ConvGeometry) -> (count: Int, size: Int) {
    var count = max(1, (g.cin * g.taps + 383) / 384)
    count = min(g.cin, (count + 3) / 4 * 4)
    let size = (g.cin + count - 1) / count
    return ((g.cin + size - 1) / size, size)
}

/// Splits batch columns [n0, n1) by image: `body(b, lo, hi, at)` for pixels [lo, hi) of image b,
/// which sit at column `at` of the block.
@inline(__always)
func forEachImage(_ n0: Int, _ n1: Int, perImage n: Int, _ body: (_ b: Int, _ lo: Int, _ hi: Int, _ at: Int) -> Void) {
    var s = n0
    while s < n1 {
        let b = s / n, lo = s - b * n, hi = min(n, n1 - b * n)
        body(b, lo, hi, s - n0)
        s = b * n + hi
    }
}

// MARK: - Forward

func convForward(
    _ g: ConvGeometry, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    bias: UnsafePointer<Float>?, out: UnsafeMutablePointer<Float>
) {
    guard g.isPointwise else { return im2colForward(g, x: x, weight: weight, bias: bias, out: out) }
    // out_b (Cout, H·W) = W (Cout, Cin) · x_b (Cin, H·W).
    let hw = g.h * g.w
    for b in 0..<g.batch {
        gemm(
            m: g.cout, n: hw, k: g.cin, a: weight, lda: g.cin, b: x + b * g.cin * hw, ldb: hw,
            c: out + b * g.cout * hw, ldc: hw)
    }
    if let bias { addChannelBias(out, bias, batch: g.batch, channels: g.cout, plane: hw) }
}

/// out[:, block] = W (Cout, Cin·kh·kw) · col[:, block] + bias, one (column block, row block) per item.
func im2colForward(
    _ g: ConvGeometry, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    bias: UnsafePointer<Float>?, out: UnsafeMutablePointer<Float>
) {
    let kk = g.cin * g.taps, n = g.ho * g.wo, image = g.cin * g.h * g.w, cout = g.cout
    // Wide blocks (OpenBLAS repacks W on every call) but at most 16 MB of columns per thread.
    let cols = columnBlocks(g.batch * n, target: max(64, min(512, (1 << 22) / kk)))
    let rows = rowBlocks(cout, items: cols.count)
    Parallel.for(cols.count * rows.count) { items in
        withScratch(kk * cols.size) { col in
            withScratch(rows.size * cols.size) { spill in
                var built = -1
                for item in items {
                    let cb = item / rows.count, rb = item % rows.count
                    let n0 = cb * cols.size, n1 = min(g.batch * n, n0 + cols.size), nn = n1 - n0
                    let m0 = rb * rows.size, m1 = min(cout, m0 + rows.size)
                    if built != cb {
                        forEachImage(n0, n1, perImage: n) { b, lo, hi, at in
                            im2colBlock(
                                g, image: x + b * image, c0: 0, c1: g.cin, n0: lo, n1: hi, col: col + at, ld: nn)
                        }
                        built = cb
                    }
                    let b0 = n0 / n
                    if (n1 - 1) / n == b0 {
                        // Inside one image: multiply straight into the output.
                        let c = out + (b0 * cout + m0) * n + (n0 - b0 * n)
                        sgemm(m: m1 - m0, n: nn, k: kk, a: weight + m0 * kk, lda: kk, b: col, ldb: nn, c: c, ldc: n)
                        if let bias {
                            for mi in m0..<m1 { let r = c + (mi - m0) * n, v = bias[mi]; for j in 0..<nn { r[j] += v } }
                        }
                    } else {
                        sgemm(
                            m: m1 - m0, n: nn, k: kk, a: weight + m0 * kk, lda: kk, b: col, ldb: nn, c: spill, ldc: nn)
                        forEachImage(n0, n1, perImage: n) { b, lo, hi, at in
                            for mi in m0..<m1 {
                                let src = spill + (mi - m0) * nn + at, dst = out + (b * cout + mi) * n + lo
                                let v = bias?[mi] ?? 0
                                for j in 0..<(hi - lo) { dst[j] = src[j] + v }
                            }
                        }
                    }
                }
            }
        }
    }
}

// MARK: - Backward

func convBackwardInput(
    _ g: ConvGeometry, gradOut: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    gradX: UnsafeMutablePointer<Float>
) {
    guard g.isPointwise else { return col2imBackwardInput(g, gradOut: gradOut, weight: weight, gradX: gradX) }
    // dx_b (Cin, H·W) = Wᵀ (Cin, Cout) · dOut_b (Cout, H·W).
    let hw = g.h * g.w
    for b in 0..<g.batch {
        gemm(
            transA: true, m: g.cin, n: hw, k: g.cout, a: weight, lda: g.cin,
            b: gradOut + b * g.cout * hw, ldb: hw, c: gradX + b * g.cin * hw, ldc: hw)
    }
}

/// Per input-channel block: dcol (block·kh·kw, columns) = W[:, block]ᵀ · dOut[:, columns], then
/// scattered (col2im) into dx[:, block]. An item owns its channels, and its column blocks run in
/// order, so the adds into each input pixel happen in a fixed order.
func col2imBackwardInput(
    _ g: ConvGeometry, gradOut: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    gradX: UnsafeMutablePointer<Float>
) {
    let kk = g.cin * g.taps, n = g.ho * g.wo, image = g.cin * g.h * g.w
    let chans = channelBlocks(g)
    let cols = columnBlocks(g.batch * n, target: 512)
    Parallel.for(chans.count) { items in
        withScratch(chans.size * g.taps * cols.size) { dcol in
            withScratch(g.cout * cols.size) { spill in
                for item in items {
                    let c0 = item * chans.size, c1 = min(g.cin, c0 + chans.size)
                    for cb in 0..<cols.count {
                        let n0 = cb * cols.size, n1 = min(g.batch * n, n0 + cols.size), nn = n1 - n0
                        let (dy, ldy) = batchColumns(
                            gradOut, channels: g.cout, perImage: n, n0: n0, n1: n1, spill: spill)
                        sgemm(
                            transA: true, m: (c1 - c0) * g.taps, n: nn, k: g.cout, a: weight + c0 * g.taps, lda: kk,
                            b: dy, ldb: ldy, c: dcol, ldc: nn)
                        forEachImage(n0, n1, perImage: n) { b, lo, hi, at in
                            col2imBlock(
                                g, image: gradX + b * image, c0: c0, c1: c1, n0: lo, n1: hi, col: dcol + at, ld: nn)
                        }
                    }
                }
            }
        }
    }
}

func convBackwardWeight(
    _ g: ConvGeometry, x: UnsafePointer<Float>, gradOut: UnsafePointer<Float>,
    gradW: UnsafeMutablePointer<Float>
) {
    guard g.isPointwise else { return im2colBackwardWeight(g, x: x, gradOut: gradOut, gradW: gradW) }
    // dW (Cout, Cin) = Σ_b dOut_b (Cout, H·W) · x_bᵀ, images added in order.
    let hw = g.h * g.w
    for b in 0..<g.batch {
        gemm(
            transB: true, m: g.cout, n: g.cin, k: hw, a: gradOut + b * g.cout * hw, lda: hw,
            b: x + b * g.cin * hw, ldb: hw, beta: b == 0 ? 0 : 1, c: gradW, ldc: g.cin)
    }
}

/// Per input-channel block: dW[:, block] = Σ over column blocks, in order, of
/// dOut[:, columns] · col[block, columns]ᵀ.
func im2colBackwardWeight(
    _ g: ConvGeometry, x: UnsafePointer<Float>, gradOut: UnsafePointer<Float>,
    gradW: UnsafeMutablePointer<Float>
) {
    let kk = g.cin * g.taps, n = g.ho * g.wo, image = g.cin * g.h * g.w
    let chans = channelBlocks(g)
    let cols = columnBlocks(g.batch * n, target: 512)
    Parallel.for(chans.count) { items in
        withScratch(chans.size * g.taps * cols.size) { col in
            withScratch(g.cout * cols.size) { spill in
                for item in items {
                    let c0 = item * chans.size, c1 = min(g.cin, c0 + chans.size)
                    for cb in 0..<cols.count {
                        let n0 = cb * cols.size, n1 = min(g.batch * n, n0 + cols.size), nn = n1 - n0
                        forEachImage(n0, n1, perImage: n) { b, lo, hi, at in
                            im2colBlock(g, image: x + b * image, c0: c0, c1: c1, n0: lo, n1: hi, col: col + at, ld: nn)
                        }
                        let (dy, ldy) = batchColumns(
                            gradOut, channels: g.cout, perImage: n, n0: n0, n1: n1, spill: spill)
                        sgemm(
                            transB: true, m: g.cout, n: (c1 - c0) * g.taps, k: nn, a: dy, lda: ldy, b: col, ldb: nn,
                            beta: cb == 0 ? 0 : 1, c: gradW + c0 * g.taps, ldc: kk)
                    }
                }
            }
        }
    }
}

/// dBias[co] = Σ over images and pixels of dOut, in order, in double precision.
func convBiasGradient(_ g: ConvGeometry, gradOut: UnsafePointer<Float>) -> Tensor {
    let out = Tensor(zeros: [g.cout]), p = out.data, plane = g.ho * g.wo, cout = g.cout, batch = g.batch
    Parallel.for(cout, grain: 8) { r in
        for co in r {
            var acc = 0.0
            for b in 0..<batch {
                let s = gradOut + (b * cout + co) * plane
                var part: Float = 0
                for i in 0..<plane { part += s[i] }
                acc += Double(part)
            }
            p[co] = Float(acc)
        }
    }
    return out
}

// MARK: - Columns

/// Runs `body` with `count` zeroed floats that live exactly as long as the call (counted in
/// `Storage.live`, so memory tests see them).
@inline(__always)
func withScratch<R>(_ count: Int, _ body: (UnsafeMutablePointer<Float>) -> R) -> R {
    let s = Storage(count: count)
    return withExtendedLifetime(s) { body(s.base) }
}

/// Batch columns [n0, n1) of (B, C, N) maps as one (C, n1 − n0) matrix with its leading dimension:
/// the maps themselves when the block lies in one image, else a copy in `spill`.
func batchColumns(
    _ maps: UnsafePointer<Float>, channels: Int, perImage n: Int, n0: Int, n1: Int,
    spill: UnsafeMutablePointer<Float>
) -> (UnsafePointer<Float>, Int) {
    let b0 = n0 / n
    if (n1 - 1) / n == b0 { return (maps + b0 * channels * n + (n0 - b0 * n), n) }
    let nn = n1 - n0
    forEachImage(n0, n1, perImage: n) { b, lo, hi, at in
        for c in 0..<channels { (spill + c * nn + at).update(from: maps + (b * channels + c) * n + lo, count: hi - lo) }
    }
    return (UnsafePointer(spill), nn)
}

/// Rows of channels [c0, c1) of one image's column matrix for output pixels [n0, n1):
/// col[((ci − c0)·kh·kw + dy·kw + dx)·ld + j] = x[ci, oy·sh + dy − top, ox·sw + dx − left] (0 outside
/// the image), with (oy, ox) the pixel n0 + j.
func im2colBlock(
    _ g: ConvGeometry, image: UnsafePointer<Float>, c0: Int, c1: Int, n0: Int, n1: Int,
    col: UnsafeMutablePointer<Float>, ld: Int
) {
    let sw = g.sw
    for ci in c0..<c1 {
        let planeBase = image + ci * g.h * g.w
        for dy in 0..<g.kh {
            for dx in 0..<g.kw {
                let row = col + ((ci - c0) * g.taps + dy * g.kw + dx) * ld
                let (lo, hi) = validColumns(g, dx: dx)
                // One output row at a time: columns [a, e) of output row oy; r[ox] is its slot.
                var n = n0
                while n < n1 {
                    let oy = n / g.wo, a = n - oy * g.wo, end = min(n1, (oy + 1) * g.wo), e = a + (end - n)
                    let iy = oy * g.sh + dy - g.pad.top, r = row + (n - n0) - a
                    if iy < 0 || iy >= g.h {
                        for o in a..<e { r[o] = 0 }
                    } else {
                        let src = planeBase + iy * g.w + dx - g.pad.left
                        let vlo = min(max(lo, a), e), vhi = min(max(hi, vlo), e)
                        for o in a..<vlo { r[o] = 0 }
                        if sw == 1 {
                            for o in vlo..<vhi { r[o] = src[o] }
                        } else {
                            for o in vlo..<vhi { r[o] = src[o * sw] }
                        }
                        for o in vhi..<e { r[o] = 0 }
                    }
                    n = end
                }
            }
        }
    }
}

/// The adjoint of `im2colBlock`: adds col's entries into the image pixels they were read from.
func col2imBlock(
    _ g: ConvGeometry, image: UnsafeMutablePointer<Float>, c0: Int, c1: Int, n0: Int, n1: Int,
    col: UnsafePointer<Float>, ld: Int
) {
    let sw = g.sw
    for ci in c0..<c1 {
        let planeBase = image + ci * g.h * g.w
        for dy in 0..<g.kh {
            for dx in 0..<g.kw {
                let row = col + ((ci - c0) * g.taps + dy * g.kw + dx) * ld
                let (lo, hi) = validColumns(g, dx: dx)
                var n = n0
                while n < n1 {
                    let oy = n / g.wo, a = n - oy * g.wo, end = min(n1, (oy + 1) * g.wo), e = a + (end - n)
                    let iy = oy * g.sh + dy - g.pad.top
                    if iy >= 0 && iy < g.h {
                        let dst = planeBase + iy * g.w + dx - g.pad.left, r = row + (n - n0) - a
                        let vlo = min(max(lo, a), e), vhi = min(max(hi, vlo), e)
                        for o in vlo..<vhi { dst[o * sw] += r[o] }
                    }
                    n = end
                }
            }
        }
    }
}

/// Output columns ox in [lo, hi) whose input column ox·sw + dx − left lies inside the image.
@inline(__always)
func validColumns(_ g: ConvGeometry, dx: Int) -> (Int, Int) {
    // ox·sw ≥ left − dx  and  ox·sw ≤ w − 1 + left − dx.
    let need = g.pad.left - dx
    let lo = need <= 0 ? 0 : (need + g.sw - 1) / g.sw
    let top = g.w - 1 + need
    let hi = top < 0 ? 0 : min(g.wo, top / g.sw + 1)
    return (min(lo, g.wo), max(min(lo, g.wo), hi))
}

/// out[b, c, :] += bias[c] over (B, C, plane).
func addChannelBias(
    _ out: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>, batch: Int, channels: Int, plane: Int
) {
    Parallel.for(batch * channels, grain: max(1, 8192 / max(plane, 1))) { r in
        for pl in r { let p = out + pl * plane, v = bias[pl % channels]; for i in 0..<plane { p[i] += v } }
    }
}
