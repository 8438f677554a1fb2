// The engine benchmark: sgemm peak, conv2d and attention at SD1.5 shapes, as fractions of that peak
// measured in the same rounds.
// Scripts/bench-engine.sh runs it and the same shapes in PyTorch (if installed) for the ratio.
import ArgumentParser
import Foundation
import LeffaTensor

struct EngineBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "engine", abstract: "sgemm, conv2d and attention throughput.")
    @OptionGroup var options: BenchOptions

    struct Report: Encodable {
        var threads: Int
        var sgemmPeakGflops: Double
        var blasKernels: String, attentionKernels: String
        var rows: [BenchRow]
        enum CodingKeys: String, CodingKey {
            case threads, sgemmPeakGflops = "sgemm_peak_gflops", blasKernels = "blas_kernels",
                attentionKernels = "attention_kernels", rows
        }
    }

    func run() throws {
        options.apply()
        let reps = options.repeats
        print(
            "leffa-bench engine: \(Parallel.threads) thread(s), OpenBLAS \(BLASKernels.coreName) kernels, "
                + "attention \(AttentionKernels.current.rawValue) kernels, median of \(reps) runs\n")
        var rows: [BenchRow] = []

        // Peak: a large square GEMM split over the kernel threads, exactly as the ops call it. It is
        // timed in the same rounds as every case (`timeInterleaved`), and each case's fraction is
        // against the peak of its own rounds: on this shared machine a slow spell (another VM on
        // the core) then lowers both sides alike instead of skewing the ratio.
        let s = options.quick ? 512 : 2048
        let a = Tensor.randn([s, s], seed: 1), b = Tensor.randn([s, s], seed: 2), c = Tensor(zeros: [s, s])
        let peakGflop = 2 * pow(Double(s), 3) / 1e9
        let peak: () -> Void = { gemm(m: s, n: s, k: s, a: a.data, lda: s, b: b.data, ldb: s, c: c.data, ldc: s) }
        var peakTimes: [(median: Double, best: Double)] = []
        /// Times `cases` interleaved with the peak; returns the cases' times and the peak's best.
        func withPeak(repeats: Int, _ cases: [() -> Void]) -> (
            times: [(median: Double, best: Double)], peakBest: Double
        ) {
            let t = timeInterleaved(repeats: repeats, [peak] + cases)
            peakTimes.append(t[0])
            return (Array(t.dropFirst()), t[0].best)
        }
        func row(_ name: String, _ shape: String, _ gflop: Double, _ median: Double, _ best: Double, peakBest: Double)
            -> BenchRow
        {
            var r = BenchRow(name: name, shape: shape, gflop: gflop, seconds: median, bestSeconds: best)
            r.fractionOfPeak = (gflop / best) / (peakGflop / peakBest)
            return r
        }

        // conv2d 3×3, stride 1, pad 1 (the UNet's resnet convolutions).
        let convShapes: [(Int, Int, Int, Int)] =
            options.quick
            ? [(1, 64, 32, 24)]
            : [(1, 320, 64, 48), (1, 320, 128, 96), (1, 640, 32, 24)]
        for (n, ch, h, w) in convShapes {
            let x = Tensor.randn([n, ch, h, w], seed: 3).requiringGrad(),
                wt = Tensor.randn([ch, ch, 3, 3], seed: 4, scale: 0.02).requiringGrad()
            let bias = Tensor.randn([ch], seed: 5).requiringGrad()
            let gflop = 2.0 * Double(n * ch * ch * 9 * h * w) / 1e9
            let shape = "B\(n) \(ch)->\(ch) \(h)x\(w)"
            let seed = Tensor.randn([n, ch, h, w], seed: 6)
            let (t, pk) = withPeak(
                repeats: reps,
                [
                    { _ = GradMode.withoutGrad { conv2d(x, wt, bias, stride: 1, padding: 1) } },
                    { conv2d(x, wt, bias, stride: 1, padding: 1).backward(seed) }
                ])
            rows.append(row("conv2d 3x3 forward", shape, gflop, t[0].median, t[0].best, peakBest: pk))
            // Backward alone: forward+backward minus the forward.
            rows.append(
                row(
                    "conv2d 3x3 backward", shape, 2 * gflop, max(t[1].median - t[0].median, 1e-9),
                    max(t[1].best - t[0].best, 1e-9), peakBest: pk))
        }

        // Attention: the generative UNet's first level, n target tokens attending to 2n keys; with
        // the CPU's best kernels, then (rows marked with their name) any other kernels it can run.
        let attnShapes: [(Int, Int, Int)] = options.quick ? [(512, 8, 40)] : [(3072, 8, 40), (12288, 8, 40)]
        let best = AttentionKernels.current
        for kernels in [best] + AttentionKernels.available.filter({ $0 != best }) {
            AttentionKernels.current = kernels
            let marked = kernels == best ? "" : " (\(kernels.label))"
            for (nq, heads, d) in attnShapes {
                let m = 2 * nq, c = heads * d
                let q = Tensor.randn([1, nq, c], seed: 7).requiringGrad(),
                    k = Tensor.randn([1, m, c], seed: 8).requiringGrad()
                let v = Tensor.randn([1, m, c], seed: 9).requiringGrad()
                let fwdFlop = 4.0 * Double(nq) * Double(m) * Double(d) * Double(heads) / 1e9
                let shape = "n\(nq) m\(m) \(heads)x\(d)"
                let seed = Tensor.randn([1, nq, c], seed: 10)
                let (t, pk) = withPeak(
                    repeats: nq > 4096 ? max(1, reps / 2) : reps,
                    [
                        { _ = GradMode.withoutGrad { attention(q, k, v, heads: heads) } },
                        { attention(q, k, v, heads: heads).backward(seed) }
                    ])
                let (forward, backward) =
                    marked.isEmpty ? ("attention forward", "attention backward") : ("attention fwd" + marked, "attention bwd" + marked)
                rows.append(row(forward, shape, fwdFlop, t[0].median, t[0].best, peakBest: pk))
                // Backward recomputes the scores and does four more products: 2.5× the forward FLOPs
                // (FlashAttention-2's convention).
                rows.append(
                    row(
                        backward, shape, 2.5 * fwdFlop, max(t[1].median - t[0].median, 1e-9),
                        max(t[1].best - t[0].best, 1e-9), peakBest: pk))
            }
        }
        AttentionKernels.current = best

        // The Leffa flow at a probed layer: the same queries over the reference half of the keys at
        // temperature 2 with values = coordinates, once as a second attention (the loss's old way)
        // and once read from the main attention's scores. Fractions count the main attention's
        // FLOPs only, so they say how much the flow slows a probed layer.
        let (nq, heads, d) = attnShapes[0]
        let m = 2 * nq, width = heads * d
        let fq = Tensor.randn([1, nq, width], seed: 7).requiringGrad(),
            fk = Tensor.randn([1, m, width], seed: 8).requiringGrad()
        let fv = Tensor.randn([1, m, width], seed: 9).requiringGrad()
        let coords = Tensor.randn([1, nq, heads * 2], seed: 11), seedOut = Tensor.randn([1, nq, width], seed: 10)
        let seedFlow = Tensor.randn([1, nq, heads * 2], seed: 12)
        let tau: Float = 2, flowScale = 1 / (Float(d).squareRoot() * tau)
        let flop = 3.5 * 4.0 * Double(nq) * Double(m) * Double(d) * Double(heads) / 1e9
        let flowShape = "n\(nq) m\(m) \(heads)x\(d)"
        let (tf, pkf) = withPeak(
            repeats: reps,
            [
                { sum(attention(fq, fk, fv, heads: heads) * seedOut).backward() },
                {
                    let o = attention(fq, fk, fv, heads: heads)
                    let flow = attention(
                        fq, slice(fk, dim: 1, start: nq, length: nq), coords, heads: heads, scale: flowScale)
                    (sum(o * seedOut) + sum(flow * seedFlow)).backward()
                },
                {
                    let (o, flow) = attention(
                        fq, fk, fv, heads: heads, sharing: SharedScores(keys: nq..<m, temperature: tau, values: coords))
                    (sum(o * seedOut) + sum(flow * seedFlow)).backward()
                }
            ])
        for (i, name) in ["attention fwd+bwd", "+ flow, separate", "+ flow, shared scores"].enumerated() {
            rows.append(row(name, flowShape, flop, tf[i].median, tf[i].best, peakBest: pkf))
        }
        let flowSeparate = 100 * (tf[1].best / tf[0].best - 1), flowShared = 100 * (tf[2].best / tf[0].best - 1)

        let peakMedian = peakTimes.map(\.median).sorted()[peakTimes.count / 2]
        let peakBest = peakTimes.map(\.best).min()!
        rows.insert(
            BenchRow(
                name: "sgemm (peak)", shape: "\(s)x\(s)x\(s)", gflop: peakGflop, seconds: peakMedian,
                bestSeconds: peakBest, fractionOfPeak: 1), at: 0)
        printTable(rows)
        print(
            String(
                format:
                    "\nLeffa flow on a probed layer (best times): +%.1f %% as a separate attention, +%.1f %% from shared scores",
                flowSeparate, flowShared))
        try writeJSON(
            Report(
                threads: Parallel.threads, sgemmPeakGflops: peakGflop / peakBest, blasKernels: BLASKernels.coreName,
                attentionKernels: best.rawValue, rows: rows), to: options.jsonPath("engine"))
        print("\nwrote \(options.jsonPath("engine"))")
    }
}
