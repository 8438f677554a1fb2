// `leffa-coord debug forward` end to end: the built binary reads the fixture, writes a file, and
// the file holds every out.* of the fixture (matching) and a gradient for every UNet parameter.
import XCTest
import Foundation
import LeffaModels
import SafeTensors
import TestSupport

final class DebugForwardCommandTests: XCTestCase {
    func testCommandWritesTheGoldenTensors() throws {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("golden-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: out) }
        let fx = Fixtures.leffaTiny
        // The command's own thread count (LEFFA_THREADS unset), as a user runs it.
        let r = try Binaries.run("leffa-coord", ["debug", "forward", "--weights", fx.appendingPathComponent("weights.safetensors").path,
                                                 "--config", fx.appendingPathComponent("config.json").path,
                                                 "--inputs", fx.appendingPathComponent("io.safetensors").path, "--out", out.path],
                                 environment: ["LEFFA_THREADS": ""])
        XCTAssertEqual(r.status, 0, r.log)
        let mine = try SafeTensorsFile(path: out.path), want = try SafeTensorsFile(path: fx.appendingPathComponent("io.safetensors").path)
        for name in want.names where name.hasPrefix("out.") {
            let a = try mine.tensor(name), b = try want.tensor(name)
            let scale = max(b.scalars.map(abs).max() ?? 1, name.hasPrefix("out.flow.") ? 1 : 0)
            XCTAssertLessThanOrEqual(worstError(a.scalars, b.scalars, Tolerance(rtol: 1e-4, atol: 1e-4 * scale, why: "fixture")).ratio, 1, name)
        }
        let model = try LeffaModel(config: .tiny)
        for prm in model.parameters(of: "unet") + model.parameters(of: "unet_encoder") {
            XCTAssertEqual(try mine.shape(of: "grad." + prm.name), prm.shape)
        }
    }

    func testBadInputsGetAClearErrorAndNoOutput() throws {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("bad-\(UUID().uuidString).safetensors")
        let fx = Fixtures.leffaTiny
        // The weights file given as inputs: it has no in.* tensors.
        let r = try Binaries.run("leffa-coord", ["debug", "forward", "--weights", fx.appendingPathComponent("weights.safetensors").path,
                                                 "--config", fx.appendingPathComponent("config.json").path,
                                                 "--inputs", fx.appendingPathComponent("weights.safetensors").path, "--out", out.path,
                                                 "--grads", "none"])
        let msg = r.stderr
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(msg.contains("missing") && msg.contains("in.ref_latent") && msg.contains("weights.safetensors"), msg)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
    }
}
