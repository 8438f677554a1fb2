// Densepose encodings (data.densepose): IUV pixels decode as the published pose-transfer transform
// does — (U/255, V/255, I/24) × 2 − 1 with the foreground where I ≠ 0 — through the decoder and
// through a dataset, and a file that is not IUV is named with its first bad pixel.
import Foundation
import XCTest
import TestSupport
@testable import LeffaData
import LeffaTensor

final class DenseposeEncodingTests: XCTestCase {
    /// One body pixel (U 51, V 204, part 12) and one background pixel. Expected values from the
    /// published formula in float32: 51/255·2 − 1 = −0.6, 204/255·2 − 1 = 0.6, 12/24·2 − 1 = 0.
    func testIUVDecodingOfAKnownPixel() throws {
        let img = Image(height: 1, width: 2, channels: 3, pixels: [51, 204, 12, 0, 0, 0])
        let (t, fg) = try denseposeInput(img, encoding: .iuv, path: "x.png")
        XCTAssertEqual(t.shape, [3, 1, 2])
        XCTAssertEqual(t.scalars[0], -0.6, accuracy: 1e-6)
        XCTAssertEqual(t.scalars[2], 0.6, accuracy: 1e-6)
        XCTAssertEqual(t.scalars[4], 0, accuracy: 1e-7)
        XCTAssertEqual([t.scalars[1], t.scalars[3], t.scalars[5]], [-1, -1, -1])
        XCTAssertEqual(fg.scalars, [1, 0])
        // Part 24 is the top of the range: +1. The same pixel read as RGB: v/127.5 − 1.
        XCTAssertEqual(try denseposeInput(Image(height: 1, width: 1, channels: 3, pixels: [255, 0, 24]), encoding: .iuv, path: "x").input.scalars, [1, -1, 1])
        XCTAssertEqual(try denseposeInput(img, encoding: .rgb, path: "x").input.scalars[4], 12 / 127.5 - 1, accuracy: 1e-6)
        // One channel: repeated to RGB first, as Pillow's convert("RGB") in the published transform.
        let gray = try denseposeInput(Image(height: 1, width: 1, channels: 1, pixels: [6]), encoding: .iuv, path: "x").input.scalars
        XCTAssertEqual(gray[0], 6 / 255 * 2 - 1, accuracy: 1e-6)
        XCTAssertEqual(gray[2], -0.5, accuracy: 1e-6)
    }

    /// A DeepFashion sample with an IUV PNG: the densepose input and the loss mask (the target
    /// person, where I ≠ 0) come from the IUV reading; an RGB rendering read as IUV is an error
    /// naming the file, the field and the first pixel whose part index exceeds 24.
    func testIUVThroughTheDeepFashionReader() throws {
        let root = try scratchDirectory(self)
        for n in ["a.jpg", "b.jpg"] { try write(gradientImage(64, 48), root.appendingPathComponent("train/\(n)")) }
        var iuv = Image(height: 64, width: 48, channels: 3)
        for y in 8..<56 { for x in 10..<30 { iuv[y, x, 0] = 51; iuv[y, x, 1] = 204; iuv[y, x, 2] = UInt8(1 + (y + x) % 24) } }
        try write(iuv, root.appendingPathComponent("train_densepose/b.png"))
        try writeText("from,to\na.jpg,b.jpg\n", root.appendingPathComponent("fasion-resize-pairs-train.csv"))

        let ds = openDataset(.deepFashion, root: root, densepose: .iuv)
        let s = try ds.sample(at: 0, size: fixtureSize)
        let n = 64 * 48, at = 20 * 48 + 15
        XCTAssertEqual(s.densepose.data[at], -0.6, accuracy: 1e-6)
        XCTAssertEqual(s.densepose.data[n + at], 0.6, accuracy: 1e-6)
        XCTAssertEqual(s.densepose.data[2 * n + at], Float(1 + (20 + 15) % 24) / 24 * 2 - 1, accuracy: 1e-6)
        XCTAssertEqual(s.densepose.data[0], -1)
        XCTAssertEqual(s.lossMask.scalars.reduce(0, +), 48 * 20)
        XCTAssertTrue(ds.check().isEmpty, ds.check().report)

        iuv[30, 12, 2] = 200
        try write(iuv, root.appendingPathComponent("train_densepose/b.png"))
        let fragments = ["b.png", "densepose", "part index I) is 200 at pixel (y 30, x 12)", "0…24", "data.densepose: rgb"]
        assertDataError(.corrupt, fragments) { try ds.sample(at: 0, size: fixtureSize) }
        let problems = ds.check()
        XCTAssertEqual(problems.errors.count, 1, problems.report)
        for f in fragments { XCTAssertTrue(problems.report.contains(f), problems.report) }
        // Header-only checks cannot see pixels; RGB reading accepts the same file.
        XCTAssertTrue(ds.check(CheckOptions(decodeImages: false)).errors.isEmpty)
        XCTAssertNoThrow(try openDataset(.deepFashion, root: root).sample(at: 0, size: fixtureSize))
    }
}
