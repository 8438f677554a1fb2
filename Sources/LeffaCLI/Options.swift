// What every executable's command line shares: the kernel thread option, image sizes and fixed
// value sets as typed arguments (so `--help` lists the values), and one way to report an error.
import ArgumentParser
import Foundation
import LeffaTensor
import LeffaData

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
/// exit code to throw.
public func reportError(_ tool: String, _ error: Error, code: Int32 = 2) -> ExitCode {
    FileHandle.standardError.write(Data("\(tool): error: \(error)\n".utf8))
    return ExitCode(code)
}
