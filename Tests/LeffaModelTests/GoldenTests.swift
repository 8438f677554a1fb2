// The golden test: the published model's forward and backward pass at the tiny size
// (../shared/fixtures/leffa_tiny) reproduced tensor by tensor within the README's tolerances.
import XCTest
import Foundation
import LeffaTensor
import LeffaModels
import LeffaDiffusion
import LeffaTraining
import LeffaRunFormat
import SafeTensors
import TestSupport

final class GoldenTests: XCTestCase {
    func testTinyFixtureMatchesEveryTensor() throws {
        try compare(fixture: Fixtures.leffaTiny, weights: Fixtures.leffaTiny.appendingPathComponent("weights.safetensors"))
    }

    /// The same weights at latent 20×11, which the downsamplers round up (11 → 6 → 3 → 2) and the up
    /// path resizes back to each skip's size, as diffusers' UNet does (Scripts/make_odd_size_fixture.py).
    func testOddLatentSizeFixtureMatchesEveryTensor() throws {
        let dir = Fixtures.packageRoot.appendingPathComponent("Tests/LeffaModelTests/Fixtures/odd-size")
        try compare(fixture: dir, weights: Fixtures.leffaTiny.appendingPathComponent("weights.safetensors"))
    }

    /// Runs the golden pass on a fixture's inputs and compares every tensor it holds.
    func compare(fixture dir: URL, weights: URL, file: StaticString = #filePath, line: UInt = #line) throws {
        let config = try ModelConfig.load(path: dir.appendingPathComponent("config.json").path)
        XCTAssertEqual(config, .tiny)
        let lossConfig = try JSONDecoder().decode(LeffaLossConfig.self, from: Data(contentsOf: dir.appendingPathComponent("config.json")))
        let model = try LeffaModel(config: config)
        try model.loadWeights(from: weights.path)
        let io = try SafeTensorsFile(path: dir.appendingPathComponent("io.safetensors").path)
        let inputs = GoldenPass.Inputs(
            x: try io.tensor("in.x"), refLatent: try io.tensor("in.ref_latent"), imgRef: try io.tensor("in.img_ref"),
            imgTgt: try io.tensor("in.img_tgt"), mask: try io.tensor("in.mask"), noise: try io.tensor("in.noise"),
            timesteps: try io.int64s("in.t").map { Int($0) })
        let outputs = Dictionary(try GoldenPass.run(model, loss: lossConfig, inputs: inputs), uniquingKeysWith: { a, _ in a })
        var compared = 0
        var worst: Float = 0
        for name in io.names where !name.hasPrefix("in.") {
            guard let mine = outputs[name] else { XCTFail("\(name): not produced", file: file, line: line); continue }
            let want = try io.tensor(name)
            XCTAssertEqual(mine.shape, want.shape, "\(name)", file: file, line: line)
            guard mine.count == want.count else { continue }
            let tol = name.hasPrefix("grad.") ? Tolerances.goldenGradient : Tolerances.goldenOutput
            // Relative to the tensor's scale: tiny elements of a large tensor are judged against its
            // max. Flows are coordinates in [−1, 1]: with random weights attention is near uniform and
            // a flow is a cancelling sum of ±1 terms, so its error is judged against that range.
            let scale = max(want.scalars.map(abs).max() ?? 1, name.hasPrefix("out.flow.") ? 1 : 0)
            let scaled = Tolerance(rtol: tol.rtol, atol: tol.rtol * scale, why: tol.why)
            let (ratio, at) = worstError(mine.scalars, want.scalars, scaled)
            XCTAssertLessThanOrEqual(ratio, 1, "\(name): worst at \(at): mine \(mine[at]) want \(want[at]) (max |want| \(scale))",
                                     file: file, line: line)
            compared += 1
            worst = max(worst, ratio)
        }
        print("golden \(dir.lastPathComponent): compared \(compared) tensors, worst error \(worst) of tolerance")
        XCTAssertEqual(compared, io.names.filter { !$0.hasPrefix("in.") }.count, file: file, line: line)
    }
}
