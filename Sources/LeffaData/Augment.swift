// Opt-in training augmentation (`data.augment`), as peer try-on trainers (IDM-VTON, StableVITON)
// do it: a horizontal flip of every field together (person, garment, masks, densepose), a small
// scale and shift of the person-side fields together (the garment stays put), and one colour
// jitter applied identically to the target person and the garment. The masked image is made again
// from the augmented person and mask, so it stays image × (mask < 0.5).
// Every random value comes from one key (the trainer keys it by seed, step and sample), drawn here
// in a fixed order: the same key gives the same augmentation on any rank, after any resume.
// A flipped densepose image is only mirrored, its left/right part labels and U coordinates are not
// swapped, as IDM-VTON does it: simple, and the model still sees a consistent body layout.
// Not the loading (Sample.swift) nor the keying (the trainer's SampleRandomness).

import LeffaTensor

/// What `data.augment` asks for; every field 0 = that augmentation off.
public struct AugmentConfig: Sendable, Equatable {
    /// Probability of a horizontal flip.
    public var hflip: Float = 0
    /// The person side is scaled about the image centre by a factor uniform in [1 − scale, 1 + scale].
    public var scale: Float = 0
    /// ... and shifted by a fraction uniform in [−shift, shift] of the width (x) and height (y).
    public var shift: Float = 0
    /// Colour jitter as torchvision's ColorJitter: factors uniform in [1 − b, 1 + b] (brightness,
    /// contrast, saturation) and a hue shift uniform in [−hue, hue] turns, in a random order.
    public var brightness: Float = 0, contrast: Float = 0, saturation: Float = 0, hue: Float = 0
    public init() {}

    /// Whether every sample comes out unchanged.
    public var isOff: Bool {
        hflip == 0 && scale == 0 && shift == 0 && brightness == 0 && contrast == 0 && saturation == 0 && hue == 0
    }

    /// The augmentation of one sample from its key. Counters: 0 flip, 1 scale, 2–3 shift x/y,
    /// 4–7 jitter factors, 8–10 jitter order: each value has its own, so switching one option on
    /// or off leaves the others' draws as they were.
    public func draw(key: UInt64) -> AugmentDraw {
        func u(_ c: UInt64) -> Float { CounterRNG.uniform(key, c) }
        func sym(_ c: UInt64, _ r: Float) -> Float { r == 0 ? 0 : (2 * u(c) - 1) * r }
        var order = [0, 1, 2, 3]
        for i in stride(from: 3, through: 1, by: -1) {
            let j = Int(CounterRNG.bits(key, UInt64(8 + 3 - i)) % UInt64(i + 1))
            order.swapAt(i, j)
        }
        return AugmentDraw(
            flip: hflip > 0 && u(0) < hflip, scale: 1 + sym(1, scale), shiftX: sym(2, shift), shiftY: sym(3, shift),
            brightness: 1 + sym(4, brightness), contrast: 1 + sym(5, contrast), saturation: 1 + sym(6, saturation),
            hue: sym(7, hue), jitterOrder: order)
    }
}

/// One sample's augmentation: the values drawn.
public struct AugmentDraw: Sendable, Equatable {
    public var flip = false
    public var scale: Float = 1
    /// Fractions of the width and height (positive: right, down).
    public var shiftX: Float = 0, shiftY: Float = 0
    public var brightness: Float = 1, contrast: Float = 1, saturation: Float = 1
    /// Turns of the hue circle.
    public var hue: Float = 0
    /// The jitter operations in the order applied: 0 brightness, 1 contrast, 2 saturation, 3 hue.
    public var jitterOrder = [0, 1, 2, 3]
    public init(
        flip: Bool = false, scale: Float = 1, shiftX: Float = 0, shiftY: Float = 0, brightness: Float = 1,
        contrast: Float = 1,
        saturation: Float = 1, hue: Float = 0, jitterOrder: [Int] = [0, 1, 2, 3]
    ) {
        self.flip = flip; self.scale = scale; self.shiftX = shiftX; self.shiftY = shiftY; self.brightness = brightness
        self.contrast = contrast; self.saturation = saturation; self.hue = hue; self.jitterOrder = jitterOrder
    }
    var movesPerson: Bool { scale != 1 || shiftX != 0 || shiftY != 0 }
    var jitters: Bool { brightness != 1 || contrast != 1 || saturation != 1 || hue != 0 }
}

/// `s` augmented by `d` (see the file header); fields outside the moved picture are filled as the
/// loader pads: white images, empty masks, background densepose, invalid flow.
public func augment(_ s: TrainingSample, _ d: AugmentDraw) -> TrainingSample {
    var o = s
    if d.flip {
        o.image = flipped(o.image); o.reference = flipped(o.reference); o.inpaintMask = flipped(o.inpaintMask)
        o.lossMask = flipped(o.lossMask); o.densepose = flipped(o.densepose)
        if let f = o.flow, let v = o.flowValid { o.flow = flippedFlow(f); o.flowValid = flipped(v) }
    }
    if d.movesPerson {
        let a = PersonMove(scale: d.scale, shiftX: d.shiftX, shiftY: d.shiftY)
        o.image = a.apply(o.image, bilinear: true, fill: 1)
        o.inpaintMask = a.apply(o.inpaintMask, bilinear: false, fill: 0)
        o.lossMask = a.apply(o.lossMask, bilinear: false, fill: 0)
        o.densepose = a.apply(o.densepose, bilinear: false, fill: -1)
        if let f = o.flow, let v = o.flowValid {
            // (H, W, 2) as two planes, moved like a label map (flows are not blended across edges).
            let h = f.shape[0], w = f.shape[1]
            let planes = Tensor(zeros: [2, h, w])
            for i in 0..<(h * w) { planes[i] = f[2 * i]; planes[h * w + i] = f[2 * i + 1] }
            let m = a.apply(planes, bilinear: false, fill: 0), back = Tensor(zeros: f.shape)
            for i in 0..<(h * w) { back[2 * i] = m[i]; back[2 * i + 1] = m[h * w + i] }
            o.flow = back; o.flowValid = a.apply(v, bilinear: false, fill: 0)
        }
    }
    if d.jitters { o.image = jittered(o.image, d); o.reference = jittered(o.reference, d) }
    if d.flip || d.movesPerson || d.jitters { o.maskedImage = maskedImage(o.image, o.inpaintMask) }
    return o
}

/// (C, H, W) mirrored left to right.
public func flipped(_ x: Tensor) -> Tensor {
    shapeCheck(x.rank == 3, "flipped", x.shape, expected: "(C, H, W)")
    let rows = x.dim(0) * x.dim(1), w = x.dim(2), out = Tensor(zeros: x.shape)
    let p = x.data, q = out.data
    for r in 0..<rows { for c in 0..<w { q[r * w + c] = p[r * w + w - 1 - c] } }
    return out
}

/// A ground-truth flow (H, W, 2) of a flipped pair: mirrored, and its x (the flipped reference's
/// coordinate, ±1 at the edges) negated.
func flippedFlow(_ f: Tensor) -> Tensor {
    let h = f.shape[0], w = f.shape[1], out = Tensor(zeros: f.shape)
    for y in 0..<h {
        for x in 0..<w {
            let s = 2 * (y * w + w - 1 - x), t = 2 * (y * w + x)
            out[t] = -f[s]; out[t + 1] = f[s + 1]
        }
    }
    return out
}

/// Scale about the image centre, then shift, in pixel-centre coordinates: the output pixel
/// centred at p reads the input at (p − centre − shift) / scale + centre.
struct PersonMove {
    var scale: Float, shiftX: Float, shiftY: Float

    func apply(_ x: Tensor, bilinear: Bool, fill: Float) -> Tensor {
        shapeCheck(x.rank == 3, "PersonMove", x.shape, expected: "(C, H, W)")
        let c = x.dim(0), h = x.dim(1), w = x.dim(2), n = h * w
        let out = Tensor(zeros: x.shape), p = x.data, q = out.data
        let cx = Float(w) / 2, cy = Float(h) / 2, tx = shiftX * Float(w), ty = shiftY * Float(h)
        for oy in 0..<h {
            let sy = (Float(oy) + 0.5 - cy - ty) / scale + cy - 0.5
            for ox in 0..<w {
                let sx = (Float(ox) + 0.5 - cx - tx) / scale + cx - 0.5
                if !bilinear {
                    let ix = Int((sx + 0.5).rounded(.down)), iy = Int((sy + 0.5).rounded(.down))
                    let inside = ix >= 0 && ix < w && iy >= 0 && iy < h
                    for k in 0..<c { q[k * n + oy * w + ox] = inside ? p[k * n + iy * w + ix] : fill }
                    continue
                }
                let x0 = Int(sx.rounded(.down)), y0 = Int(sy.rounded(.down))
                let fx = sx - Float(x0), fy = sy - Float(y0)
                for k in 0..<c {
                    func at(_ yy: Int, _ xx: Int) -> Float {
                        yy >= 0 && yy < h && xx >= 0 && xx < w ? p[k * n + yy * w + xx] : fill
                    }
                    let top = at(y0, x0) * (1 - fx) + at(y0, x0 + 1) * fx
                    let bottom = at(y0 + 1, x0) * (1 - fx) + at(y0 + 1, x0 + 1) * fx
                    q[k * n + oy * w + ox] = top * (1 - fy) + bottom * fy
                }
            }
        }
        return out
    }
}

/// torchvision's ColorJitter on a (3, H, W) image in [−1, 1]: in [0, 1], each operation in
/// `d.jitterOrder` then a clamp to [0, 1]. Brightness scales; contrast blends with the mean of the
/// image's luma; saturation blends with each pixel's luma (ITU-R 601, 0.299/0.587/0.114); hue
/// rotates the HSV hue.
func jittered(_ x: Tensor, _ d: AugmentDraw) -> Tensor {
    shapeCheck(x.rank == 3 && x.dim(0) == 3, "jittered", x.shape, expected: "(3, H, W)")
    let n = x.dim(1) * x.dim(2)
    var r = [Float](repeating: 0, count: n), g = r, b = r
    for i in 0..<n { r[i] = (x[i] + 1) / 2; g[i] = (x[n + i] + 1) / 2; b[i] = (x[2 * n + i] + 1) / 2 }
    func clamp(_ v: Float) -> Float { min(max(v, 0), 1) }
    func luma(_ i: Int) -> Float { 0.299 * r[i] + 0.587 * g[i] + 0.114 * b[i] }
    func blend(_ f: Float, toward t: (Int) -> Float) {
        for i in 0..<n {
            let a = t(i)
            r[i] = clamp(f * r[i] + (1 - f) * a); g[i] = clamp(f * g[i] + (1 - f) * a);
            b[i] = clamp(f * b[i] + (1 - f) * a)
        }
    }
    for op in d.jitterOrder {
        switch op {
        case 0 where d.brightness != 1: blend(d.brightness) { _ in 0 }
        case 1 where d.contrast != 1:
            let mean = (0..<n).reduce(Float(0)) { $0 + luma($1) } / Float(n)
            blend(d.contrast) { _ in mean }
        case 2 where d.saturation != 1:
            let grey = (0..<n).map(luma)
            blend(d.saturation) { grey[$0] }
        case 3 where d.hue != 0:
            for i in 0..<n { (r[i], g[i], b[i]) = hueShifted(r[i], g[i], b[i], by: d.hue) }
        default: break
        }
    }
    let out = Tensor(zeros: x.shape)
    for i in 0..<n { out[i] = r[i] * 2 - 1; out[n + i] = g[i] * 2 - 1; out[2 * n + i] = b[i] * 2 - 1 }
    return out
}

/// RGB in [0, 1] with the HSV hue turned by `turns` (saturation and value kept).
func hueShifted(_ r: Float, _ g: Float, _ b: Float, by turns: Float) -> (Float, Float, Float) {
    let mx = max(r, g, b), mn = min(r, g, b), c = mx - mn
    guard c > 0 else { return (r, g, b) }
    var h: Float
    if mx == r { h = (g - b) / c } else if mx == g { h = (b - r) / c + 2 } else { h = (r - g) / c + 4 }
    h = h / 6 + turns
    h -= h.rounded(.down)
    let s = c / mx, v = mx
    let h6 = h * 6, i = Int(h6.rounded(.down)) % 6, f = h6 - h6.rounded(.down)
    let p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f))
    switch i {
    case 0: return (v, t, p)
    case 1: return (q, v, p)
    case 2: return (p, v, t)
    case 3: return (p, q, v)
    case 4: return (t, p, v)
    default: return (v, p, q)
    }
}
