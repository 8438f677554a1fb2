// Broadcasting (NumPy rules: shapes align at the trailing dimension, size-1 dims stretch) and its
// adjoint, summing a gradient back down to an input's shape.

/// Output shape of broadcasting `a` with `b`, or a shape error naming `op`.
public func broadcastShape(_ a: [Int], _ b: [Int], op: String) -> [Int] {
    let r = max(a.count, b.count)
    var out = [Int](repeating: 1, count: r)
    for i in 0..<r {
        let da = i < r - a.count ? 1 : a[i - (r - a.count)]
        let db = i < r - b.count ? 1 : b[i - (r - b.count)]
        shapeCheck(da == db || da == 1 || db == 1, op, a, b, expected: "equal sizes or 1 in every trailing dimension")
        out[i] = da == 1 ? db : da
    }
    return out
}

/// Element strides of `shape` read as the broadcast `outShape` (0 where a dim is stretched).
func broadcastStrides(_ shape: [Int], to outShape: [Int]) -> [Int] {
    let r = outShape.count, off = r - shape.count
    var strides = [Int](repeating: 0, count: r)
    var s = 1
    for i in stride(from: shape.count - 1, through: 0, by: -1) {
        strides[i + off] = shape[i] == 1 ? 0 : s
        s *= shape[i]
    }
    return strides
}

/// An iteration plan over an output shape for up to two broadcast operands: dims merged where
/// possible, the last (inner) dim walked with a constant stride per operand.
struct BroadcastPlan {
    var dims: [Int] // merged output dims, inner last
    var sa: [Int], sb: [Int] // merged strides of a and b

    init(out: [Int], a: [Int], b: [Int]) {
        let stA = broadcastStrides(a, to: out), stB = broadcastStrides(b, to: out)
        var d: [Int] = [], x: [Int] = [], y: [Int] = []
        for i in 0..<out.count where out[i] != 1 {
            if let last = d.last, x.last! == stA[i] * out[i], y.last! == stB[i] * out[i] {
                d[d.count - 1] = last * out[i]; x[x.count - 1] = stA[i]; y[y.count - 1] = stB[i]
            } else {
                d.append(out[i]); x.append(stA[i]); y.append(stB[i])
            }
        }
        if d.isEmpty { d = [1]; x = [0]; y = [0] }
        dims = d; sa = x; sb = y
    }

    var inner: Int { dims.last! }
    var outer: Int { dims.dropLast().reduce(1, *) }

    /// Offsets of a and b at the start of outer row `o`.
    @inline(__always)
    func offsets(_ o: Int) -> (Int, Int) {
        var rem = o, oa = 0, ob = 0
        var i = dims.count - 2
        while i >= 0 {
            let q = rem % dims[i]; rem /= dims[i]
            oa += q * sa[i]; ob += q * sb[i]
            i -= 1
        }
        return (oa, ob)
    }
}

/// Sums `g` (of broadcast shape) down to `shape`. Returns `g` itself when nothing was broadcast.
public func sumTo(_ g: Tensor, _ shape: [Int]) -> Tensor {
    if g.shape == shape { return g }
    if g.count == shape.reduce(1, *) { return g.reshaped(shape) }
    let out = Tensor(zeros: shape)
    let plan = BroadcastPlan(out: g.shape, a: g.shape, b: shape)
    let src = g.data, dst = out.data
    let inner = plan.inner, sIn = plan.sb[plan.sb.count - 1]
    // Sequential over rows: summation order is fixed, and the target is small.
    for o in 0..<plan.outer {
        let (og, ot) = plan.offsets(o)
        let p = src + og
        if sIn == 0 {
            var acc: Float = 0
            for j in 0..<inner { acc += p[j] }
            dst[ot] += acc
        } else {
            let q = dst + ot
            for j in 0..<inner { q[j * sIn] += p[j] }
        }
    }
    return out
}
