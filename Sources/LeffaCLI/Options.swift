// What every executable's command line shares: the kernel thread option, image sizes and fixed
// value sets as typed arguments (so `--help` lists the values), and one way to report an error.
import ArgumentParser
import Foundation
import LeffaTensor
import LeffaData
import LeffaRunFormat

/// What `--version` prints on every executable.
public let leffaVersion = "leffa 0.18.0 (run format \(RunState.formatVersion))"

/// Options for the kernel thread count, shared by commands that compute.
public struct ThreadOptions: ParsableArguments {
    @Option(help: "Kernel threads (default: LEFFA_THREADS, else cores ÷ local MPI ranks).")
    public var threads: Int?
    public init() {}
    public func apply() { if let threads { Parallel.threads = max(1, threads) } }
}

extension ImageSize: ExpressibleByArgument {
    public init?(argument: String) { self.init(parsing: argument) }
    public var defaultValueDescription: String { description }
}

extension SyntheticTexture: ExpressibleByArgument {}
extension DatasetKind: ExpressibleByArgument {}
extension DenseposeEncoding: ExpressibleByArgument {}
extension DressCodeDataset.Category: ExpressibleByArgument {}

/// Prints `tool: error: …` (no stack trace) for an error the user can act on, and returns the
/// exit code to throw: `code`, else the error's (ExitStatus: 1 bad input, 3 run failed).
public func reportError(_ tool: String, _ error: Error, code: Int32? = nil) -> ExitCode {
    fputs("\(tool): error: \(error)\n", stderr)
    return ExitCode(code ?? (error is ValidationError ? ExitStatus.usage : ExitStatus.of(error)))
}

extension ParsableCommand {
    /// ArgumentParser's `main()` with leffa's exit statuses (ExitStatus): a usage error exits 2,
    /// not ArgumentParser's 64, with the same message and usage line.
    /// First of all, OpenBLAS's kernels are mended if it did not know this CPU (BLASKernels).
    public static func mainWithExitStatuses(_ arguments: [String]? = nil) {
        BLASKernels.restartWithBetterKernelsIfNeeded()
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
        } catch {
            if exitCode(for: error) == .validationFailure {
                fputs(fullMessage(for: error) + "\n", stderr)
                Foundation.exit(ExitStatus.usage)
            }
            exit(withError: error)
        }
    }
}
