// The engine's thread pool contract.
//  1. Non-BLAS kernels split work with `Parallel.for`; OpenBLAS itself runs single-threaded and
//     large GEMMs are split across the same threads by `gemm` (BLAS.swift), so the two never
//     oversubscribe the cores between them.
//  2. The thread count comes from `--threads`/`LEFFA_THREADS`, else cores ÷ MPI ranks on this node,
//     capped by the CPUs the process is bound to.
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

    /// `LEFFA_THREADS` if set, else cores on this node divided by the local MPI rank count, but
    /// no more than the CPUs this process may run on (mpirun binds each rank to one core when
    /// -np ≤ 2: more threads than that would share the core and run slower than one).
    public static func defaultThreads() -> Int {
        leffa_blas_set_threads(1)
        return threadCount(
            environment: ProcessInfo.processInfo.environment, cores: ProcessInfo.processInfo.activeProcessorCount,
            allowed: allowedCPUs())
    }

    /// The rule behind `defaultThreads`, on given facts.
    public static func threadCount(environment env: [String: String], cores: Int, allowed: Int?) -> Int {
        if let s = env["LEFFA_THREADS"], let n = Int(s), n >= 1 { return n }
        let share = fairShare(environment: env, cores: cores)
        return max(1, min(share, allowed ?? share))
    }

    /// Cores on this node divided by the ranks on it.
    public static func fairShare(environment env: [String: String], cores: Int) -> Int {
        let ranks =
            ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"]
            .compactMap { env[$0].flatMap(Int.init) }.first ?? 1
        return max(1, cores / max(ranks, 1))
    }

    /// How many CPUs this process may run on (its affinity mask, e.g. set by mpirun's binding or
    /// taskset), from /proc/self/status; nil where that is not available.
    public static func allowedCPUs(status: String? = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8))
        -> Int?
    {
        guard let line = status?.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed_list:") }) else {
            return nil
        }
        var n = 0
        for part in line.dropFirst("Cpus_allowed_list:".count).trimmingCharacters(in: .whitespaces).split(
            separator: ",")
        {
            let ends = part.split(separator: "-").map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard let lo = ends.first ?? nil, let hi = ends.last ?? nil, ends.count <= 2, hi >= lo else { return nil }
            n += hi - lo + 1
        }
        return n > 0 ? n : nil
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
