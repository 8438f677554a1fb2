// Shape ops: reshape (a view), permute, concat, split and slice along one dimension.

extension Tensor {
    /// Same elements, new shape (shares storage). One dimension may be -1.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var s = newShape
        if let i = s.firstIndex(of: -1) {
            let known = s.enumerated().filter { $0.offset != i }.map(\.element).reduce(1, *)
            shapeCheck(known > 0 && count % known == 0, "reshape", shape, newShape)
            s[i] = count / known
        }
        shapeCheck(s.reduce(1, *) == count, "reshape", shape, newShape, expected: "the same element count")
        let old = shape
        return Tensor(shape: s, storage: storage).recording("reshape", [self]) { g in [g.reshaped(old)] }
    }

    /// Dimensions reordered: output dim i is input dim `order[i]`.
    public func permuted(_ order: [Int]) -> Tensor {
        shapeCheck(
            order.sorted() == Array(0..<rank), "permute(\(order))", shape, expected: "a permutation of 0..<\(rank)")
        let out = permuteCopy(self, order)
        var inverse = [Int](repeating: 0, count: rank)
        for (i, o) in order.enumerated() { inverse[o] = i }
        return out.recording("permute", [self]) { g in [permuteCopy(g, inverse)] }
    }
}

/// Copies `x` with dims reordered; the innermost output run is copied with the input's stride.
func permuteCopy(_ x: Tensor, _ order: [Int]) -> Tensor {
    let inShape = x.shape, r = x.rank
    let outShape = order.map { inShape[$0] }
    let out = Tensor(zeros: outShape)
    var inStrides = [Int](repeating: 1, count: r)
    for i in stride(from: r - 2, through: 0, by: -1) { inStrides[i] = inStrides[i + 1] * inShape[i + 1] }
    let st = order.map { inStrides[$0] }
    let inner = outShape.last ?? 1, sInner = st.last ?? 1
    let outer = out.count / max(inner, 1)
    let src = x.data, dst = out.data
    Parallel.for(outer, grain: max(1, 4096 / max(inner, 1))) { rows in
        for o in rows {
            var rem = o, off = 0
            var i = r - 2
            while i >= 0 { off += (rem % outShape[i]) * st[i]; rem /= outShape[i]; i -= 1 }
            let p = src + off, q = dst + o * inner
            if sInner == 1 { q.update(from: p, count: inner) } else { for j in 0..<inner { q[j] = p[j * sInner] } }
        }
    }
    return out
}

/// (outer, size of dim, inner) around dimension `d`.
@inline(__always)
func splitAround(_ shape: [Int], _ d: Int) -> (Int, Int, Int) {
    (shape[..<d].reduce(1, *), shape[d], shape[(d + 1)...].reduce(1, *))
}

/// Tensors joined along `dim`; all other dims must match.
public func concat(_ xs: [Tensor], dim: Int) -> Tensor {
    precondition(!xs.isEmpty, "concat: no tensors")
    let d = dim < 0 ? xs[0].rank + dim : dim
    for x in xs {
        shapeCheck(
            x.rank == xs[0].rank
                && x.shape.enumerated().allSatisfy { $0.offset == d || $0.element == xs[0].shape[$0.offset] },
            "concat(dim: \(dim))", xs[0].shape, x.shape, expected: "equal sizes outside dim \(d)")
    }
    var outShape = xs[0].shape
    outShape[d] = xs.map { $0.shape[d] }.reduce(0, +)
    let out = Tensor(zeros: outShape)
    let (outer, total, inner) = splitAround(outShape, d)
    var offset = 0
    for x in xs {
        let n = x.shape[d] * inner, src = x.data, dst = out.data, off = offset * inner
        Parallel.for(outer, grain: max(1, 4096 / max(n, 1))) { r in
            for o in r { (dst + o * total * inner + off).update(from: src + o * n, count: n) }
        }
        offset += x.shape[d]
    }
    let sizes = xs.map { $0.shape[d] }
    return out.recording("concat", xs) { g in split(g, sizes: sizes, dim: d) }
}

/// Consecutive pieces of `x` along `dim` with the given sizes (which must add up to that dim).
public func split(_ x: Tensor, sizes: [Int], dim: Int) -> [Tensor] {
    let d = dim < 0 ? x.rank + dim : dim
    shapeCheck(
        sizes.reduce(0, +) == x.shape[d], "split(sizes: \(sizes), dim: \(dim))", x.shape,
        expected: "sizes adding up to \(x.shape[d])")
    var start = 0
    return sizes.map { n in
        defer { start += n }; return slice(x, dim: d, start: start, length: n)
    }
}

/// `x[..., start ..< start+length, ...]` along `dim`.
public func slice(_ x: Tensor, dim: Int, start: Int, length: Int) -> Tensor {
    let d = dim < 0 ? x.rank + dim : dim
    shapeCheck(
        start >= 0 && length >= 0 && start + length <= x.shape[d], "slice(dim: \(dim), \(start)..<\(start + length))",
        x.shape, expected: "a range inside dim \(d)")
    var outShape = x.shape
    outShape[d] = length
    let (outer, total, inner) = splitAround(x.shape, d)
    let out = Tensor(zeros: outShape)
    let n = length * inner, src = x.data, dst = out.data
    Parallel.for(outer, grain: max(1, 4096 / max(n, 1))) { r in
        for o in r { (dst + o * n).update(from: src + (o * total + start) * inner, count: n) }
    }
    let inShape = x.shape
    return out.recording("slice", [x]) { g in
        let gx = Tensor(zeros: inShape), gp = g.data, gxp = gx.data
        Parallel.for(outer, grain: max(1, 4096 / max(n, 1))) { r in
            for o in r { (gxp + (o * total + start) * inner).update(from: gp + o * n, count: n) }
        }
        return [gx]
    }
}
