// Element-wise arithmetic with broadcasting: add, sub, mul, and scalar forms.
// Forward and backward side by side; broadcast gradients are summed back with `sumTo`.

enum BinaryOp { case add, sub, mul }

/// Forward kernel for `a ∘ b` with broadcasting into a new tensor.
func binaryForward(_ a: Tensor, _ b: Tensor, _ op: BinaryOp, name: String) -> Tensor {
    let shape = broadcastShape(a.shape, b.shape, op: name)
    let out = Tensor(zeros: shape)
    let pa = a.data, pb = b.data, po = out.data
    if a.shape == b.shape {
        Parallel.for(out.count, grain: 1 << 14) { r in
            switch op {
            case .add: for i in r { po[i] = pa[i] + pb[i] }
            case .sub: for i in r { po[i] = pa[i] - pb[i] }
            case .mul: for i in r { po[i] = pa[i] * pb[i] }
            }
        }
        return out
    }
    let plan = BroadcastPlan(out: shape, a: a.shape, b: b.shape)
    let inner = plan.inner, ia = plan.sa.last!, ib = plan.sb.last!
    Parallel.for(plan.outer, grain: max(1, 8192 / max(inner, 1))) { rows in
        for o in rows {
            let (oa, ob) = plan.offsets(o)
            let x = pa + oa, y = pb + ob, z = po + o * inner
            switch op {
            case .add: for j in 0..<inner { z[j] = x[j * ia] + y[j * ib] }
            case .sub: for j in 0..<inner { z[j] = x[j * ia] - y[j * ib] }
            case .mul: for j in 0..<inner { z[j] = x[j * ia] * y[j * ib] }
            }
        }
    }
    return out
}

public func add(_ a: Tensor, _ b: Tensor) -> Tensor {
    let sa = a.shape, sb = b.shape
    return binaryForward(a, b, .add, name: "add").recording("add", [a, b]) { g in
        [sumTo(g, sa), sumTo(g, sb)]
    }
}

public func sub(_ a: Tensor, _ b: Tensor) -> Tensor {
    let sa = a.shape, sb = b.shape
    return binaryForward(a, b, .sub, name: "sub").recording("sub", [a, b]) { g in
        [sumTo(g, sa), b.requiresGrad ? sumTo(scale(g, -1), sb) : nil]
    }
}

public func mul(_ a: Tensor, _ b: Tensor) -> Tensor {
    let out = binaryForward(a, b, .mul, name: "mul")
    let aNeeds = a.requiresGrad, bNeeds = b.requiresGrad
    let av = a.detached(), bv = b.detached()
    return out.recording("mul", [a, b]) { g in
        [
            aNeeds ? sumTo(binaryForward(g, bv, .mul, name: "mul backward"), av.shape) : nil,
            bNeeds ? sumTo(binaryForward(g, av, .mul, name: "mul backward"), bv.shape) : nil
        ]
    }
}

/// x · s + c, element-wise (no graph for the constants).
public func scale(_ x: Tensor, _ s: Float, plus c: Float = 0) -> Tensor {
    let out = Tensor(zeros: x.shape)
    let p = x.data, q = out.data
    Parallel.for(x.count, grain: 1 << 14) { r in for i in r { q[i] = p[i] * s + c } }
    return out.recording("scale", [x]) { g in [scale(g, s)] }
}

public func + (a: Tensor, b: Tensor) -> Tensor { add(a, b) }
public func - (a: Tensor, b: Tensor) -> Tensor { sub(a, b) }
public func * (a: Tensor, b: Tensor) -> Tensor { mul(a, b) }
public func * (a: Tensor, s: Float) -> Tensor { scale(a, s) }
public func * (s: Float, a: Tensor) -> Tensor { scale(a, s) }
public func + (a: Tensor, c: Float) -> Tensor { scale(a, 1, plus: c) }
public prefix func - (a: Tensor) -> Tensor { scale(a, -1) }
