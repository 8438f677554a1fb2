// AdamW against a double-precision reference (bias correction, decoupled decay, only the trained
// ranges move), gradient-norm clipping, the fused clip-and-EMA pass, and frozen parts costing no
// memory. The step sharded over a node's ranks needs LeffaDistributed's shards: AdamWShardingTests
// in LeffaModelTests.
import XCTest
import LeffaTensor
import LeffaLayers

final class AdamWTests: XCTestCase {
    func makeSet() -> (ParameterSet, Parameter, Parameter) {
        let set = ParameterSet(), s = Scope(set, seed: 4)
        let a = s.param("a", [37], .uniform(1)), b = s.param("b", [5, 3], .uniform(1))
        set.enableGradients()
        return (set, a, b)
    }

    func testMatchesDoublePrecisionReference() {
        let (set, a, b) = makeSet()
        let opt = AdamW(parameters: set, training: [a])   // b is frozen
        var p = a.value.scalars.map(Double.init), m = [Double](repeating: 0, count: 37), v = m
        let bBefore = b.value.scalars
        let c = opt.config, lr = 1e-2
        for step in 1...3 {
            let g = Tensor.randn([37], seed: UInt64(step))
            a.value.grad!.data.update(from: g.data, count: 37)
            b.value.grad!.data.update(repeating: 1, count: 15)
            opt.update(parameters: set, lr: Float(lr))
            for i in 0..<37 {
                let gi = Double(g[i])
                m[i] = Double(c.beta1) * m[i] + (1 - Double(c.beta1)) * gi
                v[i] = Double(c.beta2) * v[i] + (1 - Double(c.beta2)) * gi * gi
                let mh = m[i] / (1 - pow(Double(c.beta1), Double(step))), vh = v[i] / (1 - pow(Double(c.beta2), Double(step)))
                p[i] = p[i] * (1 - lr * Double(c.weightDecay)) - lr * mh / (vh.squareRoot() + Double(c.eps))
            }
        }
        for i in 0..<37 { XCTAssertEqual(Double(a.value[i]), p[i], accuracy: 1e-5, "element \(i)") }
        XCTAssertEqual(b.value.scalars, bBefore, "a frozen parameter moved")
        XCTAssertEqual(opt.step, 3)
    }

    func testClipGradNorm() {
        let (set, a, b) = makeSet()
        let opt = AdamW(parameters: set, training: [a, b])
        for i in 0..<37 { a.value.grad![i] = Float(i % 5) - 2 }
        for i in 0..<15 { b.value.grad![i] = 0.5 }
        var sq = 15 * 0.25
        for i in 0..<37 { let x = Double(i % 5) - 2; sq += x * x }
        let want = sq.squareRoot()
        XCTAssertEqual(Double(opt.gradNorm(parameters: set)), want, accuracy: 1e-5)
        let before = opt.clipGradNorm(parameters: set, maxNorm: 1)
        XCTAssertEqual(Double(before), want, accuracy: 1e-5)
        XCTAssertEqual(Double(opt.gradNorm(parameters: set)), 1, accuracy: 1e-4)
    }

    /// One pass (gradients read × the clip factor, EMA of the new values, frozen elements' EMA
    /// too) gives the same bits as clipping in memory, updating, then averaging every element.
    func testFusedClipAndEMAMatchSeparatePasses() {
        func run(fused: Bool) -> (values: [Float], ema: [Float]) {
            let set = ParameterSet(), s = Scope(set, seed: 9)
            let f0 = s.param("head", [5], .uniform(1)), a = s.param("a", [301], .uniform(1)), f = s.param("frozen", [17], .uniform(1))
            let b = s.param("b", [45], .uniform(1)), f2 = s.param("tail", [9], .uniform(1))
            set.enableGradients()
            let opt = AdamW(parameters: set, training: [a, b])   // two trained ranges, frozen ones around and between
            // An average away from the values, so the frozen elements' average moves too.
            let ema = Tensor.randn([set.count], seed: 77), d: Float = 0.9
            for step in 1...3 {
                let g = Tensor.randn([set.count], seed: UInt64(10 + step), scale: 3)
                set.grads!.data.update(from: g.data, count: set.count)
                if fused {
                    let (_, scale) = opt.clipScale(parameters: set, maxNorm: 0.5)
                    XCTAssertLessThan(scale, 1, "the test must clip")
                    opt.update(parameters: set, lr: 1e-2, gradientScale: scale, ema: ema, emaDecay: d)
                } else {
                    opt.clipGradNorm(parameters: set, maxNorm: 0.5)
                    opt.update(parameters: set, lr: 1e-2)
                    let p = set.values!.data, e = ema.data
                    for i in 0..<ema.count { e[i] = d * e[i] + (1 - d) * p[i] }
                }
            }
            _ = (f0, f, f2)
            return (set.values!.scalars, ema.scalars)
        }
        let one = run(fused: true), two = run(fused: false)
        XCTAssertEqual(one.values.map(\.bitPattern), two.values.map(\.bitPattern))
        XCTAssertEqual(one.ema.map(\.bitPattern), two.ema.map(\.bitPattern))
    }
}

/// A frozen part (the reference UNet when only the generative one trains, the VAE) costs no
/// gradient or moment memory: those blocks are allocated on demand and nothing writes the frozen
/// ranges, so their pages never become resident (mincore asks the kernel).
final class FrozenMemoryTests: XCTestCase {
    /// Fraction of the whole pages in [p, p + count) that are resident.
    func resident(_ p: UnsafeMutablePointer<Float>, _ count: Int) -> Double {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let lo = (Int(bitPattern: p) + page - 1) / page * page, hi = (Int(bitPattern: p + count)) / page * page
        guard hi > lo else { return 0 }
        var vec = [UInt8](repeating: 0, count: (hi - lo) / page)
        XCTAssertEqual(mincore(UnsafeMutableRawPointer(bitPattern: lo), hi - lo, &vec), 0)
        return Double(vec.filter { $0 & 1 != 0 }.count) / Double(vec.count)
    }

    func testFrozenGradientsAndMomentsNeverBecomeResident() {
        let set = ParameterSet(), s = Scope(set, seed: 9)
        let trained = s.param("unet.w", [1 << 20], .uniform(1)), frozen = s.param("unet_encoder.w", [4 << 20], .uniform(1))
        let opt = AdamW(parameters: set, training: [trained])
        set.freeze(except: [trained])
        for step in 0..<2 {
            set.zeroGrads()
            let loss = sum(trained.value * trained.value) + sum(frozen.value * Tensor(repeating: 1, shape: [4 << 20]))
            loss.backward()
            opt.clipGradNorm(parameters: set, maxNorm: 1)
            opt.update(parameters: set, lr: 1e-3)
            XCTAssertEqual(opt.step, step + 1)
        }
        let g = set.grads!.data
        XCTAssertGreaterThan(resident(g + trained.offset, trained.count), 0.99, "the trained gradients should be in memory")
        XCTAssertGreaterThan(resident(opt.v.data + trained.offset, trained.count), 0.99, "the trained moments should be in memory")
        XCTAssertEqual(resident(g + frozen.offset, frozen.count), 0, "frozen gradients became resident")
        XCTAssertEqual(resident(opt.m.data + frozen.offset, frozen.count), 0, "frozen first moments became resident")
        XCTAssertEqual(resident(opt.v.data + frozen.offset, frozen.count), 0, "frozen second moments became resident")
    }
}
