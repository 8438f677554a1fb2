// `leffa-bench kernels`: which OpenBLAS kernels this process runs and what the CPU offers
// (BLASKernels.swift restarts the executables with better ones when OpenBLAS fell back).
import ArgumentParser
import CBLAS
import LeffaTensor

struct KernelsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "Print the OpenBLAS kernel set in use (e.g. SkylakeX, Haswell, Zen).",
        discussion: "One word on stdout; with --verbose also the CPU's vector level, the attention kernels and OpenBLAS's build.")

    @Flag(help: "Also print the CPU's vector level and OpenBLAS's build configuration.")
    var verbose = false

    func run() {
        print(BLASKernels.coreName)
        if verbose {
            let level = ["none of AVX2/AVX-512", "AVX2 + FMA", "AVX-512"][Int(leffa_cpu_vector_level())]
            print("cpu: \(level)")
            print("attention: \(AttentionKernels.current.rawValue) (available: \(AttentionKernels.available.map(\.rawValue).joined(separator: ", ")))")
            print("openblas: \(String(cString: leffa_blas_config()))")
        }
    }
}
