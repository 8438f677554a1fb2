// Which OpenBLAS kernels run, and mending OpenBLAS's choice on CPUs newer than the library.
// OpenBLAS picks its kernels once, when it loads, from the CPU model number. A model it does
// not know falls back to its SSE3 "Prescott" kernels: Debian 12's OpenBLAS 0.3.21 does that on
// a 5th-generation Xeon (family 6, model 207), where sgemm then runs at 31 GFLOP/s per core
// instead of 131 with its AVX-512 kernels (`leffa-bench engine --quick --threads 1`, measured
// 2026-12-05). The only public way to choose is the environment variable OPENBLAS_CORETYPE,
// read at load time, so the executables restart themselves once with it set (before MPI or
// anything else starts).

import CBLAS
import Foundation

public enum BLASKernels {
    /// OpenBLAS's name for the kernels it uses ("Haswell", "SkylakeX", "Zen", "Prescott", …).
    public static var coreName: String { String(cString: leffa_blas_core()) }

    /// Kernel sets OpenBLAS falls back to for CPUs it does not recognise (its generic x86-64
    /// ones), which a CPU with AVX2 or AVX-512 outruns by 2–4×.
    static let fallbacks: Set<String> = ["Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom"]

    /// The kernel set to ask for when OpenBLAS fell back although the CPU can do better; nil when
    /// its choice stands (a recognised CPU, or OPENBLAS_CORETYPE already set by the user).
    public static func betterCore(current: String, vectorLevel: Int, environment: [String: String]) -> String? {
        if environment["OPENBLAS_CORETYPE"] != nil || !fallbacks.contains(current) { return nil }
        switch vectorLevel {
        case 2: return "SkylakeX"
        case 1: return "Haswell"
        default: return nil
        }
    }

    /// Restarts this process with OPENBLAS_CORETYPE set when `betterCore` says so; otherwise
    /// returns. Call first in `main`, before threads, MPI or open files matter: exec keeps the
    /// process id, arguments, environment and open descriptors.
    public static func restartWithBetterKernelsIfNeeded() {
        let env = ProcessInfo.processInfo.environment
        guard let core = betterCore(current: coreName, vectorLevel: Int(leffa_cpu_vector_level()), environment: env)
        else { return }
        setenv("OPENBLAS_CORETYPE", core, 1)
        let args = CommandLine.arguments
        var argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        execv("/proc/self/exe", &argv)
        // exec failed (no /proc): carry on with the slower kernels rather than not at all.
        unsetenv("OPENBLAS_CORETYPE")
        for p in argv { free(p) }
    }
}
