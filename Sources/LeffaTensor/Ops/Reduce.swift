// Reductions: sum and mean over everything or over chosen axes, and the mean-squared error.
// Whole-tensor sums use fixed 4096-element chunks combined in order, in double precision, so the
// result is the same for any thread count.

/// The chunk of `chunkedSum`: its sums are the same bits wherever a range is cut at multiples of it.
public let sumChunk = 4096

/// The sums of `0..<n`'s fixed `sumChunk`-element chunks, in order (one zero when n is 0):
/// `chunkSum` sums one chunk. The same for any thread count.
public func chunkedPartials(_ n: Int, _ chunkSum: (Range<Int>) -> Double) -> [Double] {
    let chunk = sumChunk, chunks = (n + chunk - 1) / chunk
    var partial = [Double](repeating: 0, count: max(chunks, 1))
    partial.withUnsafeMutableBufferPointer { part in
        let pp = part.baseAddress!
        Parallel.for(chunks, grain: 16) { r in
            for c in r { pp[c] = chunkSum((c * chunk)..<min(n, (c + 1) * chunk)) }
        }
    }
    return partial
}

/// Σ over `0..<n`: the chunk sums (`chunkedPartials`) combined in order in double precision, so
/// the result is the same for any thread count.
public func chunkedSum(_ n: Int, _ chunkSum: (Range<Int>) -> Double) -> Double {
    chunkedPartials(n, chunkSum).reduce(0, +)
}

/// Σ x over all elements, deterministic.
func sumAll(_ p: UnsafePointer<Float>, _ n: Int) -> Double {
    chunkedSum(n) { r in
        var acc: Float = 0
        for i in r { acc += p[i] }
        return Double(acc)
    }
}

/// The sum of all elements, shape [1].
public func sum(_ x: Tensor) -> Tensor {
    let out = Tensor([Float(sumAll(x.data, x.count))], shape: [1])
    let shape = x.shape
    return out.recording("sum", [x]) { g in [Tensor(repeating: g.item, shape: shape)] }
}

/// The mean of all elements, shape [1].
public func mean(_ x: Tensor) -> Tensor {
    let n = Float(max(x.count, 1))
    let out = Tensor([Float(sumAll(x.data, x.count) / Double(max(x.count, 1)))], shape: [1])
    let shape = x.shape
    return out.recording("mean", [x]) { g in [Tensor(repeating: g.item / n, shape: shape)] }
}

/// Sum over `axes` (negative counts from the end); the reduced dims stay as size 1 if `keepDims`.
public func sum(_ x: Tensor, axes: [Int], keepDims: Bool = false) -> Tensor {
    let ax = Set(axes.map { $0 < 0 ? x.rank + $0 : $0 })
    shapeCheck(
        ax.allSatisfy { $0 >= 0 && $0 < x.rank }, "sum(axes: \(axes))", x.shape, expected: "axes within the rank")
    let kept = x.shape.enumerated().map { ax.contains($0.offset) ? 1 : $0.element }
    let reduced = sumTo(x, kept)
    let outShape = keepDims ? kept : x.shape.enumerated().filter { !ax.contains($0.offset) }.map(\.element)
    let inShape = x.shape
    let out = Tensor(shape: outShape, storage: reduced.storage)
    return out.recording("sum(axes)", [x]) { g in
        [binaryForward(Tensor(zeros: inShape), g.reshaped(kept), .add, name: "sum backward")]
    }
}

/// Mean over `axes`.
public func mean(_ x: Tensor, axes: [Int], keepDims: Bool = false) -> Tensor {
    let n = axes.map { x.dim($0) }.reduce(1, *)
    return scale(sum(x, axes: axes, keepDims: keepDims), 1 / Float(max(n, 1)))
}

/// Mean squared error between two tensors of the same shape, shape [1].
public func mse(_ a: Tensor, _ b: Tensor) -> Tensor {
    shapeCheck(a.shape == b.shape, "mse", a.shape, b.shape, expected: "identical shapes")
    let n = a.count
    let diff = Tensor(zeros: a.shape)
    let pa = a.data, pb = b.data, pd = diff.data
    Parallel.for(n, grain: 1 << 14) { r in for i in r { pd[i] = pa[i] - pb[i] } }
    let chunk = 4096, chunks = (n + chunk - 1) / chunk
    var total = 0.0
    for c in 0..<chunks {
        var acc: Float = 0
        for i in (c * chunk)..<min(n, (c + 1) * chunk) { acc += pd[i] * pd[i] }
        total += Double(acc)
    }
    let out = Tensor([Float(total / Double(max(n, 1)))], shape: [1])
    let aNeeds = a.requiresGrad, bNeeds = b.requiresGrad
    return out.recording("mse", [a, b]) { g in
        let k = 2 * g.item / Float(max(n, 1))
        let ga = Tensor(zeros: diff.shape), p = ga.data
        Parallel.for(n, grain: 1 << 14) { r in for i in r { p[i] = k * pd[i] } }
        return [aNeeds ? ga : nil, bNeeds ? scale(ga, -1) : nil]
    }
}
