// Weights in and out: the published Leffa layout (`unet.*`, `unet_encoder.*`, `vae.*` in one
// safetensors file) and a diffusers SD1.5-inpainting folder (`unet/`, `vae/`), from which both
// UNets are built with the conv_in surgery of SPEC §2.
import Foundation
import LeffaTensor
import LeffaLayers
import SafeTensors

public enum WeightsError: Error, CustomStringConvertible {
    case incompatible(String)
    public var description: String {
        switch self {
        case .incompatible(let s): return s
        }
    }
}

extension LeffaModel {
    /// Loads a published-layout file: every parameter must be present with its exact shape, and
    /// nothing else may be (`allowUnexpected` relaxes the latter, e.g. for files with extra EMA keys).
    public func loadWeights(from path: String, allowUnexpected: Bool = false) throws {
        let file = try SafeTensorsFile(path: path)
        try file.checkKeys(expected: parameters.names, allowUnexpected: allowUnexpected)
        for p in parameters.all { try file.load(p.name, into: p.value) }
    }

    /// Writes every parameter under its published name (the unused `attn2` weights included).
    public func saveWeights(to path: String, dtype: SafeTensorsDType = .f32, metadata: [String: String] = [:]) throws {
        var w = SafeTensorsWriter(metadata: metadata)
        for p in parameters.all { w.add(p.name, p.value, as: dtype) }
        try w.write(to: URL(fileURLWithPath: path))
    }

    /// Initialises both UNets and the VAE from a diffusers SD1.5-inpainting folder:
    /// `unet/diffusion_pytorch_model.safetensors` (9 input channels) and
    /// `vae/diffusion_pytorch_model.safetensors`, float16 or float32. The generative conv_in keeps
    /// the 9 pretrained input channels and gets zeros for the densepose channels; the reference
    /// conv_in keeps the first 4.
    public func importDiffusers(folder: String) throws {
        let unetPath = folder + "/unet/diffusion_pytorch_model.safetensors"
        let vaePath = folder + "/vae/diffusion_pytorch_model.safetensors"
        try checkDiffusersConfig(
            folder + "/unet/config.json",
            expect: [
                "block_out_channels": config.unet.blockOutChannels, "layers_per_block": config.unet.layersPerBlock,
                "norm_num_groups": config.unet.normNumGroups, "cross_attention_dim": config.unet.crossAttentionDim,
                "attention_head_dim": config.unet.attentionHeads
            ])
        try checkDiffusersConfig(
            folder + "/vae/config.json",
            expect: [
                "block_out_channels": config.vae.blockOutChannels, "layers_per_block": config.vae.layersPerBlock,
                "norm_num_groups": config.vae.normNumGroups, "latent_channels": config.vae.latentChannels
            ])
        let unetFile = try SafeTensorsFile(path: unetPath)
        let vaeFile = try SafeTensorsFile(path: vaePath)

        for prefix in ["unet", "unet_encoder"] {
            let ps = parameters(of: prefix)
            try unetFile.checkKeys(expected: ps.map { String($0.name.dropFirst(prefix.count + 1)) })
            for p in ps {
                let key = String(p.name.dropFirst(prefix.count + 1))
                if key == "conv_in.weight" {
                    try loadConvIn(from: unetFile, into: p.value)
                } else {
                    try unetFile.load(key, into: p.value)
                }
            }
        }
        let vs = parameters(of: "vae")
        try vaeFile.checkKeys(expected: vs.map { String($0.name.dropFirst(4)) })
        for p in vs { try vaeFile.load(String(p.name.dropFirst(4)), into: p.value) }
    }

    /// Copies the overlapping input channels of a pretrained conv_in (O, Ci, 3, 3) into ours
    /// (O, Cm, 3, 3); channels beyond the pretrained ones are zero.
    private func loadConvIn(from file: SafeTensorsFile, into dst: Tensor) throws {
        let src = try file.tensor("conv_in.weight")
        guard src.rank == 4, src.shape[0] == dst.shape[0], src.shape[2...] == dst.shape[2...] else {
            throw WeightsError.incompatible(
                "\(file.path): key conv_in.weight has shape \(src.shape), expected (\(dst.shape[0]), any, \(dst.shape[2]), \(dst.shape[3]))"
            )
        }
        let o = dst.shape[0], cm = dst.shape[1], ci = src.shape[1], k = dst.shape[2] * dst.shape[3]
        dst.data.update(repeating: 0, count: dst.count)
        for a in 0..<o {
            for c in 0..<min(ci, cm) {
                (dst.data + (a * cm + c) * k).update(from: src.data + (a * ci + c) * k, count: k)
            }
        }
    }

    /// Compares the sizes a diffusers config.json declares with ours; a missing file is fine
    /// (shapes are checked key by key anyway), a contradiction is an error naming the field.
    private func checkDiffusersConfig(_ path: String, expect: [String: Any]) throws {
        guard let data = FileManager.default.contents(atPath: path) else { return }
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw WeightsError.incompatible("\(path): not a JSON object")
        }
        for (key, want) in expect {
            guard let have = json[key] else { continue }
            let same: Bool
            if let w = want as? Int {
                same = (have as? Int) == w || (have as? [Int])?.allSatisfy({ $0 == w }) == true
            } else if let w = want as? [Int] {
                same = (have as? [Int]) == w
            } else {
                same = true
            }
            if !same {
                throw WeightsError.incompatible("\(path): field \(key) is \(have), the model config expects \(want)")
            }
        }
    }
}
