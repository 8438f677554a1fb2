// `leffa-coord debug forward` end to end: the built binary reads the fixture, writes a file, and
// the file holds every out.* of the fixture (matching) and a gradient for every UNet parameter.
import XCTest
import Foundation
import LeffaModels
import SafeTensors
import TestSupport

final class DebugForwardCommandTests: XCTestCase {
    func testCommandWritesTheGoldenTensors() throws {
        let bin = Fixtures.packageRoot.appendingPathComponent(".build/release/leffa-coord")
        guard FileManager.default.isExecutableFile(atPath: bin.path) else {
            return XCTFail("\(bin.path) is not built: run `swift build -c release` first (Scripts/test.sh does)")
        }
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("golden-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: out) }
        let fx = Fixtures.leffaTiny
        let p = Process()
        p.executableURL = bin
        p.arguments = ["debug", "forward", "--weights", fx.appendingPathComponent("weights.safetensors").path,
                       "--config", fx.appendingPathComponent("config.json").path,
                       "--inputs", fx.appendingPathComponent("io.safetensors").path, "--out", out.path]
        try p.run(); p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
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
        let bin = Fixtures.packageRoot.appendingPathComponent(".build/release/leffa-coord")
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("bad-\(UUID().uuidString).safetensors")
        let fx = Fixtures.leffaTiny
        let p = Process(), err = Pipe()
        p.executableURL = bin
        p.standardError = err
        // The weights file given as inputs: it has no in.* tensors.
        p.arguments = ["debug", "forward", "--weights", fx.appendingPathComponent("weights.safetensors").path,
                       "--config", fx.appendingPathComponent("config.json").path,
                       "--inputs", fx.appendingPathComponent("weights.safetensors").path, "--out", out.path, "--grads", "none"]
        try p.run(); p.waitUntilExit()
        let msg = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertNotEqual(p.terminationStatus, 0)
        XCTAssertTrue(msg.contains("missing") && msg.contains("in.ref_latent") && msg.contains("weights.safetensors"), msg)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
    }
}
