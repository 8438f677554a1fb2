// The golden fixtures written by the PyTorch reference (../shared/fixtures/leffa_tiny): every
// listed shape, the dtypes, known values, and a byte-identical rewrite.
import XCTest
import TestSupport
import LeffaTensor
@testable import SafeTensors

final class FixtureTests: XCTestCase {
    func fixtures() throws -> URL {
        guard let dir = fixtureDirectory() else {
            XCTFail("fixtures not found: expected ../shared/fixtures/leffa_tiny beside the package root")
            throw XCTSkip("no fixtures")
        }
        return dir
    }

    func testIOShapesMatchConfig() throws {
        let dir = try fixtures()
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("config.json"))) as! [String: Any]
        let listed = config["tensors"] as! [String: [Int]]
        let io = try SafeTensorsFile(url: dir.appendingPathComponent("io.safetensors"))
        XCTAssertEqual(listed.count, 51)
        try io.checkKeys(expected: listed.keys)
        for (key, shape) in listed { XCTAssertEqual(try io.shape(of: key), shape, key) }
        XCTAssertEqual(try io.dtype(of: "in.t"), .i64)
        XCTAssertEqual(try io.int64s("in.t", expectedShape: [2]), [10, 900])
        XCTAssertEqual(try io.tensor("in.t").scalars, [10, 900])
        for key in io.names where key != "in.t" { XCTAssertEqual(try io.dtype(of: key), .f32, key) }
        // Values as written by Python (struct.unpack on the raw file).
        XCTAssertEqual(try io.tensor("in.x").scalars.prefix(3).map(\.bitPattern), [0xBFC3_46BA, 0xBF40_0F31, 0xBF27_6B4B])
        XCTAssertEqual(try io.tensor("out.diffusion_loss", expectedShape: [1]).item.bitPattern, 0x3F86_1380)
    }

    func testWeightsKeysAndShapes() throws {
        let dir = try fixtures()
        let w = try SafeTensorsFile(url: dir.appendingPathComponent("weights.safetensors"))
        XCTAssertEqual(w.names.count, 1548)
        let prefixes = Dictionary(grouping: w.names) { String($0.prefix { $0 != "." }) }.mapValues(\.count)
        XCTAssertEqual(prefixes, ["unet": 684, "unet_encoder": 684, "vae": 180])
        XCTAssertEqual(try w.shape(of: "unet.conv_in.weight"), [32, 12, 3, 3])
        XCTAssertEqual(try w.shape(of: "unet_encoder.conv_in.weight"), [32, 4, 3, 3])
        for n in w.names { XCTAssertEqual(try w.dtype(of: n), .f32, n) }
        let conv = try w.tensor("unet.conv_in.weight", expectedShape: [32, 12, 3, 3])
        XCTAssertEqual(conv.scalars.prefix(3).map(\.bitPattern), [0x3B48_EF29, 0xBD27_FA9A, 0xBB9C_833A])
        XCTAssertEqual(try w.tensor("vae.decoder.conv_in.bias").scalars.prefix(3).map(\.bitPattern), [0xBE6E_D489, 0x3DD0_1048, 0x3E67_9653])
        // Gradients in io have the shapes of their parameters.
        let io = try SafeTensorsFile(url: dir.appendingPathComponent("io.safetensors"))
        for g in io.names where g.hasPrefix("grad.") {
            XCTAssertEqual(try io.shape(of: g), try w.shape(of: String(g.dropFirst(5))), g)
        }
        XCTAssertEqual(w.names.reduce(0) { $0 + ((try? w.entry($1).count) ?? 0) }, 6_764_383)
    }

    func testRewriteIsByteIdentical() throws {
        // Reading every tensor and writing it back reproduces the reference's file exactly:
        // same order, same JSON, same padding, same bits.
        let dir = try fixtures(), out = try scratchDirectory(self)
        for name in ["io.safetensors", "weights.safetensors"] {
            let src = dir.appendingPathComponent(name), dst = out.appendingPathComponent(name)
            let f = try SafeTensorsFile(url: src)
            var w = SafeTensorsWriter(metadata: f.metadata)
            for n in f.names.reversed() {
                if try f.dtype(of: n) == .i64 { w.add(n, int64s: try f.int64s(n), shape: try f.shape(of: n)) }
                else { w.add(n, try f.tensor(n), as: try f.dtype(of: n)) }
            }
            try w.write(to: dst)
            XCTAssertTrue(try Data(contentsOf: src) == Data(contentsOf: dst), name)
        }
    }
}
