// bench: all-reduce throughput over a bucket-size sweep (plain MPI_Allreduce and the ordered
// reduction), then a simulated backward with the overlapped reducer vs reduceAll at several caps.
// Throwaway numbers for choosing the bucket cap; times are the slowest rank's.
import ArgumentParser
import Foundation
import LeffaDistributed
import LeffaTensor

struct MPIBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench", abstract: "All-reduce throughput by size, and overlap of the bucketed reducer.")
    @Option(help: "Largest all-reduce in MiB.") var maxMiB = 64
    @Option(help: "Model size for the overlap table, in millions of floats.") var modelMFloats = 20
    @Option(help: "Simulated backward work per gradient element (multiply-adds).") var work = 40
    @Flag var quick = false

    func run() throws {
        let h = try Harness("bench")
        let ctx = h.ctx, n = ctx.size
        h.say("leffa-mpi-check bench: \(n) ranks, \(Parallel.threads) kernel thread(s) per rank\n")
        h.say("size        plain ms   algbw GB/s  busbw GB/s   ordered ms  busbw GB/s    shared ms  busbw GB/s")
        var bytes = 4 << 10
        let maxBytes = (quick ? 4 : maxMiB) << 20
        // The shared-memory reduction (all ranks on this node): the block lives in the window.
        let shared = SharedBlocks.unavailableReason(context: ctx, count: maxBytes / 4) == nil
            ? try SharedBlocks(context: ctx, count: maxBytes / 4) : nil
        shared?.block.base.update(repeating: 1, count: maxBytes / 4)
        while bytes <= maxBytes {
            let count = bytes / 4
            let buf = UnsafeMutableBufferPointer<Float>.allocate(capacity: count)
            buf.initialize(repeating: 1)
            let reps = max(3, min(200, (256 << 20) / bytes))
            let plain = timeCollective(ctx, reps: reps) { ctx.allreduce(buf) }
            let ordered = timeCollective(ctx, reps: reps) { ctx.allreduceOrdered(buf) }
            let sharedTime = shared.map { s in timeCollective(ctx, reps: reps) { s.reduce(0..<count) } } ?? .nan
            buf.deallocate()
            let bus = 2 * Double(n - 1) / Double(n)
            h.say(pad(sizeName(bytes), 10) + String(format: " %9.3f %12.2f %11.2f %12.3f %11.2f %12.3f %11.2f",
                         plain * 1e3, Double(bytes) / plain / 1e9, bus * Double(bytes) / plain / 1e9,
                         ordered * 1e3, bus * Double(bytes) / ordered / 1e9, sharedTime * 1e3, bus * Double(bytes) / sharedTime / 1e9))
            bytes *= 4
        }

        // Overlap: "backward" writes each parameter's gradient with `work` multiply-adds per element,
        // last parameter first, marking it ready; baseline marks nothing and calls reduceAll().
        let total = (quick ? 2 : modelMFloats) * 1_000_000
        let key = CounterRNG.key(1)
        var sizes: [Int] = []
        var left = total
        var i: UInt64 = 0
        while left > 0 { let s = min(left, 1000 + Int(pow(CounterRNG.uniform(key, i), 3) * 1_200_000)); sizes.append(s); left -= s; i += 1 }
        let grads = Tensor(zeros: [total])
        var offsets = [0]
        for s in sizes { offsets.append(offsets.last! + s) }
        h.say("\noverlap: \(sizes.count) params, \(total / 1_000_000)M floats (\((total * 4) >> 20) MiB), \(work) madds/element of backward")
        h.say("cap        mode           step ms   wait ms  wait %   comm ms")
        for capMiB in quick ? [1.0, 25.0] : [0.25, 1.0, 4.0, 25.0, 100.0] {
            for fixedOrder in [false, true] {
                let reducer = try GradientReducer(context: ctx, gradients: grads, parameterSizes: sizes,
                                                  capBytes: Int(capMiB * Double(1 << 20)), fixedOrder: fixedOrder)
                for overlapped in [false, true] {
                    var rows: [(Double, ReduceTiming)] = []
                    for _ in 0..<5 {
                        ctx.barrier()
                        let t0 = Date()
                        for p in sizes.indices.reversed() {
                            fakeBackward(grads.data + offsets[p], sizes[p], work: work, seed: Float(p))
                            if overlapped { reducer.markReady(p) }
                        }
                        let t = overlapped ? reducer.finish() : reducer.reduceAll()
                        rows.append((Date().timeIntervalSince(t0), t))
                    }
                    let (step, t) = rows.sorted { $0.0 < $1.0 }[rows.count / 2]
                    let slowest = ctx.allreduce(step, .max), wait = ctx.allreduce(t.waitSeconds, .max)
                    let mode = (overlapped ? "overlap" : "reduceAll") + (fixedOrder ? "/ord" : "")
                    h.say(pad(sizeName(Int(capMiB * Double(1 << 20))), 10) + " " + pad(mode, 13) + String(format: "%8.1f %9.1f %6.1f %9.1f",
                                 slowest * 1e3, wait * 1e3, 100 * wait / slowest, t.commSeconds * 1e3))
                }
                reducer.close()
            }
        }
        h.done("bench finished")
    }
}

/// Seconds per call, the slowest rank's median over `reps` after a warm-up.
func timeCollective(_ ctx: MPIContext, reps: Int, _ body: () -> Void) -> Double {
    body(); body()
    var times: [Double] = []
    for _ in 0..<reps {
        ctx.barrier()
        let t0 = Date()
        body()
        times.append(Date().timeIntervalSince(t0))
    }
    times.sort()
    return ctx.allreduce(times[times.count / 2], .max)
}

@inline(never)
func fakeBackward(_ g: UnsafeMutablePointer<Float>, _ n: Int, work: Int, seed: Float) {
    for j in 0..<n {
        var x = seed + Float(j & 1023) * 1e-3
        for _ in 0..<work { x = x * 0.999 + 1e-4 }
        g[j] = x
    }
}

func sizeName(_ bytes: Int) -> String {
    bytes >= 1 << 20 ? (bytes % (1 << 20) == 0 ? "\(bytes >> 20) MiB" : String(format: "%.2f MiB", Double(bytes) / Double(1 << 20)))
        : "\(bytes >> 10) KiB"
}

func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
