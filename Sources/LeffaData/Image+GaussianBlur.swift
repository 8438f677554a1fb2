// Pillow's GaussianBlur, bit for bit: what the published pipeline's `repaint` feathers its mask
// with, so the repainted images here are the published ones. Pillow approximates a Gaussian of
// standard deviation r by three passes of an "extended" box blur per axis (Gwosdek et al. 2011): a
// box of integer radius l plus the two next pixels at a fractional weight, in 8-bit fixed point
// (weights scaled by 2²⁴, rounded back per pass), edges extended. Horizontal passes first, then
// vertical. The float32 arithmetic of the radius and the weights is Pillow's, on purpose.
// Not a general filter library.

extension Image {
    /// `ImageFilter.GaussianBlur(radius)` applied to every channel.
    public func gaussianBlurred(radius: Float, passes: Int = 3) -> Image {
        let box = Self.boxRadius(sigma: radius, passes: passes)
        guard box > 0, height > 0, width > 0 else { return self }
        var planes = (0..<channels).map { c in (0..<height * width).map { UInt32(pixels[$0 * channels + c]) } }
        for c in 0..<channels {
            for _ in 0..<passes {
                Self.blurLines(&planes[c], count: height, length: width, stride: 1, lineStride: width, radius: box)
            }
            for _ in 0..<passes {
                Self.blurLines(&planes[c], count: width, length: height, stride: width, lineStride: 1, radius: box)
            }
        }
        var out = pixels
        for c in 0..<channels { for i in 0..<height * width { out[i * channels + c] = UInt8(planes[c][i]) } }
        return Image(height: height, width: width, channels: channels, pixels: out)
    }

    /// The extended box radius l + a whose `passes` passes have the variance of a Gaussian of
    /// standard deviation `sigma` (Pillow's `_gaussian_blur_radius`, in its float32 steps).
    static func boxRadius(sigma: Float, passes: Int) -> Float {
        let sigma2 = sigma * sigma / Float(passes)
        let boxLength = Float((12.0 * Double(sigma2) + 1.0).squareRoot())
        let l = Float(((Double(boxLength) - 1.0) / 2.0).rounded(.down))
        var a = (2 * l + 1) * (l * (l + 1) - 3 * sigma2)
        a /= 6 * (sigma2 - (l + 1) * (l + 1))
        return l + a
    }

    /// One pass over `count` lines of `length` samples (sample k of line j at j·lineStride +
    /// k·stride): out[x] = (ww·Σ_{|k|≤r} in[x+k] + fw·(in[x−r−1] + in[x+r+1]) + 2²³) >> 24, indices
    /// clamped to the line. ww = 2²⁴/(2·radius + 1) in float32, truncated; fw makes the weights sum to 2²⁴.
    static func blurLines(_ v: inout [UInt32], count: Int, length: Int, stride: Int, lineStride: Int, radius: Float) {
        let r = Int(radius)
        let ww = UInt32(Float(1 << 24) / (radius * 2 + 1))
        let fw = (UInt32(1 << 24) - UInt32(r * 2 + 1) * ww) / 2
        var line = [UInt32](repeating: 0, count: length)
        for j in 0..<count {
            let base = j * lineStride
            for k in 0..<length { line[k] = v[base + k * stride] }
            func at(_ k: Int) -> UInt32 { line[min(max(k, 0), length - 1)] }
            var acc: UInt32 = 0
            for k in -r...r { acc += at(k - 1) } // the window of x = −1, moved on by one each x
            for x in 0..<length {
                acc = acc + at(x + r) - at(x - r - 1)
                let bulk = acc &* ww &+ (at(x - r - 1) + at(x + r + 1)) &* fw
                v[base + x * stride] = (bulk &+ (1 << 23)) >> 24
            }
        }
    }
}
