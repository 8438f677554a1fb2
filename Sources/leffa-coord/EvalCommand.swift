// `leffa-coord eval`: held-out evaluation of a run's stage or an exported file. Argument parsing
// only; the logic is LeffaEval.Evaluation. Runs alone or under `mpirun -np N leffa-coord eval …`
// (the pairs are shared over the ranks, rank 0 writes).
import ArgumentParser
import LeffaCLI
import LeffaData
import Foundation
import LeffaDistributed
import LeffaEval
import LeffaModels
import LeffaRunFormat

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Sample a split's pairs and score them: generated/ and target/ folders (for FID tools), a contact sheet, eval.json."
    )
    @OptionGroup var source: ModelSource
    @Option(help: "Split to evaluate on.") var split: String = "test"
    @Option(help: "A pairs file (the dataset's format) instead of the split's own list.") var pairs: String?
    @Option(help: "Data folder (default: the config's data.root).") var data: String?
    @Option(help: "Only the first N pairs.") var limit: Int?
    @Flag(help: "Each person with the garment of the pairs file's second column: images only, no metrics.")
    var unpaired = false
    @Option(help: "Output folder.") var out: String
    @OptionGroup var sampling: SamplerOptions
    @Option(help: "Noise seed (pair i's noise, DDPM step noise included, depends only on the seed and i).") var seed:
        UInt64 = 0
    @Option(help: "Resolution HxW (default: the stage's).") var size: ImageSize?
    @Option(help: "Rows of the contact sheet (the first pairs).") var sheetRows: Int = 16
    @Option(help: "Softmax temperature of the measured attention flows (default: the stage's Leffa τ, else 2).")
    var tau: Float?
    @Option(help: "Fail (exit 1) unless the full-image PSNR reaches this many dB.") var minPsnr: Double?
    @Option(help: "Fail (exit 1) unless the garment-region SSIM exceeds the mean-colour baseline's by this much.")
    var minGarmentSsimGain: Double?
    @OptionGroup var threads: ThreadOptions

    func run() throws {
        threads.apply()
        let context: MPIContext
        do { context = try MPIContext.start() } catch { throw userError(error) }
        let say: (String) -> Void = { line in
            if context.rank == 0 { FileHandle.standardError.write(Data((line + "\n").utf8)) }
        }
        do {
            var o = EvalOptions()
            o.split = split; o.unpaired = unpaired; o.seed = seed
            o.scheduler = sampling.scheduler; o.steps = sampling.steps; o.guidance = sampling.guidance
            o.guidanceRescale = sampling.guidanceRescale; o.repaint = sampling.repaint;
            o.refAcceleration = sampling.refAcceleration
            o.sheetRows = sheetRows; o.tau = tau; o.limit = limit
            o.pairsFile = pairs.map { URL(fileURLWithPath: $0) }
            o.dataRoot = data.map { URL(fileURLWithPath: $0) }
            try sampling.check()
            guard limit.map({ $0 >= 1 }) ?? true else { throw ValidationError("--limit: expected at least 1, got \(limit!)") }
            if let size { o.size = (size.height, size.width) }
            let (cfg, model, from, st) = try source.load()
            let m = EvalModel(model: model, config: cfg, stage: st, source: from)
            say("eval: \(m.source), stage \(m.stage.name)\(context.isDistributed ? ", \(context.size) ranks" : "")")
            let report = try Evaluation.run(
                m, options: o, out: URL(fileURLWithPath: out), context: context, progress: say)
            if context.rank == 0 {
                print(report.table)
                print(
                    "wrote \(out)/generated and \(out)/target (same names: python -m pytorch_fid \(out)/generated \(out)/target), \(out)/contact-sheet.png, \(out)/eval.json"
                )
            }
            // Scores exist on rank 0 only; every rank exits with its verdict.
            let missed =
                context.rank == 0 ? report.missedTargets(minPSNR: minPsnr, minGarmentSSIMGain: minGarmentSsimGain) : []
            let anyMissed = context.allreduce(Double(missed.isEmpty ? 0 : 1)) > 0
            context.finalize()
            if anyMissed && missed.isEmpty { throw ExitCode(1) }
            if !missed.isEmpty {
                if context.rank == 0 {
                    FileHandle.standardError.write(
                        Data("leffa-coord: eval: targets missed: \(missed.joined(separator: "; "))\n".utf8))
                }
                throw ExitCode(1)
            }
            if minPsnr != nil || minGarmentSsimGain != nil, context.rank == 0 { print("targets met") }
        } catch let e as ExitCode { throw e } catch {
            // One rank's error (a missing file, say) stops every rank: nothing waits forever.
            if context.isDistributed { context.abort("\(error)") }
            throw userError(error)
        }
    }
}
