// Resizing conventions: bilinear with half-pixel centres and no antialias (PyTorch
// align_corners=False), nearest as PyTorch's default, and the aspect policies.
import Foundation
import XCTest
@testable import LeffaData
import LeffaTensor

final class ResizeTests: XCTestCase {
    func testBilinearMatchesHalfPixelConvention() {
        // torch.nn.functional.interpolate([0, 10], size=4, mode="linear", align_corners=False)
        let up = resize(Tensor([0, 10], shape: [1, 1, 2]), to: Size(height: 1, width: 4), mode: .bilinear)
        XCTAssertEqual(up.scalars, [0, 2.5, 7.5, 10])
        // align_corners=True would give [0, 3.33, 6.67, 10]: make sure we are not that.
        XCTAssertNotEqual(up.scalars[1], 10.0 / 3, accuracy: 0.1)
    }

    func testHalvingIsA2x2BoxAverage() {
        let x = Tensor.uniform([3, 8, 6], seed: 4)
        let y = resize(x, to: Size(height: 4, width: 3), mode: .bilinear)
        for c in 0..<3 { for i in 0..<4 { for j in 0..<3 {
            let a = (0..<2).flatMap { di in (0..<2).map { dj in x.data[c * 48 + (2 * i + di) * 6 + 2 * j + dj] } }
            XCTAssertEqual(y.data[c * 12 + i * 3 + j], a.reduce(0, +) / 4, accuracy: 1e-6)
        } } }
    }

    func testNearestFollowsPyTorchDefault() {
        // src = floor(dst · in / out)
        XCTAssertEqual(resize(Tensor([1, 2], shape: [1, 2]), to: Size(height: 1, width: 4), mode: .nearest).scalars, [1, 1, 2, 2])
        XCTAssertEqual(resize(Tensor([1, 2, 3, 4], shape: [1, 4]), to: Size(height: 1, width: 2), mode: .nearest).scalars, [1, 3])
        XCTAssertEqual(resize(Tensor([1, 2, 3], shape: [1, 3]), to: Size(height: 1, width: 2), mode: .nearest).scalars, [1, 2])
        // Masks stay binary.
        let m = rectMask(64, 48, 20, 44, 12, 36).maskTensor()
        let r = resize(m, to: Size(height: 27, width: 19), mode: .nearest)
        XCTAssertTrue(r.scalars.allSatisfy { $0 == 0 || $0 == 1 })
    }

    func testAspectPolicies() {
        let dataset = Size(height: 1024, width: 768)
        XCTAssertTrue(ResizePlan(from: dataset, to: Size(height: 512, width: 384)).isPlainResize)
        // DeepFashion high-res 1101×750 to the 256×176 stage: within 1 %, plain resize.
        XCTAssertTrue(ResizePlan(from: Size(height: 1101, width: 750), to: Size(height: 256, width: 176)).isPlainResize)

        let crop = ResizePlan(from: Size(height: 100, width: 100), to: Size(height: 50, width: 40))
        XCTAssertEqual(crop.scaled, Size(height: 50, width: 50))
        XCTAssertEqual(crop.offsetX, 5); XCTAssertEqual(crop.offsetY, 0)
        let pad = ResizePlan(from: Size(height: 100, width: 100), to: Size(height: 50, width: 40), policy: .pad)
        XCTAssertEqual(pad.scaled, Size(height: 40, width: 40))
        XCTAssertEqual(pad.offsetY, -5); XCTAssertEqual(pad.offsetX, 0)
        let stretch = ResizePlan(from: Size(height: 100, width: 100), to: Size(height: 50, width: 40), policy: .stretch)
        XCTAssertTrue(stretch.isPlainResize)

        // Padding is filled; the window is centred.
        let ones = Tensor(repeating: 1, shape: [1, 100, 100])
        let padded = resize(ones, plan: pad, mode: .bilinear, fill: -1)
        XCTAssertEqual(padded.shape, [1, 50, 40])
        XCTAssertEqual(padded.data[0], -1)              // row 0: padding
        XCTAssertEqual(padded.data[5 * 40], 1)          // row 5: image
        XCTAssertEqual(padded.data[44 * 40], 1)
        XCTAssertEqual(padded.data[45 * 40], -1)
        // Cropping with no scaling is a shifted copy.
        let x = Tensor.uniform([1, 10, 10], seed: 2)
        let c = resize(x, plan: ResizePlan(from: Size(height: 10, width: 10), to: Size(height: 10, width: 8)), mode: .bilinear)
        for i in 0..<10 { for j in 0..<8 { XCTAssertEqual(c.data[i * 8 + j], x.data[i * 10 + j + 1]) } }
    }

    func testNormalisedCoordinatesFollowTheImage() {
        func norm(_ i: Float, _ n: Int) -> Float { 2 * i / Float(n - 1) - 1 }
        // Crop 10×10 → 10×8: source column j is target column j − 1.
        let crop = ResizePlan(from: Size(height: 10, width: 10), to: Size(height: 10, width: 8))
        for j in 1..<9 {
            let p = crop.mapNormalized(x: norm(Float(j), 10), y: norm(3, 10))
            XCTAssertEqual(p.x, norm(Float(j - 1), 8), accuracy: 1e-5)
            XCTAssertEqual(p.y, norm(3, 10), accuracy: 1e-5)
        }
        // Halving 8 → 4: target pixel k covers source pixels 2k, 2k+1, whose midpoint is 2k + 0.5.
        let half = ResizePlan(from: Size(height: 8, width: 8), to: Size(height: 4, width: 4))
        for k in 0..<4 {
            let p = half.mapNormalized(x: norm(Float(2 * k) + 0.5, 8), y: norm(Float(2 * k) + 0.5, 8))
            XCTAssertEqual(p.x, norm(Float(k), 4), accuracy: 1e-5)
            XCTAssertEqual(p.y, norm(Float(k), 4), accuracy: 1e-5)
        }
    }

    func testImageResizeRoundsToBytes() {
        let img = gradientImage(64, 48)
        let half = img.resized(plan: ResizePlan(from: img.size, to: Size(height: 32, width: 24)), mode: .bilinear)
        XCTAssertEqual(half.size, Size(height: 32, width: 24))
        let avg = (Int(img[0, 0, 0]) + Int(img[0, 1, 0]) + Int(img[1, 0, 0]) + Int(img[1, 1, 0]))
        XCTAssertEqual(Double(half[0, 0, 0]), Double(avg) / 4, accuracy: 0.51)
    }
}
