// The data-parallel benchmark, run under mpirun by Scripts/bench-ddp.sh: training steps of the
// `small` model, reporting images/s and the fraction of step time spent waiting for the gradient
// all-reduce (the part not hidden behind backward; with a sharded optimizer step, plus waiting for
// the other ranks' shards of the weights). Either the global batch is split over the
// ranks (`--batch`, strong scaling) or every rank takes the same batch (`--per-rank-batch`, the way
// data parallelism is used and benchmarked: N ranks train N times the samples per step).
// LEFFA_DDP_DEBUG=1 (pass it with `mpirun -x`) prints, per step, when each bucket became ready
// (ms from the step's start) and the reduction's timing: what overlap actually achieved.
import ArgumentParser
import Foundation
import LeffaTensor
import LeffaLayers
import LeffaModels
import LeffaDistributed
import LeffaTraining
import LeffaRunFormat

struct DDPBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ddp", abstract: "Data-parallel training steps (run under mpirun).")
    @OptionGroup var options: BenchOptions
    @Option(help: "Model size (tiny, small).") var model: String = "small"
    @Option(help: "Global batch, split over the ranks.") var batch: Int = 2
    @Option(help: "Samples per rank (the global batch is this × ranks); overrides --batch.") var perRankBatch: Int?
    @Option(help: "Gradient bucket size in MB.") var bucketMb: Int = 25
    @Flag(help: "Start all-reduces after backward instead of during it (the non-overlapped baseline).") var noOverlap =
        false
    @Flag(help: "Buckets over the whole block from its end (ignoring that the generative UNet's backward comes first).")
    var oneSegment = false
    @Flag(help: "Every rank holds the whole training state and runs the whole optimizer step (not sharded).")
    var unsharded = false
    @Option(help: "Gradient averaging: auto, shared (shared memory, one node) or buckets (overlapped MPI all-reduce).")
    var reduction: String = "auto"

    struct Report: Encodable {
        var ranks: Int, threadsPerRank: Int, model: String, globalBatch: Int, perRankBatch: Int, bucketMB: Int,
            overlap: Bool, reduction: String, sharded: Bool
        var stepSeconds: Double, imagesPerSecond: Double, waitFraction: Double, buckets: Int
        /// The fastest step (rank maximum): robust against other load on a shared machine.
        var bestStepSeconds: Double, bestImagesPerSecond: Double
        /// The optimizer step's own work (clip + AdamW on this rank's shard), without the exchange.
        var optimizerSeconds: Double
        /// Bytes of the reduced (trained) gradients.
        var gradientBytes: Int
        enum CodingKeys: String, CodingKey {
            case ranks, model, overlap, buckets, reduction, sharded
            case threadsPerRank = "threads_per_rank", globalBatch = "global_batch", perRankBatch = "per_rank_batch",
                bucketMB = "bucket_mb"
            case stepSeconds = "step_seconds", imagesPerSecond = "images_per_second", waitFraction = "wait_fraction"
            case bestStepSeconds = "best_step_seconds", bestImagesPerSecond = "best_images_per_second"
            case optimizerSeconds = "optimizer_seconds", gradientBytes = "gradient_bytes"
        }
    }

    func run() throws {
        options.apply()
        let ctx = try MPIContext.start()
        // The model and its collective (which may own the gradient window) end before MPI does.
        try measure(ctx)
        ctx.finalize()
    }

    func measure(_ ctx: MPIContext) throws {
        let batch = perRankBatch.map { $0 * ctx.size } ?? self.batch
        guard batch % ctx.size == 0 else {
            ctx.abort("--batch \(batch) must be divisible by the rank count \(ctx.size)")
        }
        guard let config = ModelConfig.preset(model) else { ctx.abort("unknown model \(model)") }
        let (h, w) = TrainStepBench.latent(model)
        let m = try LeffaModel(config: config, seed: 1)
        // As the trainer: the VAE is frozen, and only the trained parameters' range is reduced.
        let trained = m.parameters(of: "unet") + m.parameters(of: "unet_encoder")
        m.parameters.freeze(except: trained)
        let range = m.parameters.trainedRange!
        let asked: GradientReduction
        do { asked = try GradientReduction.parse(reduction, source: "--reduction") } catch { ctx.abort("\(error)") }
        // The trainer's collective (one rank: buckets, which reduce nothing), then the optimizer
        // with its moments where the collective keeps them.
        let collective = try MPICollective(
            context: ctx, parameters: m.parameters, shareState: !unsharded, fixedOrder: false,
            bucketBytes: bucketMb << 20, reduction: ctx.isDistributed ? asked : .buckets, segments: !oneSegment)
        let optimizer = AdamW(
            parameters: m.parameters, training: trained, moments: collective.sharedState.map { ($0.m, $0.v) })
        let ddp = DataParallel(collective: collective, parameters: m.parameters, fixedOrder: false)
        if ctx.rank == 0 { print("ddp: \(collective.summary)") }
        let local = LatentBatch.random(batch / ctx.size, height: h, width: w, seed: 100 + UInt64(ctx.rank))
        let objective = TrainingObjective()
        var times: [Double] = [], waits: [Double] = [], optimizing: [Double] = []
        var readyAt: [Int: Double] = [:]
        let debug = ProcessInfo.processInfo.environment["LEFFA_DDP_DEBUG"] != nil
        for i in 0...(options.repeats) {
            ctx.barrier()
            let t0 = Date()
            m.parameters.zeroGrads()
            let loss = try objective.loss(m, local).total
            if !noOverlap { // as the trainer
                m.parameters.handOverGradients(of: loss) { k in
                    if range.contains(k) { readyAt[k] = Date().timeIntervalSince(t0) }
                    collective.gradientReady(k)
                }
            }
            loss.backward()
            m.parameters.removeGradientHooks()
            // Without overlap, the bucketed reducer marks every parameter now and reduces all buckets.
            let wait = collective.finishGradients()
            if debug && ctx.rank == 0, let reducer = collective.bucketReducer {
                let bwd = Date().timeIntervalSince(t0)
                print(
                    reducer.buckets.map { b in
                        String(
                            format: "b%d %.0fms", b.index,
                            1e3 * (b.parameters.map { readyAt[$0 + range.lowerBound] ?? 0 }.max() ?? 0))
                    }.joined(separator: " "), String(format: "| end %.0f", 1e3 * bwd))
            }
            if debug && ctx.rank == 0 { print(String(format: "step %d: waited %.1f ms for gradients", i, wait * 1e3)) }
            // As the trainer; waiting for the other ranks' shards after a sharded step counts too.
            let t1 = Date()
            let gathered = ddp.step(optimizer, lr: 1e-5, maxNorm: 1).publishSeconds
            let dt = Date().timeIntervalSince(t0)
            if i > 0 {
                times.append(dt); waits.append(wait + gathered);
                optimizing.append(Date().timeIntervalSince(t1) - gathered)
            } // step 0 warms up
        }
        // The slowest rank sets the pace: report rank-maxima of the medians.
        var med = [
            times.sorted()[times.count / 2], waits.sorted()[waits.count / 2], times.min()!,
            optimizing.sorted()[optimizing.count / 2]
        ]
        ctx.allreduce(&med, .max)
        if ctx.rank == 0 {
            let r = Report(
                ranks: ctx.size, threadsPerRank: Parallel.threads, model: model, globalBatch: batch,
                perRankBatch: batch / ctx.size, bucketMB: bucketMb,
                overlap: !noOverlap && collective.reduction == .buckets, reduction: collective.reduction.rawValue,
                sharded: collective.sharedState != nil,
                stepSeconds: med[0], imagesPerSecond: Double(batch) / med[0], waitFraction: med[1] / med[0],
                buckets: collective.bucketReducer?.buckets.count ?? 0,
                bestStepSeconds: med[2], bestImagesPerSecond: Double(batch) / med[2], optimizerSeconds: med[3],
                gradientBytes: 4 * m.parameters.gradients(of: range).count)
            let averaging =
                collective.reduction == .shared
                ? "shared memory"
                : String(format: "buckets %d×≤%d MB  overlap %@", r.buckets, bucketMb, r.overlap ? "on" : "off")
            let how = ctx.size == 1 ? "no reduction" : averaging + (r.sharded ? ", sharded step" : "")
            print(
                String(
                    format:
                        "ranks %d × %d thread(s)  %@  batch %d  %@: %.1f ms/step (best %.1f)  %.2f img/s  waiting %.1f %%",
                    r.ranks, r.threadsPerRank, model, batch, how, 1e3 * r.stepSeconds, 1e3 * r.bestStepSeconds,
                    r.imagesPerSecond, 100 * r.waitFraction))
            try writeJSON(r, to: options.jsonPath("ddp"))
        }
    }
}
