// swift-tools-version:6.0
// The Leffa training system. One target per layer; each imports only targets above it:
//   shims (CBLAS, CMPI, CHDF5, CPNG, CJPEG) · CAVX512Kernels (one C kernel)
//   LeffaTensor (tensors, autograd, ops) · TensorBoard (event files; no dependencies)
//   SafeTensors · LeffaLayers · LeffaCheckpoint (HDF5) · LeffaDistributed (MPI transport)
//   LeffaModels (UNets, VAE, weights) · LeffaDiffusion (schedule, samplers, Leffa loss) · LeffaData
//   LeffaRunFormat (the run folder: config, state, heartbeat, locks, checkpoints, stage weights)
//   LeffaTraining (objective, DataParallel, trainer, worker) · LeffaRun (coordinator; no trainer, no MPI)
//   LeffaEval · LeffaCLI (shared command-line pieces)
//   executables: leffa-coord, leffa-worker, leffa-bench (argument parsing, one call into a library)
import PackageDescription

/// Numeric code is only usable optimised; -Ounchecked drops the overflow traps of hot index math.
/// On x86-64 the kernels target Haswell-class CPUs (AVX2 + FMA, every server CPU since 2013):
/// the vectorised exp of attention runs ~35 % faster than on the SSE2 baseline.
#if arch(x86_64)
let cpu = ["-target-cpu", "haswell"]
#else
let cpu: [String] = []
#endif
let fast: [SwiftSetting] = [
    .unsafeFlags(["-Ounchecked", "-wmo"] + cpu, .when(configuration: .release)),
]

/// A C library reached through pkg-config and a thin header of `static inline` functions
/// (macros such as MPI_COMM_WORLD do not import into Swift on their own).
func shim(_ name: String, _ pkg: String, apt: String) -> Target {
    .systemLibrary(name: name, path: "Sources/\(name)", pkgConfig: pkg, providers: [.apt([apt])])
}

let package = Package(
    name: "Leffa",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "LeffaTensor", targets: ["LeffaTensor"]),
        .library(name: "SafeTensors", targets: ["SafeTensors"]),
        .library(name: "LeffaData", targets: ["LeffaData"]),
        .library(name: "LeffaCheckpoint", targets: ["LeffaCheckpoint"]),
        .executable(name: "leffa-bench", targets: ["leffa-bench"]),
        .executable(name: "leffa-coord", targets: ["leffa-coord"]),
        .executable(name: "leffa-worker", targets: ["leffa-worker"]),
        .library(name: "LeffaDistributed", targets: ["LeffaDistributed"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        shim("CBLAS", "openblas", apt: "libopenblas-dev"),
        shim("CMPI", "ompi-c", apt: "libopenmpi-dev"),
        shim("CHDF5", "hdf5", apt: "libhdf5-dev"),
        shim("CPNG", "libpng", apt: "libpng-dev"),
        shim("CJPEG", "libjpeg", apt: "libjpeg62-turbo-dev"),

        // Attention's outer product for AVX-512 CPUs, in C so that only its functions are built for
        // AVX-512 (a per-function target attribute); chosen at run time (AttentionKernels.swift).
        .target(name: "CAVX512Kernels", cSettings: [.unsafeFlags(["-O2"])]),
        .target(name: "LeffaTensor", dependencies: ["CBLAS", "CAVX512Kernels"], swiftSettings: fast),

        .target(name: "SafeTensors", dependencies: ["LeffaTensor"], swiftSettings: fast),
        .target(name: "LeffaLayers", dependencies: ["LeffaTensor"], swiftSettings: fast),
        .target(name: "LeffaModels", dependencies: ["LeffaLayers", "SafeTensors", "Yams"], swiftSettings: fast),
        .target(name: "LeffaDiffusion", dependencies: ["LeffaLayers"], swiftSettings: fast),
        // The run folder's formats: config, state, heartbeat, locks, training checkpoints, stage weights.
        .target(name: "LeffaRunFormat", dependencies: ["LeffaModels", "LeffaDiffusion", "SafeTensors", "LeffaData", "LeffaCheckpoint", "Yams"],
                swiftSettings: fast),
        // TensorBoard event files (CRC-32C, hand-written protobuf, TFRecord framing): no dependencies.
        .target(name: "TensorBoard"),
        .target(name: "LeffaTraining", dependencies: ["LeffaRunFormat", "LeffaModels", "LeffaDiffusion", "SafeTensors", "LeffaData", "LeffaCheckpoint", "LeffaDistributed", "TensorBoard"], swiftSettings: fast),
        // Held-out evaluation: inference over a split, image metrics (PSNR, SSIM), the baseline.
        .target(name: "LeffaEval", dependencies: ["LeffaTraining", "LeffaRunFormat", "LeffaModels", "LeffaDiffusion", "LeffaData", "LeffaDistributed"], swiftSettings: fast),
        .executableTarget(
            name: "leffa-worker",
            dependencies: ["LeffaTraining", "LeffaRunFormat", "LeffaCLI", "LeffaDistributed", "LeffaData", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: fast),
        // Orchestration: run state, stage transitions, driving worker processes.
        // What the executables' command lines share: thread option, typed sizes and values, errors, progress.
        .target(name: "LeffaCLI", dependencies: ["LeffaTensor", "LeffaData", "LeffaRunFormat", .product(name: "ArgumentParser", package: "swift-argument-parser"), .product(name: "Logging", package: "swift-log")],
                swiftSettings: fast),
        .target(name: "LeffaRun", dependencies: ["LeffaRunFormat", "LeffaCheckpoint", "LeffaData"], swiftSettings: fast),
        .executableTarget(
            name: "leffa-coord",
            dependencies: ["LeffaTraining", "LeffaRunFormat", "LeffaCLI", "LeffaEval", "LeffaRun", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: fast),

        .target(name: "LeffaData", dependencies: ["LeffaTensor", "SafeTensors", "CPNG", "CJPEG"], swiftSettings: fast),

        .target(name: "LeffaCheckpoint", dependencies: ["LeffaTensor", "CHDF5"], swiftSettings: fast),
        .target(name: "LeffaDistributed", dependencies: ["LeffaTensor", "CMPI"], swiftSettings: fast),
        // A test driver, not a product: EndToEndTests launch it under mpirun.
        .executableTarget(
            name: "leffa-mpi-check",
            dependencies: ["LeffaDistributed", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Tests/leffa-mpi-check", swiftSettings: fast),

        .executableTarget(
            name: "leffa-bench",
            dependencies: ["LeffaTensor", "LeffaTraining", "LeffaRunFormat", "LeffaCLI", "LeffaEval", "LeffaDistributed", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                           .product(name: "Yams", package: "Yams")],
            swiftSettings: fast),

        .target(name: "TestSupport", dependencies: ["LeffaTensor"], path: "Tests/TestSupport", swiftSettings: fast),
        // Tiny training runs for the trainer's, the coordinator's and the commands' tests.
        .target(name: "RunTestSupport", dependencies: ["LeffaTensor", "LeffaData", "LeffaModels", "LeffaTraining", "LeffaRunFormat"],
                path: "Tests/RunTestSupport", swiftSettings: fast),
        .testTarget(name: "LeffaTensorTests", dependencies: ["LeffaTensor", "TestSupport"], swiftSettings: fast),
        .testTarget(name: "LeffaLayersTests", dependencies: ["LeffaLayers", "TestSupport"], swiftSettings: fast),
        .testTarget(name: "LeffaDiffusionTests", dependencies: ["LeffaDiffusion", "TestSupport"], swiftSettings: fast),
        .testTarget(name: "LeffaModelTests", dependencies: ["LeffaTraining", "LeffaRunFormat", "TestSupport"], swiftSettings: fast),
        .testTarget(name: "SafeTensorsTests", dependencies: ["SafeTensors", "TestSupport"], swiftSettings: fast),
        .testTarget(name: "LeffaDataTests", dependencies: ["LeffaData", "TestSupport"], exclude: ["Fixtures"], swiftSettings: fast),
        .testTarget(name: "LeffaCheckpointTests", dependencies: ["LeffaCheckpoint", "TestSupport"], swiftSettings: fast),
        .testTarget(name: "LeffaDistributedTests", dependencies: ["LeffaDistributed", "LeffaCheckpoint", "LeffaRunFormat", "TestSupport"], swiftSettings: fast),
        .testTarget(name: "LeffaRunTests", dependencies: ["LeffaRun", "LeffaTraining", "LeffaRunFormat", "TestSupport", "RunTestSupport"], swiftSettings: fast),
        .testTarget(name: "LeffaTrainingTests", dependencies: ["LeffaTraining", "LeffaRunFormat", "TensorBoard", "TestSupport", "RunTestSupport"], exclude: ["Fixtures"], swiftSettings: fast),
        .testTarget(name: "LeffaEvalTests", dependencies: ["LeffaEval", "LeffaTraining", "LeffaRunFormat", "LeffaModels", "LeffaData", "TestSupport"],
                    exclude: ["Fixtures"], swiftSettings: fast),
        // The built commands run as a user runs them (Binaries.swift finds and launches them):
        // Scripts/test.sh builds them first; a missing one fails the test, never skips it.
        .testTarget(name: "EndToEndTests",
                    dependencies: ["LeffaTensor", "SafeTensors", "LeffaData", "LeffaModels", "LeffaCheckpoint",
                                   "LeffaRunFormat", "LeffaTraining", "LeffaEval", "LeffaRun", "TestSupport", "RunTestSupport"],
                    swiftSettings: fast),
        .testTarget(name: "TensorBoardTests", dependencies: ["TensorBoard"], exclude: ["Fixtures"]),
        .testTarget(name: "ShimTests", dependencies: ["CBLAS", "CMPI", "CHDF5", "CPNG", "CJPEG"]),
    ],
    swiftLanguageModes: [.v5]
)
