// The engine's thread pool contract.
//  1. Non-BLAS kernels split work with `Parallel.for`; OpenBLAS itself runs single-threaded and
//     large GEMMs are split across the same threads by `gemm` (BLAS.swift), so the two never
//     oversubscribe the cores between them.
//  2. The thread count comes from `--threads`/`LEFFA_THREADS`, else cores ÷ MPI ranks on this node.
//  3. Results never depend on the thread count: a reduction that crosses chunks uses a fixed chunk
//     size and combines in chunk order (same seed, same bits, on any machine size).
import Dispatch
import Foundation
import CBLAS

public enum Parallel {
    nonisolated(unsafe) private static var _threads: Int = defaultThreads()

    /// Threads used by kernels. Setting it also pins OpenBLAS to one thread (see contract 1).
    public static var threads: Int {
        get { _threads }
        set {
            precondition(newValue >= 1, "Parallel.threads must be at least 1, got \(newValue)")
            _threads = newValue
            leffa_blas_set_threads(1)
        }
    }

    /// `LEFFA_THREADS` if set, else cores on this node divided by the local MPI rank count.
    public static func defaultThreads() -> Int {
        leffa_blas_set_threads(1)
        let env = ProcessInfo.processInfo.environment
        if let s = env["LEFFA_THREADS"], let n = Int(s), n >= 1 { return n }
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let ranks = ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"]
            .compactMap { env[$0].flatMap(Int.init) }.first ?? 1
        return max(1, cores / max(ranks, 1))
    }

    /// Runs `body` over `0..<count` split into at most `threads` contiguous chunks of at least
    /// `grain` items. Chunks depend on `threads`, so bodies must not reduce across chunks.
    @inlinable
    public static func `for`(_ count: Int, grain: Int = 1, _ body: (Range<Int>) -> Void) {
        if count <= 0 { return }
        let chunks = min(threads, max(1, count / max(grain, 1)))
        if chunks <= 1 { body(0..<count); return }
        withoutActuallyEscaping(body) { body in
            DispatchQueue.concurrentPerform(iterations: chunks) { c in
                let lo = count * c / chunks, hi = count * (c + 1) / chunks
                if lo < hi { body(lo..<hi) }
            }
        }
    }

    /// Runs `body(i)` for every `i` in `0..<count`, items spread over the threads.
    @inlinable
    public static func each(_ count: Int, _ body: (Int) -> Void) {
        self.for(count) { r in for i in r { body(i) } }
    }
}
