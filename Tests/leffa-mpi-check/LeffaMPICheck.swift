// leffa-mpi-check: the test driver that EndToEndTests (MPIRunTests) launch under mpirun, one mode
// per property of LeffaDistributed, plus a throughput bench. Each mode prints "<mode> OK ..." on rank 0
// and exits 0, or aborts the job with "rank R: <mode>: <what failed>". Not a training program.
//
//   OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
//     mpirun --oversubscribe -np 2 .build/release/leffa-mpi-check <mode>
import ArgumentParser
import Foundation
import LeffaDistributed
import LeffaTensor

@main
struct LeffaMPICheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "leffa-mpi-check",
        abstract: "Checks LeffaDistributed under mpirun.",
        subcommands: [AllreduceCheck.self, BucketsCheck.self, OrderedCheck.self, VerifyCheck.self,
                      DieCheck.self, HangCheck.self, SharedCheck.self, MPIBench.self])
}

/// The context every mode starts with, and the check that aborts the job on failure.
struct Harness {
    let ctx: MPIContext
    let mode: String

    init(_ mode: String) throws {
        self.mode = mode
        ctx = try MPIContext.start()
        // Kernels (hashing, ordered sums) get this node's share of the cores.
        Parallel.threads = Parallel.defaultThreads()
    }

    func check(_ ok: Bool, _ message: @autoclosure () -> String) {
        if !ok { ctx.abort("\(mode): \(message())") }
    }

    /// Prints on rank 0 only.
    func say(_ s: String) {
        if ctx.rank == 0 { print(s); fflush(stdout) }
    }

    func done(_ summary: String) {
        ctx.barrier()
        say("\(mode) OK: \(summary)")
        ctx.finalize()
    }
}

/// Rank r's reproducible "gradient" of n floats: any rank can regenerate any other rank's data.
func rankData(_ n: Int, rank: Int, seed: UInt64, step: Int = 0, wideRange: Bool = false) -> [Float] {
    let key = CounterRNG.key(seed, UInt64(rank), UInt64(step))
    return (0..<n).map { i in
        let g = CounterRNG.normal(key, UInt64(i))
        guard wideRange else { return g }
        // Magnitudes over 12 decades make float sums depend on their order.
        let e = Int(CounterRNG.uniform(key, UInt64(i) &+ 1 << 40) * 12) - 4
        return g * Float(pow(10.0, Double(e)))
    }
}

func bitsEqual(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Int {
    var differ = 0
    for i in 0..<n where a[i].bitPattern != b[i].bitPattern { differ += 1 }
    return differ
}
