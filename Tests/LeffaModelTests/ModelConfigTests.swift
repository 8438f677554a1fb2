import XCTest
import Foundation
import LeffaTensor
import LeffaModels
import LeffaDiffusion
import TestSupport

final class ModelConfigTests: XCTestCase {
    func testPresetsAndFilesAgree() throws {
        XCTAssertEqual(try ModelConfig.load(path: Fixtures.packageRoot.appendingPathComponent("Configs/models/tiny.yaml").path), .tiny)
        XCTAssertEqual(try ModelConfig.load(path: Fixtures.packageRoot.appendingPathComponent("Configs/models/sd15.yaml").path), .sd15)
        XCTAssertEqual(try ModelConfig.load(path: Fixtures.leffaTiny.appendingPathComponent("config.json").path), .tiny)
        var custom = ModelConfig.tiny
        custom.unet.blockOutChannels = [16, 32]
        XCTAssertEqual(try ModelConfig.parse("preset: tiny\nunet:\n  block_out_channels: [16, 32]\n", source: "x.yaml"), custom)
    }

    func testBadFieldsAreNamed() {
        XCTAssertThrowsError(try ModelConfig.parse("unet:\n  layers_per_block: two\n", source: "bad.yaml")) { e in
            XCTAssertTrue("\(e)".contains("bad.yaml") && "\(e)".contains("layers_per_block"), "\(e)")
        }
        XCTAssertThrowsError(try ModelConfig.parse("preset: tiny\nunet:\n  norm_num_groups: 7\n", source: "g.yaml")) { e in
            XCTAssertTrue("\(e)".contains("norm_num_groups"), "\(e)")
        }
        XCTAssertThrowsError(try ModelConfig.parse("preset: huge\n", source: "p.yaml")) { e in XCTAssertTrue("\(e)".contains("preset"), "\(e)") }
    }

    func testLatentSizeNotDivisibleIsAClearError() throws {
        let model = try LeffaModel(config: .tiny)
        XCTAssertThrowsError(try model.denoise(x: Tensor(zeros: [1, 12, 12, 8]), refLatent: Tensor(zeros: [1, 4, 12, 8]), timesteps: [1])) { e in
            XCTAssertTrue("\(e)".contains("multiples of 8"), "\(e)")
        }
    }

    func testFlowLayersSelectedByResolution() {
        let all = UNet2DConditionModel.attentionLayers(ModelConfig.tiny.unet)
        let fixture = try! JSONSerialization.jsonObject(with: Data(contentsOf: Fixtures.leffaTiny.appendingPathComponent("config.json"))) as! [String: Any]
        XCTAssertEqual(LeffaLossConfig().selectLayers(all, latentHeight: 16, imageHeight: 128), fixture["flow_layers"] as! [String])
        // SD1.5 at 1024×768: every layer but the mid block.
        let sd = UNet2DConditionModel.attentionLayers(ModelConfig.sd15.unet)
        let picked = LeffaLossConfig().selectLayers(sd, latentHeight: 128, imageHeight: 1024)
        XCTAssertEqual(picked.count, sd.count - 1)
        XCTAssertFalse(picked.contains { $0.hasPrefix("mid_block") })
    }
}
