// AdamW against a double-precision reference (bias correction, decoupled decay, only the trained
// ranges move), gradient-norm clipping, and the step sharded over ranks.
import XCTest
import LeffaTensor
import LeffaLayers
import LeffaDistributed

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

    /// The step of a node's ranks on their shards of one shared state (SharedState.shard: the
    /// ranks' gradient slices, cut at the norm's chunks, the first and last reaching the block's
    /// ends) is the whole step bit for bit, for 1 to 5 shards: the norm's chunk sums added over
    /// the shards (each nonzero on one) before the fold, clipping, AdamW and the EMA, frozen
    /// parameters around the trained ones included. Every step clips.
    func testShardedStepIsTheWholeStepBitForBit() {
        func run(shards n: Int) -> (values: [Float], m: [Float], v: [Float], ema: [Float], norms: [Float]) {
            let set = ParameterSet(), s = Scope(set, seed: 3)
            _ = s.param("head", [7], .uniform(1))
            let a = s.param("a", [3 * sumChunk + 5], .uniform(1)), b = s.param("b", [2 * sumChunk + 301], .uniform(1))
            _ = s.param("tail", [11], .uniform(1))
            set.enableGradients()
            let opt = AdamW(parameters: set, training: [a, b])
            XCTAssertEqual(opt.ranges.count, 1, "a and b are one trained run")
            let ema = Tensor.randn([set.count], seed: 5), count = set.count
            let shards = (0..<n).map { SharedState.shard($0, of: n, trained: opt.ranges[0], count: count, grain: AdamW.shardGrain) }
            XCTAssertEqual(shards.first?.lowerBound, 0)
            XCTAssertEqual(shards.last?.upperBound, count)
            var norms: [Float] = []
            for step in 1...3 {
                // Chunks of very different sizes (2^±15): their sums of squares are not exact in
                // double, so adding them in another grouping would change the norm's bits.
                let g = Tensor.randn([count], seed: UInt64(20 + step), scale: 5)
                for i in 0..<count { g.data[i] *= powf(2, Float((i / sumChunk * 7 + step) % 31 - 15)) }
                set.grads!.data.update(from: g.data, count: count)
                if n == 1 {
                    let (norm, scale) = opt.clipScale(parameters: set, maxNorm: 1)
                    XCTAssertLessThan(scale, 1, "the test must clip")
                    opt.update(parameters: set, lr: 1e-2, gradientScale: scale, ema: ema, emaDecay: 0.9)
                    norms.append(norm)
                    continue
                }
                // Each shard's chunk sums, then their sum over the shards (what MPI adds).
                var lists: [[Double]] = []
                for shard in shards { _ = opt.gradNorm(parameters: set, only: shard) { lists.append($0); return $0 } }
                let summed = lists.dropFirst().reduce(lists[0]) { zip($0, $1).map(+) }
                let results = shards.map { opt.clipScale(parameters: set, maxNorm: 1, only: $0) { _ in summed } }
                XCTAssertEqual(Set(results.map(\.norm.bitPattern)).count, 1, "the shards disagree on the norm")
                let before = opt.step
                for shard in shards {
                    opt.step = before   // every rank takes the same update number
                    opt.update(parameters: set, lr: 1e-2, only: shard, gradientScale: results[0].scale, ema: ema, emaDecay: 0.9)
                }
                norms.append(results[0].norm)
            }
            return (set.values!.scalars, opt.m.scalars, opt.v.scalars, ema.scalars, norms)
        }
        let whole = run(shards: 1)
        /// The first element whose bits differ, if any.
        func firstDifference(_ a: [Float], _ b: [Float]) -> Int? { a.indices.first { a[$0].bitPattern != b[$0].bitPattern } }
        for n in 2...5 {
            let sharded = run(shards: n)
            XCTAssertNil(firstDifference(sharded.norms, whole.norms), "\(n) shards: gradient norms \(sharded.norms) vs \(whole.norms)")
            for (what, a, b) in [("weights", sharded.values, whole.values), ("first moment", sharded.m, whole.m),
                                 ("second moment", sharded.v, whole.v), ("EMA", sharded.ema, whole.ema)] {
                XCTAssertNil(firstDifference(a, b), "\(n) shards: \(what) differ from the whole step")
            }
        }
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
