// The engine benchmark: sgemm peak, conv2d and attention at SD1.5 shapes, as fractions of that peak.
// Scripts/bench-engine.sh runs it and the same shapes in PyTorch (if installed) for the ratio.
import ArgumentParser
import Foundation
import LeffaTensor

struct EngineBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "engine", abstract: "sgemm, conv2d and attention throughput.")
    @OptionGroup var options: BenchOptions

    struct Report: Encodable {
        var threads: Int
        var sgemmPeakGflops: Double
        var rows: [BenchRow]
        enum CodingKeys: String, CodingKey { case threads, sgemmPeakGflops = "sgemm_peak_gflops", rows }
    }

    func run() throws {
        options.apply()
        let reps = options.repeats
        print("leffa-bench engine: \(Parallel.threads) thread(s), median of \(reps) runs\n")
        var rows: [BenchRow] = []

        // Peak: a large square GEMM split over the kernel threads, exactly as the ops call it.
        let s = options.quick ? 512 : 2048
        let a = Tensor.randn([s, s], seed: 1), b = Tensor.randn([s, s], seed: 2), c = Tensor(zeros: [s, s])
        let tg = timeit(repeats: reps) { gemm(m: s, n: s, k: s, a: a.data, lda: s, b: b.data, ldb: s, c: c.data, ldc: s) }
        let peakRow = BenchRow(name: "sgemm (peak)", shape: "\(s)x\(s)x\(s)", gflop: 2 * pow(Double(s), 3) / 1e9, seconds: tg.median, bestSeconds: tg.best)
        rows.append(peakRow)

        // conv2d 3×3, stride 1, pad 1 (the UNet's resnet convolutions).
        let convShapes: [(Int, Int, Int, Int)] = options.quick ? [(1, 64, 32, 24)]
            : [(1, 320, 64, 48), (1, 320, 128, 96), (1, 640, 32, 24)]
        for (n, ch, h, w) in convShapes {
            let x = Tensor.randn([n, ch, h, w], seed: 3), wt = Tensor.randn([ch, ch, 3, 3], seed: 4, scale: 0.02)
            let bias = Tensor.randn([ch], seed: 5)
            let gflop = 2.0 * Double(n * ch * ch * 9 * h * w) / 1e9
            let shape = "B\(n) \(ch)->\(ch) \(h)x\(w)"
            let tf = timeit(repeats: reps) { _ = GradMode.withoutGrad { conv2d(x, wt, bias, stride: 1, padding: 1) } }
            rows.append(BenchRow(name: "conv2d 3x3 forward", shape: shape, gflop: gflop, seconds: tf.median, bestSeconds: tf.best))
            x.requiringGrad(); wt.requiringGrad(); bias.requiringGrad()
            let seed = Tensor.randn([n, ch, h, w], seed: 6)
            let tb = timeit(repeats: reps) {
                let y = conv2d(x, wt, bias, stride: 1, padding: 1)
                y.backward(seed)
            }
            // Backward alone: forward+backward minus the forward just measured.
            let bwd = max(tb.median - tf.median, 1e-9), bwdBest = max(tb.best - tf.best, 1e-9)
            rows.append(BenchRow(name: "conv2d 3x3 backward", shape: shape, gflop: 2 * gflop, seconds: bwd, bestSeconds: bwdBest))
            x.grad = nil; wt.grad = nil; bias.grad = nil
        }

        // Attention: the generative UNet's first level, n target tokens attending to 2n keys.
        let attnShapes: [(Int, Int, Int)] = options.quick ? [(512, 8, 40)] : [(3072, 8, 40), (12288, 8, 40)]
        for (nq, heads, d) in attnShapes {
            let m = 2 * nq, c = heads * d
            let q = Tensor.randn([1, nq, c], seed: 7), k = Tensor.randn([1, m, c], seed: 8), v = Tensor.randn([1, m, c], seed: 9)
            let fwdFlop = 4.0 * Double(nq) * Double(m) * Double(d) * Double(heads) / 1e9
            let shape = "n\(nq) m\(m) \(heads)x\(d)"
            let r = nq > 4096 ? max(1, reps / 2) : reps
            let tf = timeit(repeats: r) { _ = GradMode.withoutGrad { attention(q, k, v, heads: heads) } }
            rows.append(BenchRow(name: "attention forward", shape: shape, gflop: fwdFlop, seconds: tf.median, bestSeconds: tf.best))
            q.requiringGrad(); k.requiringGrad(); v.requiringGrad()
            let seed = Tensor.randn([1, nq, c], seed: 10)
            let tb = timeit(repeats: r) {
                let o = attention(q, k, v, heads: heads)
                o.backward(seed)
            }
            // Backward recomputes the scores and does four more products: 2.5× the forward FLOPs.
            let bwd = max(tb.median - tf.median, 1e-9), bwdBest = max(tb.best - tf.best, 1e-9)
            rows.append(BenchRow(name: "attention backward", shape: shape, gflop: 2.5 * fwdFlop, seconds: bwd, bestSeconds: bwdBest))
            q.grad = nil; k.grad = nil; v.grad = nil
        }

        // Fractions compare best times: on a shared machine the best run is the one least disturbed,
        // for the peak and for each case alike (the table also shows medians).
        let bestPeak = peakRow.gflop / peakRow.bestSeconds
        for i in rows.indices { rows[i].fractionOfPeak = (rows[i].gflop / rows[i].bestSeconds) / bestPeak }
        printTable(rows)
        try writeJSON(Report(threads: Parallel.threads, sgemmPeakGflops: bestPeak, rows: rows), to: options.json)
        print("\nwrote \(options.json)")
    }
}
