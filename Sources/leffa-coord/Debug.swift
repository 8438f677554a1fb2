// `leffa-coord debug …`: developer checks against the published model.
import ArgumentParser
import LeffaCLI
import Foundation
import LeffaTraining
import LeffaRunFormat

struct Debug: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Developer checks.", subcommands: [Forward.self, Inputs.self])

    struct Forward: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "One forward+backward pass on fixture-style inputs, written as safetensors (the golden check).")
        @Option(help: "Weights in the published layout (unet.*, unet_encoder.*, vae.*).") var weights: String
        @Option(help: "Model config: YAML, or the fixture's config.json (its loss settings are used too).") var config:
            String
        @Option(help: "Inputs named like the fixture's in.* tensors.") var inputs: String
        @Option(help: "Where to write out.* and grad.* tensors.") var out: String
        @Option(help: "'all' writes grad.unet.* and grad.unet_encoder.* for every parameter; 'none' skips backward.")
        var grads: DebugForward.Grads = .all
        @OptionGroup var threads: ThreadOptions

        func run() throws {
            threads.apply()
            do {
                let summary = try DebugForward.run(
                    weights: weights, config: config, inputs: inputs, out: out, grads: grads)
                print(summary)
            } catch { throw userError(error) }
        }
    }
}

extension DebugForward.Grads: ExpressibleByArgument {}

extension Debug {
    struct Inputs: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write fixture-style inputs (in.*) from a run's data, for `debug forward` on that run's model.")
        @Option(name: .customLong("run"), help: "The run directory.") var runPath: String
        @Option(help: "Stage whose resolution to use (default: the last).") var stage: String?
        @Option(help: "Number of samples.") var count: Int = 2
        @Option(help: "Output safetensors file.") var out: String
        @Option(help: "Timestep of every sample (default: drawn as at training step 0).") var timestep: Int?

        func run() throws {
            do {
                print(
                    try DebugForward.makeInputs(
                        run: RunDirectory(runPath), stage: stage, count: count, out: out, timestep: timestep))
            } catch { throw userError(error) }
        }
    }
}
