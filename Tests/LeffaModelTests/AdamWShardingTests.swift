// AdamW's step sharded over a node's ranks (LeffaDistributed's SharedState.shard cuts the shards)
// is the whole step bit for bit. The rest of AdamW is tested in LeffaLayersTests/AdamWTests.
import XCTest
import LeffaTensor
import LeffaLayers
import LeffaDistributed

final class AdamWShardingTests: XCTestCase {
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
