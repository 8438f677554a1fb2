import XCTest
import Foundation
import LeffaTensor
import LeffaLayers
import LeffaModels
import LeffaDiffusion

final class ZZLeffaProfile: XCTestCase {
    func testProfile() throws {
        let config = ModelConfig.small
        let (b, h, w) = (2, 32, 24), H = 256, W = 192
        let names = LeffaLossConfig().selectLayers(UNet2DConditionModel.attentionLayers(config.unet), latentHeight: h, imageHeight: H)
        var probes: [AttentionProbe] = []
        for (i, n) in names.enumerated() {
            let f = UNet2DConditionModel.attentionLayers(config.unet).first { $0.name == n }!.factor
            let lh = h / f, lw = w / f, c = config.unet.blockOutChannels[min(Int(log2(Double(f))), 3)]
            probes.append(AttentionProbe(layer: n, query: Tensor.randn([b, lh * lw, c], seed: UInt64(i)).requiringGrad(),
                                         key: Tensor.randn([b, lh * lw, c], seed: UInt64(100 + i)).requiringGrad(), heads: 8, height: lh, width: lw))
        }
        let img = Tensor.uniform([b, 3, H, W], seed: 1, in: -1...1), tgt = Tensor.uniform([b, 3, H, W], seed: 2, in: -1...1)
        let mask = Tensor(repeating: 1, shape: [b, 1, H, W])
        for _ in 0..<3 {
            var t0 = Date()
            var flowT = 0.0, restT = 0.0
            var flows: [Tensor] = []
            for p in probes { let s = Date(); flows.append(flowField(p, tau: 2)); flowT += Date().timeIntervalSince(s) }
            var total: Tensor? = nil
            for f in flows {
                let s = Date()
                let grid = resizeBilinear(f.permuted([0, 3, 1, 2]), size: (H, W)).permuted([0, 2, 3, 1])
                let warp = gridSample(img, grid)
                let diff = (tgt - warp) * mask
                let ps = mean(diff * diff, axes: [1, 2, 3])
                total = total.map { $0 + ps } ?? ps
                restT += Date().timeIntervalSince(s)
            }
            let loss = mean(total!)
            let fwd = Date().timeIntervalSince(t0)
            t0 = Date()
            loss.backward()
            print(String(format: "leffa fwd %.1f ms (flows %.1f, warp+loss %.1f), bwd %.1f ms", 1e3 * fwd, 1e3 * flowT, 1e3 * restT, 1e3 * Date().timeIntervalSince(t0)))
            for p in probes { p.query.grad = nil; p.key.grad = nil }
        }
    }
}
