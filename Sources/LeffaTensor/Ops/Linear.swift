// Matrix products on sgemm: `matmul` (batched) and `linear` (x·Wᵀ + b, PyTorch's weight layout).

/// a (…, m, k) × b (k, n) or batched b (…, k, n) with the same leading dims → (…, m, n).
public func matmul(_ a: Tensor, _ b: Tensor) -> Tensor {
    shapeCheck(
        a.rank >= 2 && b.rank >= 2 && a.dim(-1) == b.dim(-2), "matmul", a.shape, b.shape,
        expected: "(…, m, k) × (…, k, n)")
    let m = a.dim(-2), k = a.dim(-1), n = b.dim(-1)
    let batch = a.count / max(m * k, 1)
    let shared = b.rank == 2
    shapeCheck(
        shared || Array(a.shape.dropLast(2)) == Array(b.shape.dropLast(2)), "matmul", a.shape, b.shape,
        expected: "equal batch dims")
    let out = Tensor(zeros: Array(a.shape.dropLast()) + [n])
    if shared {
        // Fold the batch into rows: one large GEMM.
        gemm(m: batch * m, n: n, k: k, a: a.data, lda: k, b: b.data, ldb: n, c: out.data, ldc: n)
    } else {
        for i in 0..<batch {
            gemm(
                m: m, n: n, k: k, a: a.data + i * m * k, lda: k, b: b.data + i * k * n, ldb: n, c: out.data + i * m * n,
                ldc: n)
        }
    }
    let av = a.detached(), bv = b.detached(), aNeeds = a.requiresGrad, bNeeds = b.requiresGrad
    return out.recording("matmul", [a, b]) { g in
        var ga: Tensor? = nil, gb: Tensor? = nil
        if aNeeds {
            let t = Tensor(zeros: av.shape)
            if shared {
                gemm(transB: true, m: batch * m, n: k, k: n, a: g.data, lda: n, b: bv.data, ldb: n, c: t.data, ldc: k)
            } else {
                for i in 0..<batch {
                    gemm(
                        transB: true, m: m, n: k, k: n, a: g.data + i * m * n, lda: n, b: bv.data + i * k * n, ldb: n,
                        c: t.data + i * m * k, ldc: k)
                }
            }
            ga = t
        }
        if bNeeds {
            let t = Tensor(zeros: bv.shape)
            if shared {
                gemm(transA: true, m: k, n: n, k: batch * m, a: av.data, lda: k, b: g.data, ldb: n, c: t.data, ldc: n)
            } else {
                for i in 0..<batch {
                    gemm(
                        transA: true, m: k, n: n, k: m, a: av.data + i * m * k, lda: k, b: g.data + i * m * n, ldb: n,
                        c: t.data + i * k * n, ldc: n)
                }
            }
            gb = t
        }
        return [ga, gb]
    }
}

/// x (…, in) · Wᵀ + b with W (out, in), b (out): PyTorch's `nn.Linear`.
public func linear(_ x: Tensor, _ w: Tensor, _ b: Tensor? = nil) -> Tensor {
    shapeCheck(
        w.rank == 2 && x.dim(-1) == w.shape[1], "linear", x.shape, w.shape, expected: "x (…, in) and weight (out, in)")
    let nOut = w.shape[0], nIn = w.shape[1], rows = x.count / max(nIn, 1)
    if let b { shapeCheck(b.shape == [nOut], "linear (bias)", b.shape, w.shape, expected: "bias (\(nOut))") }
    let out = Tensor(zeros: Array(x.shape.dropLast()) + [nOut])
    gemm(transB: true, m: rows, n: nOut, k: nIn, a: x.data, lda: nIn, b: w.data, ldb: nIn, c: out.data, ldc: nOut)
    if let b { addRowBias(out.data, b.data, rows: rows, cols: nOut) }
    let xv = x.detached(), wv = w.detached()
    let xNeeds = x.requiresGrad, wNeeds = w.requiresGrad, bNeeds = b?.requiresGrad ?? false
    var inputs = [x, w]
    if let b { inputs.append(b) }
    return out.recording("linear", inputs) { g in
        var grads: [Tensor?] = [nil, nil]
        if xNeeds {
            let t = Tensor(zeros: xv.shape)
            gemm(m: rows, n: nIn, k: nOut, a: g.data, lda: nOut, b: wv.data, ldb: nIn, c: t.data, ldc: nIn)
            grads[0] = t
        }
        if wNeeds {
            let t = Tensor(zeros: wv.shape)
            gemm(
                transA: true, m: nOut, n: nIn, k: rows, a: g.data, lda: nOut, b: xv.data, ldb: nIn, c: t.data, ldc: nIn)
            grads[1] = t
        }
        if b != nil { grads.append(bNeeds ? columnSums(g.data, rows: rows, cols: nOut) : nil) }
        return grads
    }
}

/// out[r, c] += bias[c].
func addRowBias(_ out: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>, rows: Int, cols: Int) {
    Parallel.for(rows, grain: max(1, 8192 / max(cols, 1))) { r in
        for i in r { let row = out + i * cols; for j in 0..<cols { row[j] += bias[j] } }
    }
}

/// Σ over rows of a (rows, cols) matrix → (cols), rows summed in order (deterministic).
func columnSums(_ g: UnsafePointer<Float>, rows: Int, cols: Int) -> Tensor {
    let out = Tensor(zeros: [cols]), p = out.data
    Parallel.for(cols, grain: 64) { cr in
        for i in 0..<rows { let row = g + i * cols; for j in cr { p[j] += row[j] } }
    }
    return out
}
