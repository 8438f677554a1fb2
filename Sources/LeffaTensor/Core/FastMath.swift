// Vectorised exponentials over buffers: the cost that dominates softmax and attention after the
// matrix products. A Cody–Waite range reduction and a degree-6 polynomial on SIMD vectors, accurate
// to about 2 ulp wherever the result is a normal float. Not a libm replacement: results that would
// be subnormal (x < ln FLT_MIN ≈ −87.34) are flushed to 0 — they carry no weight in a softmax and
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
    /// ln(FLT_MIN): below it the true result is subnormal and is flushed to 0.
    @usableFromInline static let expLow: Float = -87.33654475
    /// ln(FLT_MAX): above it the result is +∞.
    @usableFromInline static let expHigh: Float = 88.72283905

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

    /// eˣ lane by lane; 0 below ln FLT_MIN, +∞ above ln FLT_MAX.
    @inlinable @inline(__always)
    public static func exp(_ x: Vector) -> Vector {
        let xc = x.clamped(lowerBound: Vector(repeating: expLow), upperBound: Vector(repeating: expHigh))
        let t = xc * log2e + roundMagic
        let n = t - roundMagic
        // r = x − n·ln2 in two steps, so it keeps full relative precision for |x| up to 88.
        let r = (xc - n * ln2Hi) - n * ln2Lo
        var y = scaleByPowerOfTwo(expReduced(r), t)
        y.replace(with: 0, where: x .< expLow)
        y.replace(with: .infinity, where: x .> expHigh)
        return y
    }

    /// 2ˣ lane by lane; 0 below −126 (subnormal results), +∞ from 128 on.
    @inlinable @inline(__always)
    public static func exp2(_ x: Vector) -> Vector {
        let xc = x.clamped(lowerBound: Vector(repeating: -126), upperBound: Vector(repeating: 127.99999))
        let t = xc + roundMagic
        let f = xc - (t - roundMagic)                    // exact: both are floats near each other
        var y = scaleByPowerOfTwo(expReduced(f * ln2), t)
        y.replace(with: 0, where: x .< -126)
        y.replace(with: .infinity, where: x .>= 128)
        return y
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
    /// softmax row (the row's maximum as `shift`). The sum is lane-wise then in a fixed lane order.
    @discardableResult
    public static func exp2Shifted(_ x: UnsafeMutablePointer<Float>, count: Int, shift: Float) -> Float {
        let s = Vector(repeating: shift)
        var acc0 = Vector(), acc1 = Vector()
        var i = 0
        while i + 2 * width <= count {
            let a = exp2(load(x + i) - s), b = exp2(load(x + i + width) - s)
            store(a, x + i); store(b, x + i + width)
            acc0 += a; acc1 += b
            i += 2 * width
        }
        while i + width <= count {
            let a = exp2(load(x + i) - s)
            store(a, x + i); acc0 += a
            i += width
        }
        if i < count {
            let a = exp2(loadPartial(x + i, count - i, fill: -.infinity) - s)
            storePartial(a, x + i, count - i); acc1 += a
        }
        return (acc0 + acc1).sum()
    }

    /// The largest of x[0..<count] (−∞ for an empty run).
    public static func maximum(_ x: UnsafePointer<Float>, count: Int) -> Float {
        var m0 = Vector(repeating: -.infinity), m1 = m0
        var i = 0
        while i + 2 * width <= count {
            m0 = pointwiseMax(m0, load(x + i)); m1 = pointwiseMax(m1, load(x + i + width))
            i += 2 * width
        }
        if i + width <= count { m0 = pointwiseMax(m0, load(x + i)); i += width }
        var m = pointwiseMax(m0, m1).max()
        while i < count { m = Swift.max(m, x[i]); i += 1 }
        return m
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
