// Training augmentation (data.augment): a flip mirrors every field together (the flow's x
// negated), a move shifts the person side only, colour jitter treats person and garment alike,
// and the draw is a pure function of its key.
import Foundation
import XCTest
@testable import LeffaData
import LeffaTensor

final class AugmentTests: XCTestCase {
    /// A 2×3 sample whose every field has distinct values, so a wrong index shows.
    func knownSample() -> TrainingSample {
        func t(_ c: Int, _ base: Float) -> Tensor { Tensor((0..<(c * 6)).map { base + Float($0) / 100 }, shape: [c, 2, 3]) }
        var s = TrainingSample(index: 0, id: "x", image: t(3, -0.5), reference: t(3, 0.1), inpaintMask: Tensor([1, 0, 0, 0, 0, 1], shape: [1, 2, 3]),
                               densepose: t(3, -0.9), maskedImage: t(3, 0), lossMask: Tensor([0, 1, 1, 0, 0, 0], shape: [1, 2, 3]))
        s.flow = Tensor((0..<12).map { Float($0) / 10 - 0.5 }, shape: [2, 3, 2])
        s.flowValid = Tensor([1, 1, 0, 1, 0, 1], shape: [1, 2, 3])
        return s
    }

    func testFlipMirrorsEveryFieldTogether() {
        let s = knownSample(), o = augment(s, AugmentDraw(flip: true))
        func mirrored(_ a: Tensor, _ b: Tensor) -> Bool {
            let c = a.shape[0]
            return (0..<c).allSatisfy { k in (0..<2).allSatisfy { y in (0..<3).allSatisfy { x in b[k * 6 + y * 3 + x] == a[k * 6 + y * 3 + 2 - x] } } }
        }
        for (name, a, b) in [("image", s.image, o.image), ("reference", s.reference, o.reference), ("inpaint mask", s.inpaintMask, o.inpaintMask),
                             ("loss mask", s.lossMask, o.lossMask), ("densepose", s.densepose, o.densepose), ("flow valid", s.flowValid!, o.flowValid!)] {
            XCTAssertTrue(mirrored(a, b), name)
        }
        XCTAssertEqual(o.inpaintMask.scalars, [0, 0, 1, 1, 0, 0])
        // The flow at (0, 0) is the old one at (0, 2) with x negated: the reference was flipped too.
        XCTAssertEqual(o.flow![0], -s.flow![4]); XCTAssertEqual(o.flow![1], s.flow![5])
        XCTAssertEqual(o.maskedImage.scalars, maskedImage(o.image, o.inpaintMask).scalars)
        // Twice is the identity.
        XCTAssertEqual(augment(o, AugmentDraw(flip: true)).image.scalars, s.image.scalars)
        XCTAssertEqual(augment(o, AugmentDraw(flip: true)).flow!.scalars, s.flow!.scalars)
    }

    /// A shift of one pixel to the right: the person side moves by one column (the new first column
    /// filled as padding is: white, empty masks, background densepose), the garment stays.
    func testShiftMovesThePersonSideOnly() {
        let s = knownSample(), o = augment(s, AugmentDraw(shiftX: 1.0 / 3))
        for y in 0..<2 {
            XCTAssertEqual(o.image[y * 3], 1); XCTAssertEqual(o.inpaintMask[y * 3], 0); XCTAssertEqual(o.densepose[y * 3], -1)
            for x in 1..<3 {
                XCTAssertEqual(o.image[y * 3 + x], s.image[y * 3 + x - 1], accuracy: 1e-6)
                XCTAssertEqual(o.lossMask[y * 3 + x], s.lossMask[y * 3 + x - 1])
                XCTAssertEqual(o.densepose[6 + y * 3 + x], s.densepose[6 + y * 3 + x - 1])
            }
        }
        XCTAssertEqual(o.reference.scalars, s.reference.scalars)
        XCTAssertEqual(o.maskedImage.scalars, maskedImage(o.image, o.inpaintMask).scalars)
        // Scale 2 about the centre of a 2×2 grid: every output pixel reads between the input's centre pixels.
        let g = PersonMove(scale: 2, shiftX: 0, shiftY: 0).apply(Tensor([0, 1, 2, 3], shape: [1, 2, 2]), bilinear: true, fill: 9)
        XCTAssertEqual(g.scalars, [0.75, 1.25, 1.75, 2.25])
    }

    func testColourJitterIsTheSameForPersonAndGarment() {
        var s = knownSample()
        s.reference = s.image.copy()
        let d = AugmentDraw(brightness: 0.8, contrast: 1.2, saturation: 0.7, hue: 0.1, jitterOrder: [3, 1, 0, 2])
        let o = augment(s, d)
        XCTAssertEqual(o.image.scalars, o.reference.scalars)
        XCTAssertNotEqual(o.image.scalars, s.image.scalars)
        XCTAssertEqual(o.densepose.scalars, s.densepose.scalars, "jitter leaves the densepose alone")
        // Brightness ½ on [0, 1] values: 0.5·x, in [−1, 1]: x′ = (x + 1)/2 − 1.
        let b = jittered(Tensor([1, 0, -1], shape: [3, 1, 1]), AugmentDraw(brightness: 0.5))
        XCTAssertEqual(b.scalars, [0, -0.5, -1])
        // A third of a turn takes pure red to pure green.
        let h = hueShifted(1, 0, 0, by: 1.0 / 3)
        XCTAssertEqual(h.0, 0, accuracy: 1e-6); XCTAssertEqual(h.1, 1, accuracy: 1e-6); XCTAssertEqual(h.2, 0, accuracy: 1e-6)
    }

    func testDrawIsAPureFunctionOfTheKey() {
        var c = AugmentConfig()
        c.hflip = 0.5; c.scale = 0.1; c.shift = 0.05; c.brightness = 0.2; c.hue = 0.05
        XCTAssertEqual(c.draw(key: 42), c.draw(key: 42))
        XCTAssertNotEqual(c.draw(key: 42), c.draw(key: 43))
        let draws = (0..<2000).map { c.draw(key: CounterRNG.key(7, UInt64($0))) }
        let flips = draws.filter(\.flip).count
        XCTAssertTrue((900...1100).contains(flips), "\(flips) flips of 2000 at p = 0.5")
        XCTAssertTrue(draws.allSatisfy { abs($0.scale - 1) <= 0.1 && abs($0.shiftX) <= 0.05 && abs($0.hue) <= 0.05 && $0.contrast == 1 })
        XCTAssertEqual(Set(draws.map(\.jitterOrder)).count, 24, "every order of the four jitter operations occurs")
        // Turning the flip off leaves the other values' draws as they were.
        var noFlip = c
        noFlip.hflip = 0
        XCTAssertEqual(noFlip.draw(key: 42).scale, c.draw(key: 42).scale)
    }
}
