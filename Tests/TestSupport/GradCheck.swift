// Finite-difference gradient checking and named tolerances, shared by every test target.
// A check reports its worst error, so a failing test says how far off and where.
import LeffaTensor

/// A relative/absolute tolerance with the reason it is what it is.
public struct Tolerance: Sendable {
    public let rtol: Float, atol: Float, why: String
    public init(rtol: Float, atol: Float, why: String) { self.rtol = rtol; self.atol = atol; self.why = why }
    public func accepts(_ a: Float, _ b: Float) -> Bool { abs(a - b) <= atol + rtol * max(abs(a), abs(b)) }
}

public enum Tolerances {
    /// Central differences in float32 with eps 1e-2: truncation O(eps²) plus rounding of the
    /// perturbed loss (~1e-7·√n / eps). A wrong backward (missing factor, wrong index) is off by O(1).
    public static let finiteDifference = Tolerance(rtol: 2e-2, atol: 2e-3, why: "float32 central differences, eps 1e-2")
    /// Two float32 implementations of the same formula that sum in different orders.
    public static let float32 = Tolerance(rtol: 1e-4, atol: 1e-5, why: "float32 summation order")
    /// Golden outputs of the published model (fixtures README: relative error below 1e-4).
    public static let goldenOutput = Tolerance(rtol: 1e-4, atol: 1e-6, why: "fixtures README, outputs and losses")
    /// Golden gradients (fixtures README: relative error below 1e-3).
    public static let goldenGradient = Tolerance(rtol: 1e-3, atol: 1e-6, why: "fixtures README, gradients")
    /// float32 stored as float16 (round to nearest): half an ulp, 2^-11 of a normal value; below
    /// 2^-14 (subnormals) half the fixed spacing 2^-24.
    public static let float16Storage = Tolerance(rtol: 0x1p-11, atol: 0x1p-25, why: "float16 rounding, half an ulp")
    /// float32 stored as bfloat16: half an ulp, 2^-8 (7 stored mantissa bits); subnormals at 2^-126.
    public static let bfloat16Storage = Tolerance(rtol: 0x1p-8, atol: 0x1p-134, why: "bfloat16 rounding, half an ulp")
}

public struct GradCheckReport: CustomStringConvertible {
    public var checked = 0
    public var failures: [String] = []
    public var worst: (input: Int, index: Int, analytic: Float, numeric: Float)? = nil
    public var worstError: Float = 0
    public var ok: Bool { failures.isEmpty && checked > 0 }
    public var description: String {
        let w = worst.map { "worst input \($0.input)[\($0.index)]: analytic \($0.analytic) numeric \($0.numeric)" } ?? "nothing checked"
        return "checked \(checked), failed \(failures.count); \(w)" + (failures.isEmpty ? "" : "\n" + failures.prefix(8).joined(separator: "\n"))
    }
}

/// Compares backward's gradient of L = Σ f(x)·R (R fixed random weights, so every output element
/// matters differently) with central finite differences at `samples` random entries per input.
public func checkGradients(_ inputs: [Tensor], samples: Int = 24, eps: Float = 1e-2,
                           tolerance: Tolerance = Tolerances.finiteDifference, seed: UInt64 = 7,
                           _ f: ([Tensor]) -> Tensor) -> GradCheckReport {
    for x in inputs { x.requiringGrad(); x.grad = nil }
    let out = f(inputs)
    let weights = Tensor.randn(out.shape, seed: seed &+ 1000)
    func loss() -> Double {
        let y = GradMode.withoutGrad { f(inputs) }
        var acc = 0.0
        for i in 0..<y.count { acc += Double(y[i]) * Double(weights[i]) }
        return acc
    }
    out.backward(weights)
    var report = GradCheckReport()
    for (k, x) in inputs.enumerated() {
        let g = x.grad
        let picks = x.count <= samples ? Array(0..<x.count)
            : (0..<samples).map { Int(CounterRNG.bits(seed &+ UInt64(k), UInt64($0)) % UInt64(x.count)) }
        for i in picks {
            let saved = x[i]
            x[i] = saved + eps; let lp = loss()
            x[i] = saved - eps; let lm = loss()
            x[i] = saved
            let numeric = Float((lp - lm) / Double(2 * eps))
            let analytic = g?[i] ?? 0
            report.checked += 1
            let err = abs(analytic - numeric) / (tolerance.atol + tolerance.rtol * max(abs(analytic), abs(numeric)))
            if err > report.worstError || report.worst == nil { report.worstError = err; report.worst = (k, i, analytic, numeric) }
            if !tolerance.accepts(analytic, numeric) {
                report.failures.append("input \(k)[\(i)]: analytic \(analytic), numeric \(numeric)")
            }
        }
    }
    return report
}

/// Largest |a−b| / (atol + rtol·max|·|) over two arrays; ≤ 1 means within tolerance.
public func worstError(_ a: [Float], _ b: [Float], _ tol: Tolerance) -> (ratio: Float, index: Int) {
    precondition(a.count == b.count, "worstError: \(a.count) vs \(b.count) elements")
    var worst: Float = 0, at = 0
    for i in 0..<a.count {
        let e = abs(a[i] - b[i]) / (tol.atol + tol.rtol * max(abs(a[i]), abs(b[i])))
        if e > worst || e.isNaN { worst = e.isNaN ? .infinity : e; at = i }
    }
    return (worst, at)
}
