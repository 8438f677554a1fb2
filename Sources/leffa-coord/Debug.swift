// `leffa-coord debug …`: developer checks against the published model.
import ArgumentParser
import Foundation
import LeffaTraining

struct Debug: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Developer checks.", subcommands: [Forward.self])

    struct Forward: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "One forward+backward pass on fixture-style inputs, written as safetensors (the golden check).")
        @Option(help: "Weights in the published layout (unet.*, unet_encoder.*, vae.*).") var weights: String
        @Option(help: "Model config: YAML, or the fixture's config.json (its loss settings are used too).") var config: String
        @Option(help: "Inputs named like the fixture's in.* tensors.") var inputs: String
        @Option(help: "Where to write out.* and grad.* tensors.") var out: String
        @Option(help: "'all' writes grad.unet.* and grad.unet_encoder.* for every parameter; 'none' skips backward.")
        var grads: GoldenCheck.Grads = .all
        @OptionGroup var threads: ThreadOptions

        func run() throws {
            threads.apply()
            do {
                let summary = try GoldenCheck.run(weights: weights, config: config, inputs: inputs, out: out, grads: grads)
                print(summary)
            } catch { throw userError(error) }
        }
    }
}

extension GoldenCheck.Grads: ExpressibleByArgument {}
