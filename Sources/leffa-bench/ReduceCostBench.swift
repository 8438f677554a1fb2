// The reduction's cost per byte on this machine, run under mpirun by `leffa-bench scaling`: the
// shared-memory reduce-scatter of a gradient block (SharedBlocks; with the node's one shared copy of
// the training state each rank then updates its own shard, so nothing is gathered) and MPI_Allreduce of the same block (what crosses nodes; with `--mca btl self,tcp` it goes
// over TCP even between ranks of this machine). Times are the slowest rank's medians.
import ArgumentParser
import Foundation
import LeffaTensor
import LeffaDistributed

struct ReduceCostBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reduce-cost",
        abstract: "Seconds per gradient byte of the shared-memory and MPI reductions (run under mpirun).")
    @OptionGroup var options: BenchOptions
    @Option(help: "Gradient block size in MiB.") var mib: Int = 256

    struct Report: Codable {
        var ranks: Int, bytes: Int, sharedSeconds: Double?, mpiSeconds: Double
        enum CodingKeys: String, CodingKey {
            case ranks, bytes, sharedSeconds = "shared_seconds", mpiSeconds = "mpi_seconds"
        }
    }

    func run() throws {
        options.apply()
        let ctx = try MPIContext.start()
        let report = try measure(ctx)
        if ctx.rank == 0 {
            print(
                String(
                    format: "reduce-cost: %d ranks, %d MiB: shared memory %@, MPI all-reduce %.1f ms", report.ranks,
                    mib,
                    report.sharedSeconds.map { String(format: "%.1f ms", 1e3 * $0) } ?? "unavailable",
                    1e3 * report.mpiSeconds))
            try writeJSON(
                report,
                to: options.jsonPath("reduce-cost"))
        }
        ctx.finalize()
    }

    func measure(_ ctx: MPIContext) throws -> Report {
        let count = (mib << 20) / 4
        var shared: Double? = nil
        if SharedBlocks.unavailableReason(context: ctx, count: count) == nil {
            let blocks = try SharedBlocks(context: ctx, count: count)
            blocks.block.base.update(repeating: 1, count: count)
            shared = median(ctx) { _ = blocks.reduce(0..<count, gather: false) }
        }
        let buffer = Storage(count: count)
        buffer.base.update(repeating: 1, count: count)
        let mpi = median(ctx) { ctx.allreduce(buffer.buffer) }
        return Report(ranks: ctx.size, bytes: count * 4, sharedSeconds: shared, mpiSeconds: mpi)
    }

    /// The slowest rank's median over `repeats` runs after one warm-up, each started together.
    func median(_ ctx: MPIContext, _ body: () -> Void) -> Double {
        var times: [Double] = []
        for i in 0...max(options.repeats, 1) {
            ctx.barrier()
            let t0 = DispatchTime.now().uptimeNanoseconds
            body()
            ctx.barrier()
            if i > 0 { times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9) }
        }
        return ctx.allreduce(times.sorted()[times.count / 2], .max)
    }
}
