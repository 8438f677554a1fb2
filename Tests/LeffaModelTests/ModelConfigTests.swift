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

    /// Model files refuse unknown size keys (the fixture's config.json keeps other settings at its
    /// top level, which stays open).
    func testUnknownSizeKeysAreRefused() throws {
        XCTAssertThrowsError(try ModelConfig.parse("preset: tiny\nunet:\n  layers_per_blok: 1\n", source: "m.yaml")) { e in
            XCTAssertEqual("\(e)", "m.yaml: field unet.layers_per_blok: unknown key layers_per_blok (did you mean layers_per_block?); expected one of the keys "
                           + UNetConfig.keys.joined(separator: ", "))
        }
        XCTAssertThrowsError(try ModelConfig.parse("vae: {scaling: 0.2}\n", source: "m.yaml")) { e in
            XCTAssertTrue("\(e)".contains("field vae.scaling: unknown key scaling (did you mean scaling_factor?)"), "\(e)")
        }
        XCTAssertEqual(UNetConfig.keys, ["in_channels", "reference_in_channels", "out_channels", "block_out_channels", "layers_per_block",
                                         "attention_heads", "norm_num_groups", "cross_attention_dim"])
        XCTAssertEqual(VAEConfig.keys, ["block_out_channels", "layers_per_block", "norm_num_groups", "latent_channels", "in_channels", "scaling_factor"])
        XCTAssertEqual(try ModelConfig.parse("preset: tiny\nnote: fixture settings\n", source: "m.yaml"), .tiny)
    }

    func testAnyLatentSizeRunsAndAnEmptyOneIsAClearError() throws {
        // Sides that the downsamplers round up (11 → 6 → 3 → 2) come back to their skip's size.
        let model = try LeffaModel(config: .tiny)
        for (h, w) in [(12, 8), (11, 5), (1, 3)] {
            let (eps, _) = try GradMode.withoutGrad {
                try model.denoise(x: Tensor.randn([1, 12, h, w], seed: 1), refLatent: Tensor.randn([1, 4, h, w], seed: 2), timesteps: [1])
            }
            XCTAssertEqual(eps.shape, [1, 4, h, w])
            XCTAssertTrue(eps.scalars.allSatisfy(\.isFinite))
        }
        XCTAssertThrowsError(try model.denoise(x: Tensor(zeros: [1, 12, 0, 8]), refLatent: Tensor(zeros: [1, 4, 0, 8]), timesteps: [1])) { e in
            XCTAssertTrue("\(e)".contains("latent size 0×8") && "\(e)".contains("≥ 1"), "\(e)")
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
