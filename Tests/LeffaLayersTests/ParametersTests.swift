// Named parameters in one flat block (Parameters.swift): dotted names from scopes, the flat value
// and gradient blocks in registration order with every parameter a view into them, initial values
// as a pure function of (seed, name), freezing and the trained range, zeroing only trained runs,
// the gradient-ready hooks a reducer waits on, and moving the blocks into memory the caller owns.
import XCTest
import LeffaTensor
import LeffaLayers
import TestSupport

final class ParametersTests: XCTestCase {
    /// p0 [2, 3], p1 [2], p2 [4], p3 [3] under a few scopes, flattened: offsets 0, 6, 8, 12.
    func makeSet(seed: UInt64 = 5) -> (ParameterSet, [Parameter]) {
        let set = ParameterSet(), s = Scope(set, seed: seed)
        let conv = s / "down_blocks" / 0 / "conv"
        let ps = [conv.param("weight", [2, 3], .uniform(1)), conv.param("bias", [2], .uniform(1)),
                  (s / "mid").param("w", [4], .uniform(1)), s.param("tail", [3], .ones)]
        set.flatten()
        return (set, ps)
    }

    func testNamesAndFlatLayout() {
        let set = ParameterSet(), s = Scope(set, seed: 5)
        let conv = s / "down_blocks" / 0 / "conv"
        let w = conv.param("weight", [2, 3], .uniform(1)), b = conv.param("bias", [2], .uniform(1))
        let m = (s / "mid").param("w", [4], .uniform(1))
        XCTAssertEqual(set.names, ["down_blocks.0.conv.weight", "down_blocks.0.conv.bias", "mid.w"])
        XCTAssertEqual(set.count, 12)
        XCTAssertNil(set.values, "no block before flatten()")
        let before = w.value.scalars + b.value.scalars + m.value.scalars
        set.flatten()
        let values = set.values!
        XCTAssertEqual([w.offset, b.offset, m.offset], [0, 6, 8])
        XCTAssertEqual(values.scalars, before, "registration order, values kept")
        XCTAssertEqual(b.value.shape, [2])
        // Views: a write to the block is the parameter's value, and the other way round.
        values.data[6] = 42
        XCTAssertEqual(b.value[0], 42)
        m.value.data[3] = -7
        XCTAssertEqual(values[11], -7)
        set.flatten()
        XCTAssertTrue(set.values === values, "a second flatten() changes nothing")
        XCTAssertTrue(set["mid.w"] === m)
        XCTAssertNil(set["mid"])
        XCTAssertEqual(set.with(prefix: "down_blocks.").map(\.name),
                       ["down_blocks.0.conv.weight", "down_blocks.0.conv.bias"])
        XCTAssertTrue(w.value.requiresGrad && m.value.requiresGrad, "parameters train unless frozen")
    }

    /// Initial values depend on (seed, full name) only: not on registration order or neighbours.
    func testInitialValuesArePureFunctionsOfSeedAndName() {
        let one = Scope(ParameterSet(), seed: 3), two = Scope(ParameterSet(), seed: 3)
        let other = Scope(ParameterSet(), seed: 4)
        let a1 = one.param("a", [50], .uniform(0.5)), b1 = one.param("b", [50], .fanIn(9))
        let b2 = two.param("b", [50], .fanIn(9)), a2 = two.param("a", [50], .uniform(0.5))
        let a3 = other.param("a", [50], .uniform(0.5))
        XCTAssertEqual(a1.value.scalars, a2.value.scalars)
        XCTAssertEqual(b1.value.scalars, b2.value.scalars)
        XCTAssertNotEqual(a1.value.scalars, a3.value.scalars, "another seed")
        XCTAssertNotEqual(a1.value.scalars, one.param("c", [50], .uniform(0.5)).value.scalars, "another name")
        XCTAssertTrue(a1.value.scalars.allSatisfy { abs($0) <= 0.5 })
        // nn.Linear/Conv2d: U(±1/√fan_in), fan_in 9 → 1/3; spread over most of the range.
        XCTAssertTrue(b1.value.scalars.allSatisfy { abs($0) <= Float(1) / 3 })
        XCTAssertGreaterThan(b1.value.scalars.map(abs).max()!, 0.25)
        let set = ParameterSet(), s = Scope(set)
        XCTAssertEqual(s.param("z", [3], .zeros).value.scalars, [0, 0, 0])
        XCTAssertEqual(s.param("o", [2], .ones).value.scalars, [1, 1])
    }

    /// FNV-1a 64's published test vectors: the same hash in every process and run.
    func testStableHashIsFNV1a() {
        XCTAssertEqual(stableHash(""), 0xCBF2_9CE4_8422_2325)
        XCTAssertEqual(stableHash("a"), 0xAF63_DC4C_8601_EC8C)
        XCTAssertEqual(stableHash("foobar"), 0x8594_4171_F739_67E8)
    }

    /// Backward adds straight into each parameter's range of the flat gradient block.
    func testGradientsLandInTheFlatBlock() {
        let (set, p) = makeSet()
        let g = set.enableGradients()
        XCTAssertTrue(set.enableGradients() === g, "one block")
        XCTAssertEqual(g.count, set.count)
        let loss = sum(p[0].value * p[0].value) + sum(p[2].value * Tensor(repeating: 3, shape: [4]))
        loss.backward()
        let want = p[0].value.scalars.map { 2 * $0 } + [0, 0] + [3, 3, 3, 3] + [0, 0, 0]
        let (ratio, at) = worstError(g.scalars, want, Tolerances.float32)
        XCTAssertLessThanOrEqual(ratio, 1, "element \(at): \(g[at]) vs \(want[at])")
        XCTAssertTrue(p[2].grad!.data == g.data + 8, "the gradient is a view at the parameter's offset")
        sum(p[2].value * Tensor(repeating: 3, shape: [4])).backward()
        XCTAssertEqual(g[8], 6, "backward adds")
        set.zeroGrads()
        XCTAssertEqual(g.scalars, [Float](repeating: 0, count: 15))
    }

    func testFreezeAndTrainedRange() {
        let (set, p) = makeSet()
        let g = set.enableGradients()
        XCTAssertEqual(set.trainedRange, 0..<4)
        set.freeze(except: [p[1], p[2]])
        XCTAssertEqual(p.map(\.value.requiresGrad), [false, true, true, false])
        XCTAssertEqual(set.trainedRange, 1..<3)
        let view = set.gradients(of: 1..<3)
        XCTAssertEqual(view.count, 6)
        XCTAssertTrue(view.data == g.data + 6)
        XCTAssertEqual(set.gradients(of: 2..<2).count, 0)
        // zeroGrads writes the trained runs only: a frozen gradient's pages stay untouched.
        g.data.update(repeating: 7, count: g.count)
        set.zeroGrads()
        XCTAssertEqual(g.scalars, [7, 7, 7, 7, 7, 7] + [0, 0, 0, 0, 0, 0] + [7, 7, 7])
        // A frozen parameter is not reached by backward.
        let loss = sum(p[0].value * p[0].value) + sum(p[1].value)
        XCTAssertFalse(loss.reachableLeaves().contains(ObjectIdentifier(p[0].value)))
        loss.backward()
        XCTAssertEqual(g.scalars, [7, 7, 7, 7, 7, 7] + [1, 1] + [0, 0, 0, 0] + [7, 7, 7])
        set.freeze(except: [p[0], p[2]])
        XCTAssertNil(set.trainedRange, "scattered")
        set.freeze(except: [])
        XCTAssertNil(set.trainedRange, "none")
    }

    /// Every parameter's hook is called once per backward: at once for those the loss does not
    /// reach (unused or frozen), when its gradient is final for the others.
    func testGradientReadyHooks() {
        let (set, p) = makeSet()
        set.enableGradients()
        set.freeze(except: [p[0], p[1], p[2]])
        let loss = sum(p[0].value * p[0].value) + sum(p[1].value * p[1].value)
        var ready: [Int] = []
        set.handOverGradients(of: loss) { ready.append($0) }
        XCTAssertEqual(ready, [2, 3], "unused and frozen: ready before backward")
        loss.backward()
        XCTAssertEqual(ready.sorted(), [0, 1, 2, 3])
        set.removeGradientHooks()
        XCTAssertTrue(p.allSatisfy { $0.value.onGradientReady == nil })
        sum(p[0].value * p[0].value).backward()
        XCTAssertEqual(ready.count, 4, "no hooks after removal")
    }

    /// Into caller-owned memory (an MPI shared-memory window): gradients copied over and still
    /// written by backward; values copied only over `range`, trainability and gradient views kept.
    func testMovingTheBlocksIntoCallerMemory() {
        let (set, p) = makeSet()
        set.enableGradients()
        set.freeze(except: [p[0], p[1]])
        let loss = sum(p[1].value)
        loss.backward()
        let gradStore = Storage(count: set.count)
        set.moveGradients(into: gradStore)
        XCTAssertTrue(set.grads!.data == gradStore.base)
        XCTAssertEqual(Array(gradStore.buffer[6..<8]), [1, 1], "the old gradients are copied over")
        let old = set.values!.scalars
        let valueStore = Storage(count: set.count)
        set.moveValues(into: valueStore, copying: 6..<12)
        XCTAssertTrue(set.values!.data == valueStore.base && p[2].value.data == valueStore.base + 8)
        XCTAssertEqual(Array(valueStore.buffer), [Float](repeating: 0, count: 6) + Array(old[6..<12]) + [0, 0, 0])
        XCTAssertEqual(p.map(\.value.requiresGrad), [true, true, false, false])
        sum(p[1].value * Tensor(repeating: 2, shape: [2])).backward()
        XCTAssertEqual(Array(gradStore.buffer[6..<8]), [3, 3], "backward writes into the moved block")
    }
}
