// The correctness modes: allreduce, buckets, ordered, verify.
import ArgumentParser
import Foundation
import LeffaDistributed
import LeffaTensor

struct AllreduceCheck: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "allreduce", abstract: "Sums, min/max, gathers and broadcasts with known results.")

    func run() throws {
        let h = try Harness("allreduce")
        let ctx = h.ctx, r = ctx.rank, n = ctx.size
        let env = ProcessInfo.processInfo.environment
        if let lr = env["OMPI_COMM_WORLD_LOCAL_RANK"].flatMap(Int.init), let ls = env["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap(Int.init) {
            h.check(ctx.localRank == lr && ctx.localSize == ls, "local rank/size \(ctx.localRank)/\(ctx.localSize), launcher says \(lr)/\(ls)")
        }

        let count = 10_007
        var f = (0..<count).map { Float(r + 1) * Float($0 % 7) }
        ctx.allreduce(&f)
        let tri = Float(n * (n + 1) / 2)
        for i in 0..<count { h.check(f[i] == tri * Float(i % 7), "float sum at \(i): \(f[i]), expected \(tri * Float(i % 7))") }

        var d = [Double](repeating: Double(r) + 0.25, count: 33)
        ctx.allreduce(&d)
        h.check(d.allSatisfy { $0 == Double(n * (n - 1) / 2) + 0.25 * Double(n) }, "double sum \(d[0])")

        var q: [Int64] = (0..<17).map { (i: Int) -> Int64 in (Int64(1) << 40) * Int64(r + 1) + Int64(i) }
        ctx.allreduce(&q)
        let big: Int64 = (1 << 40) * Int64(n * (n + 1) / 2)
        for i in 0..<17 {
            let want: Int64 = big + Int64(n * i)
            h.check(q[i] == want, "int64 sum at \(i): \(q[i]), expected \(want)")
        }
        h.check(ctx.allreduce(Int64(r), .min) == 0 && ctx.allreduce(Int64(r), .max) == Int64(n - 1), "int64 min/max")
        h.check(ctx.allreduce(Float(r) - 0.5, .max) == Float(n) - 1.5, "float max")

        let g = ctx.allgather([UInt64(r * 10), UInt64(r * 10 + 1)])
        var want: [UInt64] = []
        for k in 0..<n { want += [UInt64(k * 10), UInt64(k * 10 + 1)] }
        h.check(g == want, "allgather \(g)")

        let root = n - 1
        var b = [Float](repeating: Float(r), count: 1000)
        b.withUnsafeMutableBufferPointer { ctx.broadcast($0, root: root) }
        h.check(b.allSatisfy { $0 == Float(root) }, "broadcast floats from \(root)")
        var bytes: [UInt8] = r == root ? Array("bytes from the root".utf8) : []
        ctx.broadcast(&bytes, root: root)
        h.check(String(decoding: bytes, as: UTF8.self) == "bytes from the root", "broadcast bytes resize")
        let s = ctx.broadcast(r == root ? "config: lr 1e-5\nsteps: 10 ✓" : "x", root: root)
        h.check(s == "config: lr 1e-5\nsteps: 10 ✓", "broadcast string: \(s)")

        // The deterministic sum on exactly representable values equals the plain one.
        var o = (0..<999).map { Float(r + 1) * Float($0) }
        o.withUnsafeMutableBufferPointer { ctx.allreduceOrdered($0, average: false) }
        for i in 0..<999 { h.check(o[i] == tri * Float(i), "ordered sum at \(i): \(o[i])") }

        ctx.barrier()
        h.done("\(n) ranks, local \(ctx.localRank)/\(ctx.localSize) on rank 0, thread level \(ctx.threadLevel ?? -1)")
    }
}

struct BucketsCheck: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "buckets", abstract: "Overlapped bucketed reducer vs plain all-reduce of the whole block.")
    @Option(help: "Parameters.") var params = 300
    @Option(help: "Bucket cap in KiB.") var capKiB = 64
    @Option(help: "Steps (the last uses reduceAll, the one before leaves parameters unmarked).") var steps = 4
    @Flag(help: "Use the fixed-order reducer.") var fixedOrder = false

    func run() throws {
        let h = try Harness("buckets")
        let ctx = h.ctx, n = ctx.size
        // Sizes: mostly small, some zero, one larger than the cap (its own bucket).
        let key = CounterRNG.key(99)
        var sizes = (0..<params).map { i -> Int in
            let u = CounterRNG.uniform(key, UInt64(i))
            return u < 0.05 ? 0 : Int(u * u * 6000)
        }
        sizes[params / 3] = capKiB * 1024 / 4 * 3 + 5
        let total = sizes.reduce(0, +)
        let grads = Tensor(zeros: [total])
        let reducer = try GradientReducer(context: ctx, gradients: grads, parameterSizes: sizes,
                                          capBytes: capKiB * 1024, fixedOrder: fixedOrder)
        h.check(reducer.buckets.count > 5, "expected many buckets, got \(reducer.buckets.count)")
        var offsets = [Int](repeating: 0, count: params)
        for i in 1..<params { offsets[i] = offsets[i - 1] + sizes[i - 1] }

        for step in 0..<steps {
            let mine = rankData(total, rank: ctx.rank, seed: 5, step: step)
            var reference = mine
            ctx.allreduce(&reference)
            for i in 0..<total { reference[i] /= Float(n) }
            grads.data.update(from: mine, count: total)

            // "Backward": gradients appear in reverse order, with a rank-dependent shuffle so ranks
            // mark in different orders (the reducer must still pair the same buckets).
            var order = Array((0..<params).reversed())
            let sk = CounterRNG.key(7, UInt64(ctx.rank), UInt64(step))
            for i in stride(from: order.count - 1, to: 0, by: -1) where CounterRNG.uniform(sk, UInt64(i)) < 0.3 {
                order.swapAt(i, i - 1)
            }
            let skip = step == steps - 2 ? Set(order.suffix(7)) : []
            let timing: ReduceTiming
            if step == steps - 1 {
                timing = reducer.reduceAll()
            } else {
                for p in order where !skip.contains(p) {
                    // A little compute per parameter, so buckets go out while "backward" continues.
                    var acc: Float = 0
                    for j in 0..<(sizes[p] * 4) { acc += Float(j & 7) }
                    if acc < 0 { print(acc) }
                    reducer.markReady(p)
                }
                timing = reducer.finish()
            }
            h.check(timing.lateParameters == skip.count, "late parameters \(timing.lateParameters), expected \(skip.count)")
            var worst: Float = 0
            for i in 0..<total { worst = max(worst, abs(grads.data[i] - reference[i])) }
            // Two ranks: a + b is exact-commutative, so the plain path must match bit for bit; the
            // ordered path sums 0 + a + b, the same value. More ranks may associate differently.
            let tol: Float = n <= 2 ? 0 : 1e-5
            h.check(worst <= tol, "step \(step): max |reducer − allreduce| = \(worst) > \(tol)")
            h.say("step \(step): \(timing)")
        }
        reducer.close()
        h.done("\(reducer.buckets.count) buckets, \(params) params, \(total) floats, fixedOrder \(fixedOrder), \(steps) steps match")
    }
}

struct OrderedCheck: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ordered", abstract: "Fixed-order reduction equals the local ordered sum, bit for bit.")
    @Option var count = 200_003

    func run() throws {
        let h = try Harness("ordered")
        let ctx = h.ctx, n = ctx.size
        // Every rank regenerates every rank's data and computes the expected result locally.
        let all = (0..<n).map { rankData(count, rank: $0, seed: 11, wideRange: true) }
        var expected = [Float](repeating: 0, count: count)
        withPointers(all) { ptrs in expected.withUnsafeMutableBufferPointer { OrderedSum.sum(parts: ptrs, count: count, into: $0.baseAddress!, dividingBy: n) } }

        // The test can fail: summing in another order changes bits of this data.
        var reversed = [Float](repeating: 0, count: count)
        withPointers(all.reversed()) { ptrs in reversed.withUnsafeMutableBufferPointer { OrderedSum.sum(parts: ptrs, count: count, into: $0.baseAddress!, dividingBy: n) } }
        let orderSensitive = bitsEqual(expected, reversed, count)
        if n > 2 { h.check(orderSensitive > 0, "data is not order-sensitive; the check would prove nothing") }

        // 1. The context's ordered all-reduce.
        var direct = all[ctx.rank]
        direct.withUnsafeMutableBufferPointer { ctx.allreduceOrdered($0, average: true) }
        h.check(bitsEqual(direct, expected, count) == 0, "allreduceOrdered differs from the local ordered sum in \(bitsEqual(direct, expected, count)) elements")

        // 2. The fixed-order reducer at two bucket caps, parameters of assorted sizes.
        let key = CounterRNG.key(3)
        var sizes: [Int] = []
        var left = count
        var i: UInt64 = 0
        while left > 0 { let s = min(left, 1 + Int(CounterRNG.uniform(key, i) * 9000)); sizes.append(s); left -= s; i += 1 }
        for cap in [16 << 10, 1 << 20] {
            let g = Tensor(all[ctx.rank], shape: [count])
            let reducer = try GradientReducer(context: ctx, gradients: g, parameterSizes: sizes, capBytes: cap, fixedOrder: true)
            for p in sizes.indices.reversed() { reducer.markReady(p) }
            reducer.finish()
            let d = bitsEqual(g.data, expected, count)
            h.check(d == 0, "fixed-order reducer (cap \(cap) B, \(reducer.buckets.count) buckets) differs in \(d) elements")
            reducer.close()
        }
        // 3. And every rank holds the same bits.
        do { try expected.withUnsafeBufferPointer { try ctx.verifyIdentical($0, what: "reduced gradients") } }
        catch { h.check(false, "\(error)") }
        h.done("\(n) ranks, \(count) floats bit-identical to ((g0 + g1) + g2 …)/N at caps 16 KiB and 1 MiB; reversed rank order would differ in \(orderSensitive)")
    }
}

func withPointers<R>(_ arrays: [[Float]], _ body: ([UnsafePointer<Float>]) -> R) -> R {
    var ptrs: [UnsafePointer<Float>] = []
    func go(_ i: Int) -> R {
        if i == arrays.count { return body(ptrs) }
        return arrays[i].withUnsafeBufferPointer { ptrs.append($0.baseAddress!); return go(i + 1) }
    }
    return go(0)
}

struct VerifyCheck: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "verify", abstract: "verifyIdentical: passes on identical data, names the differing ranks otherwise.")
    @Flag(help: "Give the last rank different weights and abort the job, as the trainer would.") var abortOnMismatch = false

    func run() throws {
        let h = try Harness("verify")
        let ctx = h.ctx, n = ctx.size, last = n - 1
        let w = Tensor.randn([4096], seed: 7)
        if abortOnMismatch {
            if ctx.rank == last { w.data[100] = w.data[100].nextUp }
            do { try ctx.verifyIdentical(w, what: "weights") } catch { ctx.abort("\(error)") }
            h.done("no mismatch?!")
            return
        }
        do { try ctx.verifyIdentical(w, what: "weights") } catch { h.check(false, "identical weights rejected: \(error)") }
        try ctx.verifyIdentical("lr: 1e-5\nsteps: 10", what: "config")

        // One ulp of one element on the last rank.
        if ctx.rank == last { w.data[100] = w.data[100].nextUp }
        expectMismatch(h, groups: [Array(0..<last), [last]], mention: "rank \(last)") { try ctx.verifyIdentical(w, what: "weights") }

        // Named blocks: the error names the parameter.
        let a = Tensor.randn([300], seed: 1), b = Tensor.randn([500], seed: 2)
        if ctx.rank == last { b.data[499] += 1 }
        expectMismatch(h, groups: [Array(0..<last), [last]], mention: "unet.conv_in.weight") {
            try ctx.verifyIdentical(blocks: [("unet.time_proj.bias", UnsafeRawBufferPointer(a.buffer)),
                                             ("unet.conv_in.weight", UnsafeRawBufferPointer(b.buffer))], what: "parameters")
        }
        // Config: the error shows the differing line.
        let config = ctx.rank == last ? "stage: lowres\nbatch: 4\nlr: 2e-5\n" : "stage: lowres\nbatch: 4\nlr: 1e-5\n"
        expectMismatch(h, groups: [Array(0..<last), [last]], mention: "line 3") { try ctx.verifyIdentical(config, what: "config") }
        h.done("identical data passes; a 1-ulp difference, a changed parameter and a changed config line are named")
    }

    func expectMismatch(_ h: Harness, groups: [[Int]], mention: String, _ body: () throws -> Void) {
        do {
            try body()
            h.check(h.ctx.size == 1, "a difference on rank \(h.ctx.size - 1) was not detected")
        } catch let e as DistributedError {
            guard case .mismatch(_, let g, _) = e else { h.check(false, "unexpected error \(e)"); return }
            h.check(g == groups, "groups \(g), expected \(groups)")
            h.check(e.description.contains(mention), "message does not mention \(mention): \(e)")
            h.say("mismatch reported: \(e)")
        } catch { h.check(false, "unexpected error \(error)") }
    }
}
