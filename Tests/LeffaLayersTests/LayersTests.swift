// The layers with parameters (Layers.swift): PyTorch's parameter names, shapes and initial values,
// and that each applies its op with its own parameters (the ops themselves: LeffaTensorTests).
// Also the flow probe's token coordinates (AttentionProbe.swift) and the EMA swap
// (EMAWeights.swift).
import XCTest
import LeffaTensor
import LeffaLayers
import TestSupport

final class LayersTests: XCTestCase {
    func testNamesShapesAndInitialValues() {
        let set = ParameterSet(), s = Scope(set, prefix: "unet", seed: 1)
        let conv = Conv2d(s / "conv_in", 3, 8, kernel: 3, padding: 1)
        let noBias = Conv2d(s / "down", 8, 8, kernel: 3, stride: 2, padding: 1, bias: false)
        let proj = Linear(s / "proj", 4, 5)
        let gn = GroupNorm(s / "norm", groups: 2, channels: 8, eps: 1e-5)
        let ln = LayerNorm(s / "ln", 6)
        XCTAssertEqual(set.names, ["unet.conv_in.weight", "unet.conv_in.bias", "unet.down.weight",
                                   "unet.proj.weight", "unet.proj.bias", "unet.norm.weight", "unet.norm.bias",
                                   "unet.ln.weight", "unet.ln.bias"])
        XCTAssertNil(noBias.bias)
        XCTAssertEqual(conv.weight.shape, [8, 3, 3, 3])
        XCTAssertEqual(conv.bias?.shape, [8])
        XCTAssertEqual(proj.weight.shape, [5, 4])
        // U(±1/√fan_in): fan_in 27 for the conv, 4 for the linear layer.
        let convBound = 1 / Float(27).squareRoot()
        XCTAssertTrue((conv.weight.value.scalars + conv.bias!.value.scalars).allSatisfy { abs($0) <= convBound })
        XCTAssertTrue(proj.weight.value.scalars.allSatisfy { abs($0) <= 0.5 })
        XCTAssertGreaterThan(proj.weight.value.scalars.map(abs).max()!, convBound, "the linear layer's own bound")
        XCTAssertEqual(gn.weight.value.scalars, [Float](repeating: 1, count: 8))
        XCTAssertEqual(gn.bias.value.scalars, [Float](repeating: 0, count: 8))
        XCTAssertEqual(ln.weight.value.scalars, [Float](repeating: 1, count: 6))
        XCTAssertEqual(ln.eps, 1e-5)
    }

    /// nn.Linear: y = x·Wᵀ + b over the last dimension.
    func testLinearUsesItsWeightAndBias() {
        let set = ParameterSet()
        let proj = Linear(Scope(set, seed: 2), 3, 2)
        let x = Tensor.randn([4, 3], seed: 3)
        let y = proj(x)
        XCTAssertEqual(y.shape, [4, 2])
        let w = proj.weight.value, b = proj.bias!.value
        for r in 0..<4 {
            for o in 0..<2 {
                let want = (0..<3).reduce(b[o]) { $0 + x[r * 3 + $1] * w[o * 3 + $1] }
                XCTAssertEqual(y[r * 2 + o], want, accuracy: 1e-6, "row \(r), output \(o)")
            }
        }
    }

    /// A 1×1 convolution is the linear map of its weight at every pixel; stride 2 halves the grid.
    func testConv2dUsesItsWeightBiasAndStride() {
        let set = ParameterSet()
        let conv = Conv2d(Scope(set, seed: 4), 2, 3, kernel: 1, stride: 2)
        let x = Tensor.randn([1, 2, 4, 6], seed: 5)
        let y = conv(x)
        XCTAssertEqual(y.shape, [1, 3, 2, 3])
        let w = conv.weight.value, b = conv.bias!.value
        for o in 0..<3 { for r in 0..<2 { for c in 0..<3 {
            let pixel = 2 * r * 6 + 2 * c   // the input pixel under output (r, c), channel 0
            let w0: Float = w[o * 2], w1: Float = w[o * 2 + 1]
            let want: Float = b[o] + w0 * x[pixel] + w1 * x[24 + pixel]
            XCTAssertEqual(y[o * 6 + r * 3 + c], want, accuracy: 1e-6, "channel \(o) at (\(r), \(c))")
        } } }
    }

    /// Row-major tokens, x = linspace(−1, 1, w) along a row, y along the rows, the same per head.
    func testCoordinateValues() {
        let v = coordinateValues(batch: 2, height: 2, width: 3, heads: 2)
        XCTAssertEqual(v.shape, [2, 6, 4])
        let row: [Float] = [-1, -1, 0, -1, 1, -1, -1, 1, 0, 1, 1, 1]   // (x, y) of the 6 tokens
        var want: [Float] = []
        for _ in 0..<2 { for t in 0..<6 { for _ in 0..<2 { want += [row[2 * t], row[2 * t + 1]] } } }
        XCTAssertEqual(v.scalars, want)
        // One row or column sits at −1.
        XCTAssertEqual(coordinateValues(batch: 1, height: 1, width: 2, heads: 1).scalars, [-1, -1, 1, -1])
    }

    /// The EMA is swapped in for the body and back after it, bit for bit, over the range only;
    /// `sync` runs around each swap. No EMA: the body sees the weights as they are.
    func testWithEMAWeightsSwapsAndRestores() {
        let weights = Tensor([1, 2, 3, 4, 5, 6], shape: [6]), ema = Tensor([10, 20, 30, 40, 50, 60], shape: [6])
        var syncs = 0
        let seen = withEMAWeights(weights, ema, sync: { syncs += 1 }) { () -> [Float] in
            XCTAssertEqual(ema.scalars, [1, 2, 3, 4, 5, 6], "the trained weights are kept in the EMA's place")
            return weights.scalars
        }
        XCTAssertEqual(seen, [10, 20, 30, 40, 50, 60])
        XCTAssertEqual(syncs, 4)
        XCTAssertEqual(weights.scalars, [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(ema.scalars, [10, 20, 30, 40, 50, 60])
        let part = withEMAWeights(weights, ema, range: 2..<4) { weights.scalars }
        XCTAssertEqual(part, [1, 2, 30, 40, 5, 6])
        XCTAssertEqual(weights.scalars, [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(withEMAWeights(weights, nil) { weights.scalars }, [1, 2, 3, 4, 5, 6])
    }
}
