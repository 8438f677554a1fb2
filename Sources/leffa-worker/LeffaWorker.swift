// leffa-worker: trains the run's current stage from its last valid checkpoint (or the previous
// stage's final weights, or the configured initial weights). One process here; under mpirun,
// one data-parallel rank.
import ArgumentParser
import Foundation
import LeffaTensor
import LeffaTraining

@main
struct LeffaWorker: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "leffa-worker", abstract: "Train the current stage of a Leffa run.")
    @Option(name: .customLong("run"), help: "The run directory (made by `leffa-coord init`).") var runPath: String
    @Option(help: "Stop cleanly after this step of the current stage, leaving a checkpoint.") var untilStep: Int?
    @Flag(help: "Keep training into the following stages instead of stopping when the current one ends.") var allStages = false
    @Flag(help: "Reduce per-sample gradients in a fixed global order (bit-identical results for any rank count).") var fixedOrder = false
    @Option(help: "Kernel threads (default: LEFFA_THREADS, else cores ÷ local MPI ranks).") var threads: Int?

    func run() throws {
        if let threads { Parallel.threads = max(1, threads) }
        do {
            let dir = RunDirectory(runPath)
            while true {
                let trainer = try Trainer(run: dir)
                let outcome = try trainer.train(untilStep: untilStep, fixedOrder: fixedOrder)
                guard case .stageFinished(let next) = outcome, allStages, next != nil else { break }
            }
        } catch {
            FileHandle.standardError.write(Data("leffa-worker: error: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
