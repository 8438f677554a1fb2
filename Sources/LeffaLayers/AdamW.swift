// AdamW (decoupled weight decay, bias correction) over the flat parameter and gradient blocks,
// restricted to the ranges that train (e.g. both UNets, not the VAE). Its moments are flat
// blocks too, so checkpoints store them as they are.
import Foundation
import LeffaTensor

public struct AdamWConfig: Codable, Equatable, Sendable {
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var eps: Float = 1e-8
    public var weightDecay: Float = 1e-2
    public init() {}
}

public final class AdamW {
    public let config: AdamWConfig
    /// Contiguous ranges of the flat block that this optimizer updates.
    public let ranges: [Range<Int>]
    public let m: Tensor, v: Tensor
    /// Updates taken so far (for bias correction).
    public var step: Int = 0

    /// With `moments`, the moments live in memory the caller provides, zeroed (an MPI shared-memory
    /// window holding the node's one copy of them); else in two new zeroed blocks.
    public init(
        parameters: ParameterSet, training parts: [Parameter], config: AdamWConfig = AdamWConfig(),
        moments: (m: Storage, v: Storage)? = nil
    ) {
        parameters.enableGradients()
        self.config = config
        var rs: [Range<Int>] = []
        for p in parts.sorted(by: { $0.offset < $1.offset }) {
            let r = p.offset..<(p.offset + p.count)
            if let last = rs.last, last.upperBound == r.lowerBound {
                rs[rs.count - 1] = last.lowerBound..<r.upperBound
            } else {
                rs.append(r)
            }
        }
        ranges = rs
        let n = parameters.count
        if let moments {
            precondition(
                moments.m.count == n && moments.v.count == n,
                "AdamW: moments of \(moments.m.count) floats given, the parameters have \(n)")
            m = Tensor(shape: [n], storage: moments.m); v = Tensor(shape: [n], storage: moments.v)
        } else {
            // On demand: the moments of parameters this optimizer does not train are never touched.
            m = Tensor(shape: [n], storage: Storage(onDemand: n)); v = Tensor(shape: [n], storage: Storage(onDemand: n))
        }
    }

    /// The trained ranges, cut to `shard` (all of them when nil).
    func ranges(in shard: Range<Int>?) -> [Range<Int>] {
        guard let shard else { return ranges }
        return ranges.compactMap { r in
            let lo = max(r.lowerBound, shard.lowerBound), hi = min(r.upperBound, shard.upperBound)
            return lo < hi ? lo..<hi : nil
        }
    }

    /// One update with learning rate `lr`: p ← p − lr·(m̂/(√v̂+ε) + wd·p). With `shard`, only the
    /// elements in it (a sharded step: the other ranks update the rest). In the same pass over the
    /// block (it is memory-bound: one pass instead of three), the gradients are read times
    /// `gradientScale` (clipping, see `clipScale`) and `ema` ← emaDecay·ema + (1 − emaDecay)·p.
    public func update(
        parameters: ParameterSet, lr: Float, only shard: Range<Int>? = nil, gradientScale: Float = 1,
        ema: Tensor? = nil, emaDecay: Float = 0
    ) {
        guard let values = parameters.values, let grads = parameters.grads else { return }
        step += 1
        let c = config, t = Float(step)
        let bc1 = 1 - powf(c.beta1, t), bc2 = 1 - powf(c.beta2, t)
        let p = values.data, g = grads.data, mm = m.data, vv = v.data, e = ema?.data
        let decay = 1 - lr * c.weightDecay, stepSize = lr / bc1, rbc2 = 1 / bc2.squareRoot()
        let k = AdamWKernel(
            b1: c.beta1, b2: c.beta2, eps: c.eps, decay: decay, stepSize: stepSize, rbc2: rbc2,
            gradientScale: gradientScale, emaDecay: emaDecay)
        let trained = ranges(in: shard)
        for r in trained {
            Parallel.for(r.count, grain: 1 << 14) { sub in
                let lo = r.lowerBound + sub.lowerBound
                k.run(p + lo, g + lo, mm + lo, vv + lo, sub.count, ema: e.map { $0 + lo })
            }
        }
        // Parameters that do not train still move the average towards their (fixed) values.
        if let ema {
            var at = shard?.lowerBound ?? 0
            let end = shard?.upperBound ?? values.count
            for r in trained + [end..<end] {
                if at < r.lowerBound { Self.average(ema, toward: values, decay: emaDecay, in: at..<r.lowerBound) }
                at = r.upperBound
            }
        }
    }

    /// ema ← decay·ema + (1 − decay)·values over `range` (all when nil): the exponential moving
    /// average of the weights, for the elements `update` does not take it for.
    public static func average(_ ema: Tensor, toward values: Tensor, decay d: Float, in range: Range<Int>? = nil) {
        let r = range ?? 0..<ema.count, e = ema.data, p = values.data
        Parallel.for(r.count, grain: 1 << 15) { sub in
            for i in sub { let j = r.lowerBound + i; e[j] = d * e[j] + (1 - d) * p[j] }
        }
    }

    /// The global gradient norm (as `gradNorm`) and the factor that clips it to `maxNorm` (1 when
    /// it is within, or not finite): `clipGradNorm` without writing the gradients, for `update`'s
    /// `gradientScale`.
    public func clipScale(
        parameters: ParameterSet, maxNorm: Float, only shard: Range<Int>? = nil,
        combine: ([Double]) -> [Double] = { $0 }
    ) -> (norm: Float, scale: Float) {
        let norm = gradNorm(parameters: parameters, only: shard, combine: combine)
        return (norm, norm > maxNorm && norm.isFinite ? maxNorm / (norm + 1e-6) : 1)
    }

    /// Where a shard of the flat block may start or end inside a trained range: at multiples of
    /// this many elements from the range's start, so every chunk of the norm's sum lies in one shard.
    public static let shardGrain = sumChunk

    /// The global L2 norm of the gradients in the trained ranges: per range the sum of squares of
    /// its fixed chunks (`chunkedPartials`) added in order, and the ranges' sums added in order.
    /// With `shard` (its ends inside a trained range at multiples of `shardGrain` from the range's
    /// start), this rank computes only the chunks in it, and `combine` sums every rank's list of
    /// chunk sums (zero outside its shard): one rank holds each chunk, so that sum is exact and
    /// the norm is the same bits for any number of shards as for none.
    public func gradNorm(
        parameters: ParameterSet, only shard: Range<Int>? = nil, combine: ([Double]) -> [Double] = { $0 }
    ) -> Float {
        guard let grads = parameters.grads else { return 0 }
        let chunks = ranges.map { max(1, ($0.count + sumChunk - 1) / sumChunk) }
        var partials: [Double] = []
        partials.reserveCapacity(chunks.reduce(0, +))
        for (r, n) in zip(ranges, chunks) {
            let lo = max(r.lowerBound, shard?.lowerBound ?? r.lowerBound),
                hi = min(r.upperBound, shard?.upperBound ?? r.upperBound)
            guard lo < hi else { partials += [Double](repeating: 0, count: n); continue }
            precondition(
                (lo - r.lowerBound) % sumChunk == 0 && (hi == r.upperBound || (hi - r.lowerBound) % sumChunk == 0),
                "AdamW.gradNorm: shard \(shard!) cuts trained range \(r) between multiples of \(sumChunk)")
            let first = (lo - r.lowerBound) / sumChunk, mine = squareSums(grads.data + lo, hi - lo)
            partials +=
                [Double](repeating: 0, count: first) + mine + [Double](repeating: 0, count: n - first - mine.count)
        }
        if shard != nil { partials = combine(partials) }
        var total = 0.0, at = 0
        for n in chunks { total += partials[at..<(at + n)].reduce(0, +); at += n }
        return Float(total.squareRoot())
    }

    /// Scales the trained gradients so their global norm is at most `maxNorm`; returns the norm before.
    @discardableResult
    public func clipGradNorm(parameters: ParameterSet, maxNorm: Float) -> Float {
        let (norm, s) = clipScale(parameters: parameters, maxNorm: maxNorm)
        guard let grads = parameters.grads, s != 1 else { return norm }
        let g = grads.data
        for r in ranges { Parallel.for(r.count, grain: 1 << 14) { sub in for i in sub { g[r.lowerBound + i] *= s } } }
        return norm
    }
}

/// The AdamW element update, eight lanes at a time (the scalar loop does not vectorise: it divides
/// and takes square roots, which the compiler will not reorder). The gradient is read times
/// `gradientScale` (the same float as scaling it in memory first), and the EMA of the new value is
/// taken in the same pass when asked.
struct AdamWKernel {
    let b1: Float, b2: Float, eps: Float, decay: Float, stepSize: Float, rbc2: Float, gradientScale: Float,
        emaDecay: Float

    @inline(__always)
    func run(
        _ p: UnsafeMutablePointer<Float>, _ g: UnsafePointer<Float>, _ m: UnsafeMutablePointer<Float>,
        _ v: UnsafeMutablePointer<Float>, _ n: Int, ema e: UnsafeMutablePointer<Float>?
    ) {
        typealias V = SIMD8<Float>
        let gs = gradientScale, d = emaDecay
        var i = 0
        while i + 8 <= n {
            let gi = UnsafeRawPointer(g + i).loadUnaligned(as: V.self) * gs
            let mi = b1 * UnsafeRawPointer(m + i).loadUnaligned(as: V.self) + (1 - b1) * gi
            let vi = b2 * UnsafeRawPointer(v + i).loadUnaligned(as: V.self) + (1 - b2) * gi * gi
            let pi = UnsafeRawPointer(p + i).loadUnaligned(as: V.self)
            UnsafeMutableRawPointer(m + i).storeBytes(of: mi, as: V.self)
            UnsafeMutableRawPointer(v + i).storeBytes(of: vi, as: V.self)
            let pn = pi * decay - stepSize * mi / (vi.squareRoot() * rbc2 + eps)
            UnsafeMutableRawPointer(p + i).storeBytes(of: pn, as: V.self)
            if let e {
                let ei = UnsafeRawPointer(e + i).loadUnaligned(as: V.self)
                UnsafeMutableRawPointer(e + i).storeBytes(of: d * ei + (1 - d) * pn, as: V.self)
            }
            i += 8
        }
        while i < n {
            let gi = g[i] * gs
            let mi = b1 * m[i] + (1 - b1) * gi, vi = b2 * v[i] + (1 - b2) * gi * gi
            m[i] = mi; v[i] = vi
            p[i] = p[i] * decay - stepSize * mi / (vi.squareRoot() * rbc2 + eps)
            if let e { e[i] = d * e[i] + (1 - d) * p[i] }
            i += 1
        }
    }
}

/// Σ x² in double of each fixed chunk (`chunkedPartials`), in order.
public func squareSums(_ p: UnsafePointer<Float>, _ n: Int) -> [Double] {
    chunkedPartials(n) { r in
        // Sixteen lanes, summed in a fixed order: vectorised and thread-count independent.
        var acc = SIMD16<Float>(repeating: 0)
        var i = r.lowerBound
        while i + 16 <= r.upperBound {
            let x = UnsafeRawPointer(p + i).loadUnaligned(as: SIMD16<Float>.self); acc += x * x; i += 16
        }
        var tail: Float = 0
        while i < r.upperBound { tail += p[i] * p[i]; i += 1 }
        return Double(acc.sum()) + Double(tail)
    }
}
