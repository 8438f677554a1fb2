// Vectorised exponentials over buffers: the cost that dominates softmax and attention after the
// matrix products. Range reduction to [−½, ½] in base 2 (Cody–Waite for eˣ) and a degree-6
// polynomial on SIMD vectors, within 2 ulp (measured: eˣ 1.0, 2ˣ 1.4) wherever the result is a
// normal float. Not a libm replacement: results that would be subnormal (x < ln FLT_MIN ≈ −87.34)
// are flushed to 0 — they carry no weight in a softmax and
// subnormal operands slow down the matrix products that consume them — and NaN inputs are not
// propagated faithfully. Everything is lane-wise in a fixed order, so a buffer gives the same bits
// whatever the thread that processes it.

public enum FastMath {
    /// Lanes processed at once. Eight floats: two SSE registers on baseline x86-64, one AVX one.
    public typealias Vector = SIMD8<Float>
    public static let width = Vector.scalarCount

    // Cody–Waite split of ln 2: `ln2Hi` has trailing zero bits, so n·ln2Hi is exact for |n| < 2^9.
    @usableFromInline static let ln2Hi: Float = 0.693359375
    @usableFromInline static let ln2Lo: Float = -2.12194440e-4
    @usableFromInline static let log2e: Float = 1.44269504088896341
    @usableFromInline static let ln2: Float = 0.693147180559945309
    /// 1.5·2²³: adding it rounds a float in (−2²², 2²²) to an integer held in the low mantissa bits.
    @usableFromInline static let roundMagic: Float = 12582912
    /// The float just above ln(FLT_MIN) ≈ −87.3365448: below it the true result is subnormal and
    /// is flushed to 0. (The float nearest ln(FLT_MIN) lies below it and would give a subnormal.)
    @usableFromInline static let expLow: Float = -87.33654
    /// The float just below ln(FLT_MAX) ≈ 88.7228391: above it the result is +∞ (the last 8e-6
    /// before the true overflow included; the float above ln(FLT_MAX) would overflow the exponent).
    @usableFromInline static let expHigh: Float = 88.72283

    /// e^r for r in [−ln2/2, ln2/2] (Cephes' minimax coefficients, relative error ≈ 1e-7).
    @inlinable @inline(__always)
    static func expReduced(_ r: Vector) -> Vector {
        var p = Vector(repeating: 1.9875691500e-4)
        p = p * r + 1.3981999507e-3
        p = p * r + 8.3334519073e-3
        p = p * r + 4.1665795894e-2
        p = p * r + 1.6666665459e-1
        p = p * r + 5.0000001201e-1
        return p * (r * r) + r + 1
    }

    /// p · 2ⁿ for n given as the rounding sum `t = x + roundMagic` (n sits in t's low mantissa
    /// bits; shifting by 23 drops the magic's own bits). Valid when the result is a normal float.
    @inlinable @inline(__always)
    static func scaleByPowerOfTwo(_ p: Vector, _ t: Vector) -> Vector {
        let n = unsafeBitCast(t, to: SIMD8<UInt32>.self) &<< 23
        return unsafeBitCast(unsafeBitCast(p, to: SIMD8<UInt32>.self) &+ n, to: Vector.self)
    }

    /// eˣ lane by lane; 0 below `expLow` (ln FLT_MIN), +∞ above `expHigh` (ln FLT_MAX).
    @inlinable @inline(__always)
    public static func exp(_ x: Vector) -> Vector {
        let xc = clamp(x, expLow, expHigh)
        let t = xc * log2e + roundMagic
        let n = t - roundMagic
        // r = x − n·ln2 in two steps, so it keeps full relative precision for |x| up to 88.
        let r = (xc - n * ln2Hi) - n * ln2Lo
        var y = scaleByPowerOfTwo(expReduced(r), t)
        y.replace(with: 0, where: x .< expLow)
        y.replace(with: .infinity, where: x .> expHigh)
        return y
    }

    /// 2ᶠ for f in [−½, ½]: a degree-6 polynomial fitted for relative error (2e-9 in exact
    /// arithmetic, 1.4 ulp in float32 without FMA). Evaluated in Estrin's scheme: two more
    /// operations than Horner's but half the dependency chain, measured 12 % faster per element.
    @inlinable @inline(__always)
    static func exp2Reduced(_ f: Vector) -> Vector {
        let f2 = f * f, f4 = f2 * f2
        let c23 = f * 5.5503323674e-2 + 2.4022647738e-1
        let c45 = f * 1.3398872689e-3 + 9.6184378490e-3
        let c456 = c45 + f2 * 1.5353341587e-4
        return 1 + ((f * 6.9314718246e-1 + f2 * c23) + f4 * c456)
    }

    /// 2ˣ lane by lane; 0 below −126 (subnormal results), +∞ from 128 on.
    @inlinable @inline(__always)
    public static func exp2(_ x: Vector) -> Vector {
        let xc = clamp(x, -126, 127.99999)
        let t = xc + roundMagic
        let f = xc - (t - roundMagic) // exact: both are floats near each other
        var y = scaleByPowerOfTwo(exp2Reduced(f), t)
        y.replace(with: 0, where: x .< -126)
        y.replace(with: .infinity, where: x .>= 128)
        return y
    }

    /// 2ˣ for finite x ≤ 127 or x = −∞, with no overflow handling: the softmax case, where
    /// x = score − max ≤ 0. No clamp: a lane below −126 computes garbage that the final select
    /// replaces by 0 (the rounding trick stays finite for any finite x).
    @inlinable @inline(__always)
    static func exp2Softmax(_ x: Vector) -> Vector {
        let t = x + roundMagic
        let f = x - (t - roundMagic)
        return scaleByPowerOfTwo(exp2Reduced(f), t).replacing(with: 0, where: x .< -126)
    }

    /// eˣ of one float through the vector path (same bits as the buffer functions).
    @inlinable
    public static func exp(_ x: Float) -> Float { exp(Vector(repeating: x))[0] }

    /// 2ˣ of one float through the vector path.
    @inlinable
    public static func exp2(_ x: Float) -> Float { exp2(Vector(repeating: x))[0] }

    /// y[i] = e^x[i]. `y` may be `x` (in place).
    public static func exp(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        var i = 0
        while i + width <= count {
            store(exp(load(x + i)), y + i)
            i += width
        }
        if i < count { storePartial(exp(loadPartial(x + i, count - i, fill: 0)), y + i, count - i) }
    }

    /// x[i] ← 2^(x[i] − shift) in place and returns Σ of the new values: one pass of a base-2
    /// softmax row (the row's maximum, or its log-sum-exp, as `shift`). Requires
    /// x[i] − shift ≤ 127 (no overflow check). The sum is lane-wise, then in a fixed lane order.
    @discardableResult
    public static func exp2Shifted(_ x: UnsafeMutablePointer<Float>, count: Int, shift: Float) -> Float {
        let s = Vector(repeating: shift)
        var acc0 = Vector(), acc1 = Vector()
        var i = 0
        while i + 2 * width <= count {
            let a = exp2Softmax(load(x + i) - s), b = exp2Softmax(load(x + i + width) - s)
            store(a, x + i); store(b, x + i + width)
            acc0 += a; acc1 += b
            i += 2 * width
        }
        while i + width <= count {
            let a = exp2Softmax(load(x + i) - s)
            store(a, x + i); acc0 += a
            i += width
        }
        if i < count {
            let a = exp2Softmax(loadPartial(x + i, count - i, fill: -.infinity) - s)
            storePartial(a, x + i, count - i); acc1 += a
        }
        return (acc0 + acc1).sum()
    }

    /// The largest of x[0..<count] (−∞ for an empty run).
    public static func maximum(_ x: UnsafePointer<Float>, count: Int) -> Float {
        var m0 = Vector(repeating: -.infinity), m1 = m0
        var i = 0
        while i + 2 * width <= count {
            m0 = vmax(m0, load(x + i)); m1 = vmax(m1, load(x + i + width))
            i += 2 * width
        }
        if i + width <= count { m0 = vmax(m0, load(x + i)); i += width }
        m0 = vmax(m0, m1)
        var m = m0[0]
        for j in 1..<width { m = Swift.max(m, m0[j]) }
        while i < count { m = Swift.max(m, x[i]); i += 1 }
        return m
    }

    // MARK: - Lane-wise helpers
    // The standard library's `pointwiseMax`, `clamped` and `max()` on SIMD types are generic calls
    // that handle NaN lane by lane (measured 25× slower here); a compare and a select is two
    // instructions. NaN lanes are not propagated.

    @inlinable @inline(__always)
    static func vmax(_ a: Vector, _ b: Vector) -> Vector { a.replacing(with: b, where: a .< b) }
    @inlinable @inline(__always)
    static func clamp(_ x: Vector, _ lo: Float, _ hi: Float) -> Vector {
        let l = Vector(repeating: lo), h = Vector(repeating: hi)
        return x.replacing(with: l, where: x .< l).replacing(with: h, where: h .< x)
    }

    // MARK: - Unaligned vector loads and stores

    @inlinable @inline(__always)
    static func load(_ p: UnsafePointer<Float>) -> Vector {
        UnsafeRawPointer(p).loadUnaligned(as: Vector.self)
    }
    @inlinable @inline(__always)
    static func store(_ v: Vector, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: Vector.self)
    }
    @inlinable @inline(__always)
    static func loadPartial(_ p: UnsafePointer<Float>, _ n: Int, fill: Float) -> Vector {
        var v = Vector(repeating: fill)
        for j in 0..<n { v[j] = p[j] }
        return v
    }
    @inlinable @inline(__always)
    static func storePartial(_ v: Vector, _ p: UnsafeMutablePointer<Float>, _ n: Int) {
        for j in 0..<n { p[j] = v[j] }
    }
}
