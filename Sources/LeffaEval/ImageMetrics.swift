// Image-quality metrics for held-out evaluation: PSNR and SSIM of a generated (C, H, W) image
// against its target, over the whole image or inside a mask (the try-on region), with values in
// [-1, 1] as the VAE decodes them.
//
// Both reproduce scikit-image 0.26 (`peak_signal_noise_ratio`, and `structural_similarity` with
// gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=0), so the numbers
// can be compared with papers that report them; Tests/LeffaEvalTests/Fixtures/metrics.json holds
// scikit-image's values (Scripts/make_metrics_fixture.py). What scikit-image does, read from its
// source:
//  - Local statistics are scipy.ndimage.gaussian_filter(sigma 1.5, truncate 3.5, mode 'reflect'):
//    an 11-tap normalised Gaussian, applied along H then W, borders mirrored half-sample
//    symmetrically (… c b a | a b c …).
//  - Each channel is a separate 2-D SSIM; the mean SSIM averages the channels' means, and each
//    channel's mean skips the 5-pixel border strip (the map itself is not cropped).
//  - Population (co)variances: E[xy] − E[x]E[y], no N/(N−1).
//  - scikit-image computes in the input's float type; this file computes in Double, which is what
//    scikit-image gives on float64 input (on float32 input it differs by ~1e-6 per map pixel).
// Not here: batches (call once per image), perceptual metrics (LPIPS, FID: they need networks),
// colour-space conversion (SSIM runs on the channels as given), per-channel data ranges, gradients.
import Foundation
import LeffaTensor

public enum ImageMetrics {
    /// Wang et al.'s stabilising constants, as fractions of the data range.
    static let k1 = 0.01, k2 = 0.03
    /// The Gaussian window: sigma 1.5 truncated at 3.5 sigma gives radius Int(3.5·1.5 + 0.5) = 5
    /// (scipy's rule), 11 taps, Wang et al.'s window.
    static let sigma = 1.5, truncate = 3.5
    static let radius = Int(truncate * sigma + 0.5)
    /// The smallest side SSIM accepts: one full window (scikit-image raises below it).
    public static let minimumSide = 2 * radius + 1

    /// Taps w[k] for offsets k = 0…radius of scipy's `_gaussian_kernel1d` (exp(−x²/2σ²), normalised
    /// over all 11 taps); the window is symmetric, so offsets −k use w[k] too.
    static let taps: [Double] = {
        let phi = (-radius...radius).map { x in exp(-0.5 / (sigma * sigma) * Double(x * x)) }
        let total = phi.reduce(0, +)
        return phi[radius...].map { $0 / total }
    }()

    // MARK: - PSNR

    /// PSNR (dB) of `test` against `reference`: (C, H, W) tensors of the same shape with values in [-1, 1], data range 2:
    /// 10·log10(range² / MSE), MSE over every channel and pixel, or only over pixels where `mask` ((H, W) or (1, H, W), 1 = inside) is ≥ 0.5.
    /// Identical images give +infinity (as scikit-image). An empty mask gives nan.
    public static func psnr(_ test: Tensor, _ reference: Tensor, mask: Tensor? = nil, dataRange: Double = 2) -> Double {
        let (C, H, W) = dims(test, reference, "ImageMetrics.psnr")
        precondition(dataRange > 0, "ImageMetrics.psnr: dataRange must be positive, got \(dataRange)")
        let inside = mask.map { insideFlags($0, H: H, W: W, "ImageMetrics.psnr") }
        let n = H * W, pa = test.data, pb = reference.data
        // One sequential Double sum: the differences of floats are exact in Double, and the order
        // never depends on threads.
        var sum = 0.0, used = 0
        for c in 0..<C {
            let a = pa + c * n, b = pb + c * n
            for p in 0..<n where inside?[p] ?? true {
                let d = Double(a[p]) - Double(b[p])
                sum += d * d
                used += 1
            }
        }
        // mse 0 → +inf, no pixels → 0/0 = nan: both fall out of the formula, as in scikit-image.
        return 10 * log10(dataRange * dataRange / (sum / Double(used)))
    }

    // MARK: - SSIM

    /// The SSIM map (H·W values, row-major, mean over channels) of Wang et al. 2004 as scikit-image's
    /// structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=2, channel_axis=0, full=True) returns it (the uncropped S map averaged over channels).
    /// Images need at least 11 pixels on each side (one window), as in scikit-image: smaller ones stop with a precondition failure.
    public static func ssimMap(_ test: Tensor, _ reference: Tensor, dataRange: Double = 2) -> [Double] {
        let (C, H, W) = dims(test, reference, "ImageMetrics.ssimMap")
        precondition(
            H >= minimumSide && W >= minimumSide,
            "ImageMetrics.ssim: images are \(H)×\(W) pixels; SSIM's Gaussian window needs at least "
                + "\(minimumSide)×\(minimumSide) (scikit-image raises too): compare larger images, or use PSNR")
        precondition(dataRange > 0, "ImageMetrics.ssim: dataRange must be positive, got \(dataRange)")
        let c1 = (k1 * dataRange) * (k1 * dataRange), c2 = (k2 * dataRange) * (k2 * dataRange)
        let n = H * W
        var map = [Double](repeating: 0, count: n)
        // Five planes per channel: x, y, x², y², xy, each replaced by its Gaussian-weighted local mean.
        let moments = UnsafeMutablePointer<Double>.allocate(capacity: 5 * n)
        let scratch = UnsafeMutablePointer<Double>.allocate(capacity: n)
        defer { moments.deallocate(); scratch.deallocate() }
        let ux = moments, uy = moments + n, uxx = moments + 2 * n, uyy = moments + 3 * n, uxy = moments + 4 * n
        for c in 0..<C {
            let a = test.data + c * n, b = reference.data + c * n
            for p in 0..<n {
                let x = Double(a[p]), y = Double(b[p])
                ux[p] = x; uy[p] = y; uxx[p] = x * x; uyy[p] = y * y; uxy[p] = x * y
            }
            for plane in 0..<5 { gaussianBlur(moments + plane * n, scratch: scratch, H: H, W: W) }
            // scikit-image's expression, term for term, so rounding matches too.
            map.withUnsafeMutableBufferPointer { m in
                for p in 0..<n {
                    let mx = ux[p], my = uy[p]
                    let vx = uxx[p] - mx * mx, vy = uyy[p] - my * my, vxy = uxy[p] - mx * my
                    let a1 = 2 * mx * my + c1, a2 = 2 * vxy + c2
                    let b1 = mx * mx + my * my + c1, b2 = vx + vy + c2
                    m[p] += (a1 * a2) / (b1 * b2)
                }
            }
        }
        let channels = Double(C)
        for p in 0..<n { map[p] /= channels }
        return map
    }

    /// Without a mask: scikit-image's mean SSIM (the map cropped by (win_size−1)/2 = 5 pixels on each side, then averaged). With a mask: the mean of the uncropped map over pixels where mask ≥ 0.5 (nan if none).
    /// The cropped mean of the channel-averaged map equals scikit-image's mean of per-channel means (every channel crops the same pixels).
    public static func ssim(_ test: Tensor, _ reference: Tensor, mask: Tensor? = nil, dataRange: Double = 2) -> Double {
        let (_, H, W) = dims(test, reference, "ImageMetrics.ssim")
        let inside = mask.map { insideFlags($0, H: H, W: W, "ImageMetrics.ssim") }
        let map = ssimMap(test, reference, dataRange: dataRange)
        var sum = 0.0, used = 0
        if let inside {
            // Inside a mask the border strip counts: a garment region often touches the image edge.
            for p in 0..<map.count where inside[p] { sum += map[p]; used += 1 }
        } else {
            for i in radius..<(H - radius) {
                for j in radius..<(W - radius) { sum += map[i * W + j] }
            }
            used = (H - 2 * radius) * (W - 2 * radius)
        }
        return sum / Double(used)
    }

    // MARK: - Helpers

    /// (C, H, W) of two tensors that must have that same shape.
    private static func dims(_ test: Tensor, _ reference: Tensor, _ op: String) -> (Int, Int, Int) {
        shapeCheck(
            test.rank == 3 && test.shape == reference.shape && test.shape[0] >= 1, op, test.shape, reference.shape,
            expected: "two (C, H, W) images of the same shape, C ≥ 1 (call once per image of a batch)")
        return (test.shape[0], test.shape[1], test.shape[2])
    }

    /// The mask's pixels as inside (≥ 0.5) or not; the mask is (H, W) or (1, H, W).
    private static func insideFlags(_ mask: Tensor, H: Int, W: Int, _ op: String) -> [Bool] {
        shapeCheck(
            mask.shape == [H, W] || mask.shape == [1, H, W], op + " mask", mask.shape,
            expected: "(\(H), \(W)) or (1, \(H), \(W)), the images' height and width")
        let m = mask.data
        return (0..<H * W).map { m[$0] >= 0.5 }
    }

    /// Replaces the (H, W) plane `x` by its Gaussian-weighted local means: scipy.ndimage.gaussian_filter's
    /// two 1-D passes (along H, then along W) with 'reflect' borders. `scratch` holds H·W values.
    /// Rows are independent within a pass, so the split over threads never changes a result.
    private static func gaussianBlur(
        _ x: UnsafeMutablePointer<Double>, scratch: UnsafeMutablePointer<Double>, H: Int, W: Int
    ) {
        let r = radius
        taps.withUnsafeBufferPointer { w in
            // Along H: output row i mixes rows i ± k, inner loop along the contiguous row.
            Parallel.for(H, grain: max(1, 16_384 / W)) { rows in
                for i in rows {
                    let out = scratch + i * W, centre = x + i * W, w0 = w[0]
                    for j in 0..<W { out[j] = w0 * centre[j] }
                    for k in 1...r {
                        let up = x + reflect(i - k, H) * W, down = x + reflect(i + k, H) * W, wk = w[k]
                        for j in 0..<W { out[j] += wk * (up[j] + down[j]) }
                    }
                }
            }
            // Along W: each row padded by r mirrored values on both sides, then the same sum.
            Parallel.for(H, grain: max(1, 16_384 / W)) { rows in
                let padded = UnsafeMutablePointer<Double>.allocate(capacity: W + 2 * r)
                defer { padded.deallocate() }
                for i in rows {
                    let src = scratch + i * W, out = x + i * W
                    for j in -r..<(W + r) { padded[j + r] = src[reflect(j, W)] }
                    let centre = padded + r
                    for j in 0..<W {
                        var s = w[0] * centre[j]
                        for k in 1...r { s += w[k] * (centre[j - k] + centre[j + k]) }
                        out[j] = s
                    }
                }
            }
        }
    }

    /// Index i of a length-n axis under scipy's 'reflect' (half-sample symmetric: d c b a | a b c d | d c b a).
    /// One reflection suffices because |overhang| ≤ radius < n (SSIM requires sides ≥ 11).
    @inline(__always)
    private static func reflect(_ i: Int, _ n: Int) -> Int {
        i < 0 ? -i - 1 : (i >= n ? 2 * n - 1 - i : i)
    }
}
