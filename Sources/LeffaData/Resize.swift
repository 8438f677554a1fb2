// Resizing to a stage resolution. Pictures: bilinear with half-pixel centres and no antialiasing,
// i.e. PyTorch `F.interpolate(mode="bilinear", align_corners=False, antialias=False)` — the same
// convention the Leffa loss uses to upsample flows, and for the 2× steps between the datasets'
// 1024×768 and the 512×384 stage it is exactly a 2×2 box average. (PIL's `Image.resize` and
// torchvision's default antialias on downscaling; we do not.) Masks, label maps and densepose:
// nearest, PyTorch's default `mode="nearest"` (source index = ⌊dst · in / out⌋, computed in exact
// integer arithmetic).
//
// Aspect: when source and target aspect ratios agree within a tolerance (1 % by default) the
// image is simply resized. Otherwise the policy decides: `.centerCrop` (default) scales to cover
// the target and cuts the overflow evenly (odd pixel at the bottom/right), `.pad` scales to fit
// and fills the border, `.stretch` ignores aspect. One `ResizePlan` is computed per sample and
// applied to every field, so image, mask and densepose stay registered.
// Not augmentation: no random crops or flips.

import LeffaTensor

public enum Interpolation: String, Sendable {
    case bilinear, nearest
}

public enum AspectPolicy: String, Sendable, CaseIterable {
    case centerCrop = "center-crop"
    case pad
    case stretch
}

/// Where every target pixel comes from: scale `source` to `scaled`, then take the `target`-sized
/// window whose top-left corner is at (offsetY, offsetX) in the scaled image (negative = padding).
public struct ResizePlan: Equatable, Sendable, CustomStringConvertible {
    public let source: Size
    public let target: Size
    public let scaled: Size
    public let offsetY: Int
    public let offsetX: Int

    public init(from source: Size, to target: Size, policy: AspectPolicy = .centerCrop, aspectTolerance: Double = 0.01)
    {
        precondition(
            source.height > 0 && source.width > 0 && target.height > 0 && target.width > 0,
            "ResizePlan: empty size \(source) → \(target)")
        self.source = source
        self.target = target
        let ratio = source.aspect / target.aspect
        if policy == .stretch || abs(ratio - 1) <= aspectTolerance {
            scaled = target; offsetY = 0; offsetX = 0
            return
        }
        let sy = Double(target.height) / Double(source.height), sx = Double(target.width) / Double(source.width)
        let s = policy == .centerCrop ? max(sy, sx) : min(sy, sx)
        var h = Int((Double(source.height) * s).rounded()), w = Int((Double(source.width) * s).rounded())
        if policy == .centerCrop {
            h = max(h, target.height); w = max(w, target.width)
        } else {
            h = max(1, min(h, target.height)); w = max(1, min(w, target.width))
        }
        scaled = Size(height: h, width: w)
        offsetY = (h - target.height) >= 0 ? (h - target.height) / 2 : -((target.height - h) / 2)
        offsetX = (w - target.width) >= 0 ? (w - target.width) / 2 : -((target.width - w) / 2)
    }

    /// A plain resize with no crop or pad.
    public var isPlainResize: Bool { scaled == target }
    /// Nothing to do at all.
    public var isIdentity: Bool { source == target && isPlainResize }

    public var description: String {
        isPlainResize
            ? "resize \(source) → \(target)"
            : "resize \(source) → \(scaled), window \(target) at (\(offsetY), \(offsetX))"
    }

    /// A point in normalised coordinates of the source image (align_corners=True: −1 and +1 are
    /// the centres of the first and last pixels) to the same point in the target image's
    /// normalised coordinates. How ground-truth flows follow their cloth image through a resize.
    public func mapNormalized(x: Float, y: Float) -> (x: Float, y: Float) {
        func map(_ v: Float, _ n: Int, _ scaled: Int, _ off: Int, _ out: Int) -> Float {
            let edge = (v + 1) / 2 * Float(n - 1) + 0.5 // source, pixel-edge units
            let t = edge * Float(scaled) / Float(n) - Float(off) - 0.5 // target, pixel-centre units
            return out > 1 ? 2 * t / Float(out - 1) - 1 : 0
        }
        return (
            map(x, source.width, scaled.width, offsetX, target.width),
            map(y, source.height, scaled.height, offsetY, target.height)
        )
    }

    // MARK: Sampling tables

    /// Per output index along one axis: the two source indices and the weight of the second
    /// (bilinear), or the single source index (nearest); -1 marks padding.
    struct Taps { var i0: [Int32]; var i1: [Int32]; var w1: [Float] }

    static func taps(_ n: Int, scaled: Int, offset: Int, out: Int, _ mode: Interpolation) -> Taps {
        var t = Taps(
            i0: .init(repeating: -1, count: out), i1: .init(repeating: -1, count: out),
            w1: .init(repeating: 0, count: out))
        for o in 0..<out {
            let d = o + offset // index in the scaled image
            if d < 0 || d >= scaled { continue }
            switch mode {
            case .nearest:
                let s = min(d * n / scaled, n - 1)
                t.i0[o] = Int32(s); t.i1[o] = Int32(s)
            case .bilinear:
                let src = max(Float(Double(n) / Double(scaled) * (Double(d) + 0.5) - 0.5), 0)
                let s0 = min(Int(src), n - 1)
                t.i0[o] = Int32(s0); t.i1[o] = Int32(min(s0 + 1, n - 1)); t.w1[o] = src - Float(s0)
            }
        }
        return t
    }
}

/// Resamples the last two dimensions of `x` (…, h, w) — h×w must be `plan.source` — to
/// `plan.target`. Pixels outside the scaled image (padding) get `fill`. No autograd.
public func resize(_ x: Tensor, plan: ResizePlan, mode: Interpolation, fill: Float = 0) -> Tensor {
    shapeCheck(
        x.rank >= 2 && x.dim(-2) == plan.source.height && x.dim(-1) == plan.source.width,
        "resize", x.shape, expected: "(…, \(plan.source.height), \(plan.source.width)) for \(plan)")
    if plan.isIdentity { return x.detached().copy() }
    let h = plan.source.height, w = plan.source.width, H = plan.target.height, W = plan.target.width
    let planes = x.count / (h * w)
    let ty = ResizePlan.taps(h, scaled: plan.scaled.height, offset: plan.offsetY, out: H, mode)
    let tx = ResizePlan.taps(w, scaled: plan.scaled.width, offset: plan.offsetX, out: W, mode)
    let out = Tensor(zeros: Array(x.shape.dropLast(2)) + [H, W])
    let src = x.data, dst = out.data
    ty.i0.withUnsafeBufferPointer { y0 in
        ty.i1.withUnsafeBufferPointer { y1 in
            ty.w1.withUnsafeBufferPointer { wy in
                tx.i0.withUnsafeBufferPointer { x0 in
                    tx.i1.withUnsafeBufferPointer { x1 in
                        tx.w1.withUnsafeBufferPointer { wx in
                            Parallel.for(planes * H, grain: max(1, 16384 / max(W, 1))) { rows in
                                for r in rows {
                                    let p = r / H, o = r % H
                                    let q = dst + r * W
                                    guard y0[o] >= 0 else { q.update(repeating: fill, count: W); continue }
                                    let a = src + p * h * w + Int(y0[o]) * w, b = src + p * h * w + Int(y1[o]) * w
                                    let v = wy[o], u = 1 - v
                                    for j in 0..<W {
                                        let c0 = Int(x0[j])
                                        if c0 < 0 { q[j] = fill; continue }
                                        if mode == .nearest { q[j] = a[c0]; continue }
                                        let c1 = Int(x1[j]), s = wx[j], t = 1 - s
                                        q[j] = u * (t * a[c0] + s * a[c1]) + v * (t * b[c0] + s * b[c1])
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    return out
}

/// Plain resize (no crop or pad) of the last two dimensions to `size`.
public func resize(_ x: Tensor, to size: Size, mode: Interpolation) -> Tensor {
    resize(x, plan: ResizePlan(from: Size(height: x.dim(-2), width: x.dim(-1)), to: size, policy: .stretch), mode: mode)
}

extension Image {
    /// The image resampled by `plan` (8-bit, rounded to nearest); padding gets `fill`.
    /// For caches of resized images; the training path resizes float tensors instead.
    public func resized(plan: ResizePlan, mode: Interpolation, fill: UInt8 = 255) -> Image {
        let t = resize(tensor(.unit), plan: plan, mode: mode, fill: Float(fill) / 255)
        return Image(tensor: t, range: .unit)
    }
}
