// leffa-coord: the user's command for a Leffa training run. Argument parsing only; every
// command is one call into a library (LeffaRunFormat, LeffaRun, LeffaTraining, LeffaEval).
import ArgumentParser
import Foundation
import LeffaCLI

@main
struct LeffaCoord: ParsableCommand {
    static func main() { mainWithExitStatuses() }
    static let configuration = CommandConfiguration(
        commandName: "leffa-coord",
        abstract: "Create, drive and inspect Leffa training runs.",
        version: leffaVersion,
        subcommands: [
            Init.self, ConfigCommand.self, Synth.self, CheckData.self, PrepareCommand.self, Stage.self, Run.self, Export.self, Sample.self,
            Eval.self, Debug.self
        ])
}

/// Exits with a clear message (no stack trace) for errors the user can act on.
func userError(_ error: Error) -> ExitCode { reportError("leffa-coord", error) }
