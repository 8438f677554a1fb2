// The SD1.5-size check: instantiate the published sizes, import float16 weights (a random file of
// the right names and shapes, written first), run one forward of both UNets at 512×384, and
// report time and peak memory (the bound: 16 GiB).
import ArgumentParser
import Foundation
import LeffaTensor
import LeffaModels
import LeffaTraining
import LeffaRunFormat
import SafeTensors

struct SD15Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sd15-forward", abstract: "SD1.5 size: float16 import and one forward of both UNets at 512×384.")
    @OptionGroup var options: BenchOptions
    @Option(help: "Image height×width (multiples of 8).") var size: String = "512x384"
    @Option(help: "Where to write the random float16 weights file.") var weights: String =
        "bench-results/sd15-random-f16.safetensors"

    struct Report: Encodable {
        var imageSize: [Int]; var parameters: Int; var importSeconds: Double; var forwardSeconds: Double
        var peakTensorBytes: Int; var peakRSSBytes: Int
        enum CodingKeys: String, CodingKey {
            case imageSize = "image_size", parameters, importSeconds = "import_seconds", forwardSeconds =
                "forward_seconds", peakTensorBytes = "peak_tensor_bytes", peakRSSBytes = "peak_rss_bytes"
        }
    }

    func run() throws {
        options.apply()
        let (H, W) = try imageSize(size), (h, w) = (H / 8, W / 8)
        let model = try LeffaModel(config: .sd15, seed: 3)
        print("sd15: \(model.parameters.count) parameters (\(model.parameters.all.count) tensors)")
        try FileManager.default.createDirectory(
            atPath: (weights as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try model.saveWeights(to: weights, dtype: .f16)
        let t0 = Date()
        try model.loadWeights(from: weights)
        let importSeconds = Date().timeIntervalSince(t0)
        print(String(format: "imported float16 weights in %.2f s", importSeconds))
        Storage.live.resetPeak()
        let x = Tensor.randn([1, 12, h, w], seed: 1), ref = Tensor.randn([1, 4, h, w], seed: 2)
        let t1 = Date()
        _ = try GradMode.withoutGrad { try model.denoise(x: x, refLatent: ref, timesteps: [500]) }
        let fwd = Date().timeIntervalSince(t1)
        let report = Report(
            imageSize: [H, W], parameters: model.parameters.count, importSeconds: importSeconds, forwardSeconds: fwd,
            peakTensorBytes: Storage.live.peakBytes, peakRSSBytes: peakRSS())
        print(
            String(
                format: "forward of both UNets at %dx%d: %.2f s; peak tensor memory %.2f GiB; peak RSS %.2f GiB",
                H, W, fwd, Double(report.peakTensorBytes) / 1073741824, Double(report.peakRSSBytes) / 1073741824))
        let path = options.jsonPath("sd15-forward")
        try writeJSON(report, to: path)
        print("wrote \(path)")
    }
}
