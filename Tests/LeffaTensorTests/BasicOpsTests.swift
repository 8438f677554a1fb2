import XCTest
@testable import LeffaTensor
import TestSupport

final class BasicOpsTests: XCTestCase {
    func testBroadcastAddSubMulGradients() {
        let a = Tensor.randn([2, 3, 4, 5], seed: 1), b = Tensor.randn([3, 1, 1], seed: 2), c = Tensor.randn([2, 3, 1, 1], seed: 3)
        let r = checkGradients([a, b, c]) { x in (x[0] + x[1]) * x[2] - x[1] }
        XCTAssertTrue(r.ok, "\(r)")
    }
    func testBroadcastValues() {
        let a = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3]), b = Tensor([10, 20, 30], shape: [3])
        XCTAssertEqual((a + b).scalars, [11, 22, 33, 14, 25, 36])
        XCTAssertEqual((a * Tensor([2, 3], shape: [2, 1])).scalars, [2, 4, 6, 12, 15, 18])
    }
    func testLinearMatmulGradients() {
        let x = Tensor.randn([2, 5, 6], seed: 4), w = Tensor.randn([7, 6], seed: 5), b = Tensor.randn([7], seed: 6)
        XCTAssertTrue(checkGradients([x, w, b]) { linear($0[0], $0[1], $0[2]) }.ok)
        let p = Tensor.randn([3, 4, 5], seed: 7), q = Tensor.randn([3, 5, 2], seed: 8), s = Tensor.randn([5, 3], seed: 9)
        let r1 = checkGradients([p, q]) { matmul($0[0], $0[1]) }
        XCTAssertTrue(r1.ok, "\(r1)")
        let r2 = checkGradients([p, s]) { matmul($0[0], $0[1]) }
        XCTAssertTrue(r2.ok, "\(r2)")
    }
    func testLinearValues() {
        let x = Tensor([1, 2], shape: [1, 2]), w = Tensor([1, 0, 0, 1, 1, 1], shape: [3, 2]), b = Tensor([0, 1, 2], shape: [3])
        XCTAssertEqual(linear(x, w, b).scalars, [1, 3, 5])
    }
    func testShapeOpGradients() {
        let a = Tensor.randn([2, 3, 4], seed: 10), b = Tensor.randn([2, 5, 4], seed: 11)
        let r = checkGradients([a, b]) { x in
            let c = concat([x[0], x[1]], dim: 1)
            let parts = split(c, sizes: [4, 4], dim: 1)
            return (parts[0] * parts[1]).permuted([2, 0, 1]).reshaped([4, -1])
        }
        XCTAssertTrue(r.ok, "\(r)")
        let s = checkGradients([b]) { slice($0[0], dim: -1, start: 1, length: 2) }
        XCTAssertTrue(s.ok, "\(s)")
    }
    func testPermuteValues() {
        let a = Tensor([0, 1, 2, 3, 4, 5], shape: [2, 3])
        XCTAssertEqual(a.permuted([1, 0]).scalars, [0, 3, 1, 4, 2, 5])
    }
    func testReductionGradients() {
        let a = Tensor.randn([2, 3, 4], seed: 12), b = Tensor.randn([2, 3, 4], seed: 13)
        XCTAssertTrue(checkGradients([a]) { sum($0[0], axes: [0, 2]) }.ok)
        XCTAssertTrue(checkGradients([a]) { mean($0[0], axes: [1], keepDims: true) }.ok)
        XCTAssertTrue(checkGradients([a]) { mean($0[0]) }.ok)
        XCTAssertTrue(checkGradients([a]) { sum($0[0]) }.ok)
        let r = checkGradients([a, b]) { mse($0[0], $0[1]) }
        XCTAssertTrue(r.ok, "\(r)")
    }
    func testGradientsAccumulateIntoParameters() {
        let w = Tensor.randn([3], seed: 14).requiringGrad()
        sum(w * Tensor(repeating: 2, shape: [3])).backward()
        sum(w * Tensor(repeating: 3, shape: [3])).backward()
        XCTAssertEqual(w.grad!.scalars, [5, 5, 5])
    }
    func testBackwardFreesActivations() {
        // After backward, a node holds neither its closure nor its inputs.
        let x = Tensor.randn([64, 64], seed: 15).requiringGrad()
        let y = x * x
        let z = sum(y)
        z.backward()
        XCTAssertNil(y.node?.backward)
        XCTAssertTrue(y.node?.inputs.isEmpty ?? true)
    }
    func testGradCheckCatchesAWrongBackward() {
        // A deliberately wrong derivative (2x instead of 3x²) must fail the check.
        let x = Tensor.randn([5], seed: 16)
        let r = checkGradients([x]) { v in
            let xv = v[0].detached()
            let out = Tensor(zeros: [5])
            for i in 0..<5 { out[i] = xv[i] * xv[i] * xv[i] }
            return out.recording("cube-wrong", [v[0]]) { g in [mul(g, scale(xv, 2))] }
        }
        XCTAssertFalse(r.ok)
    }
}

final class GradientReadyHookTests: XCTestCase {
    /// The hook fires once per backward, after the leaf's last contribution (x is read twice).
    func testHookFiresAfterTheLastContribution() {
        let x = Tensor.randn([4], seed: 1).requiringGrad(), w = Tensor.randn([4], seed: 2).requiringGrad()
        var fired: [String] = []
        var xAtHook: [Float] = []
        x.onGradientReady = { fired.append("x"); xAtHook = x.grad!.scalars }
        w.onGradientReady = { fired.append("w") }
        let y = sum(x * w + x * x)
        y.backward()
        XCTAssertEqual(fired.sorted(), ["w", "x"])
        // When x's hook ran its gradient was already complete (w + 2x, as after backward).
        XCTAssertEqual(xAtHook, x.grad!.scalars)
        for i in 0..<4 { XCTAssertEqual(xAtHook[i], w[i] + 2 * x[i], accuracy: 1e-5) }
    }

    /// Backward runs newest node first (the forward pass reversed): with two branches built one
    /// after the other, the later branch's parameter is ready before the earlier one's, whatever
    /// order the loss lists them in; and reachableLeaves names exactly what backward will reach.
    func testBackwardRunsNewestFirstAndReachableLeaves() {
        let x = Tensor([1, 2, 3], shape: [3])
        let a = Tensor([0.5, 0.5, 0.5], shape: [3]).requiringGrad()
        let b = Tensor([2, 2, 2], shape: [3]).requiringGrad()
        let unused = Tensor([1, 1, 1], shape: [3]).requiringGrad()
        for firstListedFirst in [true, false] {
            a.grad = nil; b.grad = nil
            let first = x * a           // made first
            let second = x * b          // made second
            let loss = sum(firstListedFirst ? first + second : second + first)
            var order: [String] = []
            a.onGradientReady = { order.append("a") }
            b.onGradientReady = { order.append("b") }
            XCTAssertEqual(loss.reachableLeaves(), [ObjectIdentifier(a), ObjectIdentifier(b)])
            loss.backward()
            XCTAssertEqual(order, ["b", "a"], "listed \(firstListedFirst ? "first + second" : "second + first")")
            XCTAssertNil(unused.grad)
        }
        XCTAssertEqual(a.grad?.scalars, [1, 2, 3])
    }
}
