// Import and export: the published layout round-trips bit for bit; a diffusers SD1.5-inpainting
// folder (float16) becomes both UNets with the conv_in surgery; bad files get errors naming file
// and key.
import XCTest
import Foundation
import LeffaTensor
import LeffaModels
import LeffaTraining
import LeffaRunFormat
import SafeTensors
import TestSupport

final class WeightsTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("leffa-weights-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func testExportThenImportIsBitExact() throws {
        let a = try LeffaModel(config: .tiny, seed: 5), b = try LeffaModel(config: .tiny, seed: 9)
        let path = dir.appendingPathComponent("w.safetensors").path
        try a.saveWeights(to: path)
        let file = try SafeTensorsFile(path: path)
        XCTAssertEqual(Set(file.names), Set(a.parameters.names))
        XCTAssertTrue(file.names.contains("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"))
        XCTAssertNotEqual(a.parameters.values!.scalars, b.parameters.values!.scalars)
        try b.loadWeights(from: path)
        let va = a.parameters.values!, vb = b.parameters.values!
        XCTAssertEqual(memcmp(va.data, vb.data, va.count * 4), 0, "values differ after a round trip")
    }

    func testFixtureWeightsHaveExactlyOurNamesAndShapes() throws {
        let model = try LeffaModel(config: .tiny)
        let file = try SafeTensorsFile(path: Fixtures.leffaTiny.appendingPathComponent("weights.safetensors").path)
        XCTAssertEqual(file.keyDifference(expected: model.parameters.names).missing, [])
        XCTAssertEqual(file.keyDifference(expected: model.parameters.names).unexpected, [])
        for p in model.parameters.all { XCTAssertEqual(try file.shape(of: p.name), p.shape, p.name) }
    }

    func testMissingAndWrongShapeKeysAreNamed() throws {
        let model = try LeffaModel(config: .tiny)
        var w = SafeTensorsWriter()
        for p in model.parameters.all where p.name != "unet.conv_out.bias" { w.add(p.name, p.value) }
        let path = dir.appendingPathComponent("partial.safetensors")
        try w.write(to: path)
        XCTAssertThrowsError(try model.loadWeights(from: path.path)) { e in
            XCTAssertTrue("\(e)".contains("unet.conv_out.bias"), "\(e)")
            XCTAssertTrue("\(e)".contains("partial.safetensors"), "\(e)")
        }
        var w2 = SafeTensorsWriter()
        for p in model.parameters.all { w2.add(p.name, p.name == "vae.quant_conv.bias" ? Tensor(zeros: [3]) : p.value) }
        try w2.write(to: path)
        XCTAssertThrowsError(try model.loadWeights(from: path.path)) { e in XCTAssertTrue("\(e)".contains("vae.quant_conv.bias"), "\(e)") }
    }

    /// A diffusers inpainting folder: the UNet has 9 input channels, weights are float16.
    func testDiffusersInpaintingImportDoesConvInSurgery() throws {
        let src = try LeffaModel(config: .tiny, seed: 21)
        let unetDir = dir.appendingPathComponent("sd/unet"), vaeDir = dir.appendingPathComponent("sd/vae")
        try FileManager.default.createDirectory(at: unetDir, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: vaeDir, withIntermediateDirectories: true)
        let convIn9 = Tensor.randn([32, 9, 3, 3], seed: 77)
        var u = SafeTensorsWriter()
        for p in src.parameters(of: "unet") {
            let key = String(p.name.dropFirst(5))
            u.add(key, key == "conv_in.weight" ? convIn9 : p.value, as: .f16)
        }
        try u.write(to: unetDir.appendingPathComponent("diffusion_pytorch_model.safetensors"))
        var v = SafeTensorsWriter()
        for p in src.parameters(of: "vae") { v.add(String(p.name.dropFirst(4)), p.value, as: .f16) }
        try v.write(to: vaeDir.appendingPathComponent("diffusion_pytorch_model.safetensors"))
        try Data(#"{"in_channels": 9, "block_out_channels": [32, 64, 64, 64], "layers_per_block": 2, "attention_head_dim": 2, "cross_attention_dim": 32, "norm_num_groups": 8}"#.utf8)
            .write(to: unetDir.appendingPathComponent("config.json"))

        let dst = try LeffaModel(config: .tiny, seed: 1)
        try dst.importDiffusers(folder: dir.appendingPathComponent("sd").path)
        let f16 = { (x: Float) in float16BitsToFloat(floatToFloat16Bits(x)) }
        let gen = dst.parameters["unet.conv_in.weight"]!.value, ref = dst.parameters["unet_encoder.conv_in.weight"]!.value
        XCTAssertEqual(gen.shape, [32, 12, 3, 3]); XCTAssertEqual(ref.shape, [32, 4, 3, 3])
        for o in 0..<32 { for c in 0..<12 { for k in 0..<9 {
            let want: Float = c < 9 ? f16(convIn9[(o * 9 + c) * 9 + k]) : 0
            XCTAssertEqual(gen[(o * 12 + c) * 9 + k], want)
            if c < 4 { XCTAssertEqual(ref[(o * 4 + c) * 9 + k], f16(convIn9[(o * 9 + c) * 9 + k])) }
        } } }
        // Every other UNet weight goes to both UNets; the VAE to the VAE.
        for name in ["down_blocks.1.resnets.0.conv1.weight", "mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj.weight", "conv_out.bias"] {
            let want = src.parameters["unet." + name]!.value.scalars.map(f16)
            XCTAssertEqual(dst.parameters["unet." + name]!.value.scalars, want, name)
            XCTAssertEqual(dst.parameters["unet_encoder." + name]!.value.scalars, want, name)
        }
        XCTAssertEqual(dst.parameters["vae.decoder.conv_out.weight"]!.value.scalars, src.parameters["vae.decoder.conv_out.weight"]!.value.scalars.map(f16))

        // A config that contradicts the model is refused, naming the field.
        try Data(#"{"block_out_channels": [320, 640, 1280, 1280]}"#.utf8).write(to: unetDir.appendingPathComponent("config.json"))
        XCTAssertThrowsError(try dst.importDiffusers(folder: dir.appendingPathComponent("sd").path)) { e in
            XCTAssertTrue("\(e)".contains("block_out_channels"), "\(e)")
        }
    }
}
