// ImageMetrics against scikit-image's values (Fixtures/metrics.json, written by
// Scripts/make_metrics_fixture.py), and properties any PSNR/SSIM must have.
import Foundation
import XCTest
import LeffaEval
import LeffaTensor

/// Absolute tolerance against scikit-image: both compute in Double from the same float32 inputs and
/// differ only in summation order (~1e-15); a wrong filter mode, window or crop is off by 1e-3 or more.
private let fixtureTolerance = 1e-4

/// One case of metrics.json: 8-bit images (value q/127.5 − 1), a 0/1 mask and scikit-image's results.
private struct MetricsCase: Decodable {
    let name: String
    let shape: [Int]
    let test, reference, mask: [Int]
    let psnr, psnr_masked, ssim, ssim_masked: Double
    let ssim_map: [Double]
}

private struct MetricsFixture: Decodable {
    let source: String
    let cases: [MetricsCase]
}

/// 8-bit values to the float32 image the fixture script fed scikit-image (same float32 ops).
private func image(_ q: [Int], _ shape: [Int]) -> Tensor {
    Tensor(q.map { Float($0) / 127.5 - 1 }, shape: shape)
}

/// A random image in [-1, 1].
private func randomImage(_ shape: [Int], seed: UInt64) -> Tensor { Tensor.uniform(shape, seed: seed, in: -1...1) }

final class ImageMetricsTests: XCTestCase {
    func testMatchesScikitImageFixture() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/metrics.json")
        let fixture = try JSONDecoder().decode(MetricsFixture.self, from: Data(contentsOf: url))
        XCTAssertEqual(fixture.cases.count, 4, "\(url.path): expected 4 cases; rerun Scripts/make_metrics_fixture.py")
        var worst = 0.0, worstWhere = "nothing checked"
        /// Records the error; asserts only when `assert` (a map reports its worst pixel once, not every pixel).
        func check(_ got: Double, _ expected: Double, _ what: String, assert: Bool = true) {
            let e = abs(got - expected)
            if !(e <= worst) { worst = e.isNaN ? .infinity : e; worstWhere = "\(what): got \(got), scikit-image \(expected)" }
            if assert { XCTAssertEqual(got, expected, accuracy: fixtureTolerance, what) }
        }
        for c in fixture.cases {
            let (H, W) = (c.shape[1], c.shape[2])
            let test = image(c.test, c.shape), reference = image(c.reference, c.shape)
            let mask = Tensor(c.mask.map(Float.init), shape: [H, W])
            check(ImageMetrics.psnr(test, reference), c.psnr, "\(c.name) psnr")
            check(ImageMetrics.psnr(test, reference, mask: mask), c.psnr_masked, "\(c.name) psnr masked")
            check(ImageMetrics.ssim(test, reference), c.ssim, "\(c.name) ssim")
            check(ImageMetrics.ssim(test, reference, mask: mask), c.ssim_masked, "\(c.name) ssim masked")
            let map = ImageMetrics.ssimMap(test, reference)
            XCTAssertEqual(map.count, H * W, "\(c.name) map size")
            var mapWorst = (error: 0.0, at: 0)
            for (p, (got, expected)) in zip(map, c.ssim_map).enumerated() {
                check(got, expected, "\(c.name) ssim map at (\(p / W), \(p % W))", assert: false)
                let e = abs(got - expected)
                if !(e <= mapWorst.error) { mapWorst = (e.isNaN ? .infinity : e, p) }
            }
            XCTAssertLessThanOrEqual(mapWorst.error, fixtureTolerance, "\(c.name) ssim map, worst at (\(mapWorst.at / W), \(mapWorst.at % W)): " +
                                     "got \(map[mapWorst.at]), scikit-image \(c.ssim_map[mapWorst.at])")
        }
        print("ImageMetrics vs scikit-image (\(fixture.source)): worst absolute error \(worst) at \(worstWhere)")
    }

    func testIdenticalImagesGiveSSIMOneAndInfinitePSNR() {
        let a = randomImage([3, 16, 13], seed: 1)
        XCTAssertEqual(ImageMetrics.psnr(a, a.copy()), .infinity)
        XCTAssertEqual(ImageMetrics.ssim(a, a.copy()), 1, accuracy: 1e-12)
        let mask = Tensor(repeating: 1, shape: [16, 13])
        XCTAssertEqual(ImageMetrics.ssim(a, a.copy(), mask: mask), 1, accuracy: 1e-12)
        XCTAssertEqual(ImageMetrics.psnr(a, a.copy(), mask: mask), .infinity)
    }

    func testPSNROfConstantOffset() {
        // Offset 0.2 everywhere: MSE 0.04, 10·log10(4 / 0.04) = 20 dB (float rounding of a + 0.2 ≈ 1e-7).
        let a = Tensor.uniform([3, 12, 12], seed: 2, in: -0.7...0.7)
        let b = Tensor(a.scalars.map { $0 + 0.2 }, shape: a.shape)
        XCTAssertEqual(ImageMetrics.psnr(b, a), 20, accuracy: 1e-4)
        // Offset only inside a quarter of the pixels: the masked PSNR sees 20 dB, the full one
        // 4× less MSE, i.e. 10·log10(4) dB more.
        let H = 12, W = 12
        let mask = Tensor((0..<H * W).map { $0 % W < W / 2 && $0 / W < H / 2 ? Float(1) : 0 }, shape: [1, H, W])
        let c = a.copy()
        for ch in 0..<3 { for p in 0..<H * W where mask[p] >= 0.5 { c[ch * H * W + p] += 0.2 } }
        XCTAssertEqual(ImageMetrics.psnr(c, a, mask: mask), 20, accuracy: 1e-4)
        XCTAssertEqual(ImageMetrics.psnr(c, a), 20 + 10 * log10(4.0), accuracy: 1e-4)
        // Range 1 instead of 2: range² is 4× smaller.
        XCTAssertEqual(ImageMetrics.psnr(c, a, dataRange: 1), 20, accuracy: 1e-4)
    }

    func testSSIMIsSymmetric() {
        let a = randomImage([3, 20, 17], seed: 3), b = randomImage([3, 20, 17], seed: 4)
        let ab = ImageMetrics.ssimMap(a, b), ba = ImageMetrics.ssimMap(b, a)
        XCTAssertEqual(zip(ab, ba).map { abs($0 - $1) }.max()!, 0, accuracy: 1e-12)
        XCTAssertEqual(ImageMetrics.ssim(a, b), ImageMetrics.ssim(b, a), accuracy: 1e-12)
        // Unrelated noise is far from 1, and a noisy copy in between: the metric sees structure.
        let noisy = Tensor(zip(a.scalars, b.scalars).map { 0.8 * $0 + 0.2 * $1 }, shape: a.shape)
        let unrelated = ImageMetrics.ssim(a, b), close = ImageMetrics.ssim(noisy, a)
        XCTAssertLessThan(unrelated, 0.2)
        XCTAssertGreaterThan(close, 0.7)
        XCTAssertLessThan(close, 1)
    }

    func testAllOnesMaskIsTheUncroppedMean() {
        let a = randomImage([3, 14, 18], seed: 5), b = randomImage([3, 14, 18], seed: 6)
        let map = ImageMetrics.ssimMap(a, b)
        let mean = map.reduce(0, +) / Double(map.count)
        XCTAssertEqual(ImageMetrics.ssim(a, b, mask: Tensor(repeating: 1, shape: [14, 18])), mean, accuracy: 1e-12)
        // The unmasked mean crops 5 pixels on each side, so it is a different number.
        var cropped = 0.0
        for i in 5..<9 { for j in 5..<13 { cropped += map[i * 18 + j] } }
        XCTAssertEqual(ImageMetrics.ssim(a, b), cropped / 32, accuracy: 1e-12)
        XCTAssertNotEqual(ImageMetrics.ssim(a, b), mean, accuracy: 1e-9)
    }

    func testEmptyMaskGivesNaN() {
        let a = randomImage([3, 12, 12], seed: 7), b = randomImage([3, 12, 12], seed: 8)
        let empty = Tensor(repeating: 0.4, shape: [12, 12])  // below 0.5: outside everywhere
        XCTAssertTrue(ImageMetrics.psnr(a, b, mask: empty).isNaN)
        XCTAssertTrue(ImageMetrics.ssim(a, b, mask: empty).isNaN)
    }
}
