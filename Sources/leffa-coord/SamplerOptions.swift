// How `sample` and `eval` sample: scheduler, steps, guidance and its rescaling, the reference
// features' reuse and the repaint. One option group, so both commands take the same spellings;
// the README says which values are the published pipeline's. Argument parsing and range checks only.
import ArgumentParser
import LeffaCLI
import LeffaDiffusion
import LeffaTraining
import LeffaRunFormat

extension SchedulerKind: ExpressibleByArgument {}

struct SamplerOptions: ParsableArguments {
    @Option(
        help:
            "ddim (η = 0, deterministic) or ddpm (ancestral, what the published pipeline uses; its step noise comes from --seed)."
    )
    var scheduler: SchedulerKind = .ddim
    @Option(help: "Sampling steps (1…1000).") var steps: Int = 30
    @Option(help: "Classifier-free guidance scale (1 = no guidance).") var guidance: Float = 2.5
    @Option(
        help:
            "Rescale the guided output towards the conditional one's standard deviation by this factor (diffusers' guidance_rescale; 0 = off; the published pipeline uses the guidance scale)."
    )
    var guidanceRescale: Float = 0
    @Flag(
        help:
            "Compute the reference features once (at the middle timestep) instead of at every step, as the published pipeline's ref_acceleration: about half the time."
    )
    var refAcceleration = false
    @Flag(
        help:
            "Paste the generated masked region into the person image, feathered by a blurred mask (the published pipeline's repaint)."
    )
    var repaint = false

    /// Errors name the option and the accepted range.
    func check() throws {
        guard (1...1000).contains(steps) else { throw ValidationError("--steps: expected an integer in 1…1000, got \(steps)") }
        guard guidance.isFinite && guidance >= 0 else {
            throw ValidationError("--guidance: expected a number ≥ 0, got \(guidance)")
        }
        guard guidanceRescale.isFinite && guidanceRescale >= 0 else {
            throw ValidationError("--guidance-rescale: expected a number ≥ 0 (0 = off), got \(guidanceRescale)")
        }
    }

    /// A sampler with these settings for a model predicting `prediction`, noise from `seed`.
    func sampler(seed: UInt64, prediction: Prediction) -> Sampler {
        var s = Sampler(
            scheduler: scheduler, steps: steps, guidance: guidance, guidanceRescale: guidanceRescale, seed: seed)
        s.refAcceleration = refAcceleration
        s.prediction = prediction
        return s
    }

    /// "30 DDPM steps, guidance 2.5 rescaled by 2.5, repainted".
    var summary: String {
        "\(steps) \(scheduler.rawValue.uppercased()) steps, guidance \(guidance)"
            + (guidanceRescale > 0 ? " rescaled by \(guidanceRescale)" : "")
            + (repaint ? ", repainted" : "")
    }
}
