// The EMA's weights put in place for a while (validation samples, a stage's final EMA file): one
// way for every caller, by swapping rather than copying, so no second copy of the weights (7 GB at
// SD1.5 size) is ever made and the trained weights come back bit for bit.
import LeffaTensor

/// Runs `body` with `ema` swapped into `weights` over `range` (default: all), then swaps back. With
/// no EMA, runs `body` on the weights as they are. `sync` runs before and after each swap: where
/// the ranks of a node share one block and each swaps its shard, it makes every shard visible.
public func withEMAWeights<T>(
    _ weights: Tensor, _ ema: Tensor?, range: Range<Int>? = nil, sync: () -> Void = {},
    _ body: () throws -> T
) rethrows -> T {
    guard let ema else { return try body() }
    precondition(ema.count == weights.count, "withEMAWeights: EMA of \(ema.count) values for \(weights.count) weights")
    let p = weights.data, e = ema.data, r = range ?? 0..<weights.count
    func swap() {
        sync()
        Parallel.for(r.count, grain: 1 << 15) { sub in
            for i in sub { let j = r.lowerBound + i, x = p[j]; p[j] = e[j]; e[j] = x }
        }
        sync()
    }
    swap()
    defer { swap() }
    return try body()
}
