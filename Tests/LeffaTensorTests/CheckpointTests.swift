// Activation checkpointing (`checkpoint`): its gradients against finite differences, and the same
// bits as the uncheckpointed graph, with an input also read after the function (whose gradient
// sums in a fixed order), a side output, a captured parameter and its gradient-ready hook.
import XCTest
@testable import LeffaTensor
import TestSupport

final class CheckpointTests: XCTestCase {
    /// A small network around a checkpointed part: `a` is computed before it and read again after
    /// it; the part reads `a` twice and the parameter `w` (captured, not an input) and returns its
    /// result and a side output that the rest also reads.
    func network(_ x: Tensor, _ w: Tensor, checkpointed: Bool) -> Tensor {
        let a = silu(x * Tensor(repeating: 1.5, shape: [1]))
        let part: ([Tensor]) -> [Tensor] = { t in
            let h = linear(t[0], w)
            let side = h * t[0]
            return [silu(side + t[0]), side]
        }
        let outs = checkpointed ? checkpoint([a], part) : part([a])
        return outs[0] * a + outs[1] + a
    }

    func testCheckpointGradients() {
        let x = Tensor.randn([2, 3, 4], seed: 1), w = Tensor.randn([4, 4], seed: 2, scale: 0.5)
        let r = checkGradients([x, w]) { network($0[0], $0[1], checkpointed: true) }
        XCTAssertTrue(r.ok, "\(r)")
    }

    func testSameBitsAsWithoutCheckpointing() {
        let x = Tensor.randn([8, 64, 32], seed: 3), w = Tensor.randn([32, 32], seed: 4, scale: 0.3)
        let seed = Tensor.randn([8, 64, 32], seed: 5)
        var results: [(out: [Float], x: [Float], w: [Float], hooks: Int, wAtHook: [Float], leaves: Int)] = []
        for checkpointed in [false, true] {
            x.requiringGrad(); w.requiringGrad()
            x.grad = nil; w.grad = nil
            var hooks = 0, wAtHook: [Float] = []
            w.onGradientReady = { hooks += 1; wAtHook = w.grad!.scalars }
            let out = network(x, w, checkpointed: checkpointed)
            let leaves = out.reachableLeaves()
            out.backward(seed)
            results.append((out.scalars, x.grad!.scalars, w.grad!.scalars, hooks, wAtHook, leaves.count))
        }
        let (plain, ckpt) = (results[0], results[1])
        /// How many elements differ in their bits.
        func differing(_ a: [Float], _ b: [Float]) -> Int { zip(a, b).filter { $0.bitPattern != $1.bitPattern }.count }
        XCTAssertEqual(differing(ckpt.out, plain.out), 0, "output")
        XCTAssertEqual(differing(ckpt.x, plain.x), 0, "x's gradient (read before, inside and after the part)")
        XCTAssertEqual(differing(ckpt.w, plain.w), 0, "w's gradient (read inside the part)")
        XCTAssertEqual(ckpt.leaves, 2, "reachableLeaves sees the parameter inside the part")
        XCTAssertEqual(ckpt.hooks, 1, "w's hook fires once")
        XCTAssertEqual(ckpt.wAtHook, ckpt.w, "w's hook fires once its gradient is complete")
    }

    /// Without grad mode the function just runs; nothing needing a gradient: no graph either.
    func testNoGraphWhenNothingNeedsAGradient() {
        let x = Tensor.randn([3, 4], seed: 6)
        let y = checkpoint([x]) { [silu($0[0])] }[0]
        XCTAssertFalse(y.requiresGrad)
        XCTAssertEqual(y.scalars, silu(x).scalars)
    }
}
