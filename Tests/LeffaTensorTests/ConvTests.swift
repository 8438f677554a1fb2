// conv2d against a naive direct convolution (double accumulation), finite-difference gradients for
// x, weight and bias, bit-identical results for 1 and 2 threads, and no buffers kept after the op.
// The configs reach both paths of Conv2d.swift (pointwise 1×1 s1 p0, and im2col blocks), column
// blocks that span two images, several column blocks, and split output rows.
import XCTest
@testable import LeffaTensor
import TestSupport

final class ConvTests: XCTestCase {
    struct Config: CustomStringConvertible {
        var name: String
        var batch = 1, cin: Int, cout: Int, h: Int, w: Int, kh: Int, kw: Int
        var stride = (1, 1)
        var pad = Padding2D.same(0)
        var bias = true
        var description: String { "\(name): x (\(batch), \(cin), \(h), \(w)) w (\(cout), \(cin), \(kh), \(kw)) stride \(stride) pad \(pad) bias \(bias)" }

        func inputs(seed: UInt64) -> [Tensor] {
            // Weights scaled by 1/√fan-in keep outputs O(1), as in the model.
            let scale = 1 / Float(cin * kh * kw).squareRoot()
            var t = [Tensor.randn([batch, cin, h, w], seed: seed),
                     Tensor.randn([cout, cin, kh, kw], seed: seed + 1, scale: scale)]
            if bias { t.append(Tensor.randn([cout], seed: seed + 2)) }
            return t
        }
        func run(_ t: [Tensor]) -> Tensor { conv2d(t[0], t[1], bias ? t[2] : nil, stride: stride, padding: pad) }
    }

    static let configs: [Config] = [
        Config(name: "1×1 pointwise", batch: 2, cin: 5, cout: 3, h: 6, w: 7, kh: 1, kw: 1),
        Config(name: "3×3 s1 p1, Cin≠Cout, a block across both images, split rows", batch: 2, cin: 32, cout: 33, h: 5, w: 4,
               kh: 3, kw: 3, pad: .same(1)),
        Config(name: "3×3 s1 p1, several column blocks, no bias", cin: 8, cout: 6, h: 30, w: 37, kh: 3, kw: 3, pad: .same(1), bias: false),
        Config(name: "3×3 s1 p1, few channels", batch: 2, cin: 3, cout: 4, h: 5, w: 6, kh: 3, kw: 3, pad: .same(1)),
        Config(name: "3×3 s1 p0 (valid)", cin: 6, cout: 5, h: 6, w: 5, kh: 3, kw: 3),
        Config(name: "3×3 s2 p1", batch: 2, cin: 4, cout: 5, h: 7, w: 6, kh: 3, kw: 3, stride: (2, 2), pad: .same(1)),
        Config(name: "3×3 s2 pad (0,1,0,1), the VAE downsampler", cin: 3, cout: 4, h: 8, w: 6, kh: 3, kw: 3, stride: (2, 2),
               pad: Padding2D(top: 0, bottom: 1, left: 0, right: 1)),
        Config(name: "non-square kernel, stride and padding", batch: 2, cin: 3, cout: 2, h: 7, w: 9, kh: 2, kw: 3, stride: (1, 2),
               pad: Padding2D(top: 1, bottom: 0, left: 2, right: 1), bias: false),
        Config(name: "non-square kernel, stride 1", cin: 3, cout: 5, h: 5, w: 8, kh: 3, kw: 2,
               pad: Padding2D(top: 0, bottom: 2, left: 1, right: 0)),
        Config(name: "1×1 with padding 1", cin: 4, cout: 3, h: 3, w: 4, kh: 1, kw: 1, pad: .same(1)),
        Config(name: "padding wider than the kernel", batch: 2, cin: 2, cout: 3, h: 4, w: 3, kh: 2, kw: 2, stride: (2, 1),
               pad: Padding2D(top: 3, bottom: 2, left: 2, right: 3)),
    ]

    /// out[b, co, oy, ox] = bias[co] + Σ x[b, ci, oy·sh + dy − top, ox·sw + dx − left] · w[co, ci, dy, dx].
    func referenceConv(_ c: Config, _ t: [Tensor]) -> [Float] {
        let x = t[0], w = t[1]
        let ho = (c.h + c.pad.top + c.pad.bottom - c.kh) / c.stride.0 + 1
        let wo = (c.w + c.pad.left + c.pad.right - c.kw) / c.stride.1 + 1
        var out = [Float](repeating: 0, count: c.batch * c.cout * ho * wo)
        for b in 0..<c.batch {
            for co in 0..<c.cout {
                for oy in 0..<ho {
                    for ox in 0..<wo {
                        var acc = c.bias ? Double(t[2][co]) : 0
                        for ci in 0..<c.cin {
                            for dy in 0..<c.kh {
                                for dx in 0..<c.kw {
                                    let iy = oy * c.stride.0 + dy - c.pad.top, ix = ox * c.stride.1 + dx - c.pad.left
                                    guard iy >= 0, iy < c.h, ix >= 0, ix < c.w else { continue }
                                    acc += Double(x[((b * c.cin + ci) * c.h + iy) * c.w + ix])
                                        * Double(w[((co * c.cin + ci) * c.kh + dy) * c.kw + dx])
                                }
                            }
                        }
                        out[((b * c.cout + co) * ho + oy) * wo + ox] = Float(acc)
                    }
                }
            }
        }
        return out
    }

    func testValuesMatchDirectConvolution() {
        for (i, c) in Self.configs.enumerated() {
            let t = c.inputs(seed: 100 + UInt64(i) * 10)
            let y = c.run(t)
            let want = referenceConv(c, t)
            XCTAssertEqual(y.count, want.count, "\(c)")
            let (ratio, at) = worstError(y.scalars, want, Tolerances.float32)
            XCTAssertLessThanOrEqual(ratio, 1, "\(c): element \(at) is \(y[at]), expected \(want[at])")
        }
    }

    func testOutputShapes() {
        let x = Tensor(zeros: [2, 3, 9, 7])
        XCTAssertEqual(conv2d(x, Tensor(zeros: [4, 3, 3, 3]), stride: 2, padding: 1).shape, [2, 4, 5, 4])
        XCTAssertEqual(conv2d(x, Tensor(zeros: [4, 3, 3, 3]), nil, stride: (2, 2),
                              padding: Padding2D(top: 0, bottom: 1, left: 0, right: 1)).shape, [2, 4, 4, 3])
        XCTAssertEqual(conv2d(x, Tensor(zeros: [5, 3, 1, 1])).shape, [2, 5, 9, 7])
    }

    func testGradientsMatchFiniteDifferences() {
        for (i, c) in Self.configs.enumerated() {
            let t = c.inputs(seed: 200 + UInt64(i) * 10)
            let r = checkGradients(t, samples: 16) { c.run($0) }
            XCTAssertTrue(r.ok, "\(c): \(r)")
        }
    }

    func testGradientOfOneInputOnly() {
        // Only the weight (the usual case for conv_in) and only x: the other slots stay nil.
        let c = Self.configs[1], t = c.inputs(seed: 300)
        t[1].requiringGrad()
        c.run(t).backward(Tensor.randn([2, 33, 5, 4], seed: 301))
        XCTAssertNil(t[0].grad)
        XCTAssertNotNil(t[1].grad)
        XCTAssertNil(t[2].grad)
        let u = c.inputs(seed: 302)
        u[0].requiringGrad()
        c.run(u).backward(Tensor.randn([2, 33, 5, 4], seed: 303))
        XCTAssertNotNil(u[0].grad)
        XCTAssertNil(u[1].grad)
    }

    func testBitIdenticalForOneAndTwoThreads() {
        // Shapes large enough that every path really splits its work (and `gemm` runs in parallel);
        // the first has three column blocks, the middle one across both images.
        let configs = [
            Config(name: "3×3", batch: 2, cin: 48, cout: 40, h: 25, w: 22, kh: 3, kw: 3, pad: .same(1)),
            Config(name: "pointwise", batch: 2, cin: 64, cout: 64, h: 24, w: 24, kh: 1, kw: 1),
            Config(name: "im2col", batch: 2, cin: 24, cout: 40, h: 34, w: 30, kh: 3, kw: 3, stride: (2, 2),
                   pad: Padding2D(top: 0, bottom: 1, left: 0, right: 1)),
            Config(name: "few channels", batch: 1, cin: 4, cout: 48, h: 40, w: 36, kh: 3, kw: 3, pad: .same(1)),
        ]
        let saved = Parallel.threads
        defer { Parallel.threads = saved }
        for (i, c) in configs.enumerated() {
            var results: [[[Float]]] = []
            for threads in [1, 2] {
                Parallel.threads = threads
                let t = c.inputs(seed: 400 + UInt64(i) * 10)
                for v in t { v.requiringGrad() }
                let y = c.run(t)
                y.backward(Tensor.randn(y.shape, seed: 499))
                results.append([y.scalars] + t.map { $0.grad!.scalars })
            }
            for (k, name) in ["output", "dx", "dW", "dBias"].enumerated() {
                XCTAssertEqual(results[0][k], results[1][k], "\(c.name): \(name) differs between 1 and 2 threads")
            }
        }
    }

    func testNoBuffersOutliveTheOp() {
        // After the forward only the output is new memory; after backward only the gradients.
        let c = Config(name: "3×3", batch: 2, cin: 32, cout: 32, h: 16, w: 12, kh: 3, kw: 3, pad: .same(1))
        let t = c.inputs(seed: 500)
        for v in t { v.requiringGrad() }
        let grads = t.reduce(0) { $0 + $1.count * 4 }
        let seed = Tensor.randn([2, 32, 16, 12], seed: 501)
        withExtendedLifetime((t, seed)) {
            let before = Storage.live.bytes
            let y = c.run(t)
            withExtendedLifetime(y) {
                XCTAssertEqual(Storage.live.bytes - before, y.count * 4)
                y.backward(seed)
                XCTAssertEqual(Storage.live.bytes - before, y.count * 4 + grads)
            }
        }
    }
}
