// leffa-coord: the user's command for a Leffa training run. Argument parsing only; every
// command is one call into the LeffaTraining library.
import ArgumentParser
import Foundation
import LeffaTensor

@main
struct LeffaCoord: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "leffa-coord",
        abstract: "Create, drive and inspect Leffa training runs.",
        subcommands: [Init.self, Synth.self, CheckData.self, PrepareCommand.self, Stage.self, Run.self, Export.self, Sample.self, Eval.self, Debug.self])
}

/// Options for the kernel thread count, shared by commands that compute.
struct ThreadOptions: ParsableArguments {
    @Option(help: "Kernel threads (default: LEFFA_THREADS, else cores ÷ local MPI ranks).")
    var threads: Int?
    func apply() { if let threads { Parallel.threads = max(1, threads) } }
}

/// Exits with a clear message (no stack trace) for errors the user can act on.
func userError(_ error: Error) -> ExitCode {
    FileHandle.standardError.write(Data("leffa-coord: error: \(error)\n".utf8))
    return ExitCode(2)
}
