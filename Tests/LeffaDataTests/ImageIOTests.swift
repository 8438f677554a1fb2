// PNG and JPEG through the shims: lossless and lossy round trips, alpha and gray conversions,
// palette label maps, and errors that say which file and why.
import Foundation
import XCTest
import TestSupport
@testable import LeffaData
import LeffaTensor

final class ImageIOTests: XCTestCase {
    func testPNGRoundTripIsExact() throws {
        for c in [1, 3] {
            let img = noiseImage(37, 29, channels: c, seed: UInt64(c))
            let bytes = try ImageIO.encodePNG(img)
            XCTAssertEqual(ImageFormat.sniff(bytes), .png)
            XCTAssertEqual(try ImageIO.decode(bytes, channels: 0), img)
        }
    }

    func testPNGFileRoundTripAndChannelConversions() throws {
        let dir = try scratchDirectory(self)
        let rgb = noiseImage(20, 16, channels: 3, seed: 9)
        try ImageIO.write(rgb, to: dir.appendingPathComponent("a.png"))
        XCTAssertEqual(try ImageIO.read(dir.appendingPathComponent("a.png")), rgb)
        // Gray file read as RGB repeats the value in every channel.
        let gray = noiseImage(20, 16, channels: 1, seed: 3)
        try ImageIO.write(gray, to: dir.appendingPathComponent("g.png"))
        let asRGB = try ImageIO.read(dir.appendingPathComponent("g.png"), channels: 3)
        XCTAssertEqual(asRGB, gray.converted(toChannels: 3))
        XCTAssertEqual(try ImageIO.read(dir.appendingPathComponent("g.png"), channels: 0).channels, 1)
        let info = try ImageIO.inspect(dir.appendingPathComponent("a.png"))
        XCTAssertEqual(info, ImageInfo(format: .png, size: Size(height: 20, width: 16), channels: 3, warning: nil))
    }

    func testRGBAAlphaIsDroppedAndTruncationIsAnError() throws {
        // Opaque red, fully transparent blue, half-transparent black: the colours stay, as in
        // Pillow's convert("RGB") (no compositing onto a background).
        var p = rgbaPNG([255, 0, 0, 255, 0, 0, 255, 0, 0, 0, 0, 128], width: 3)
        XCTAssertEqual(try ImageIO.decode(p, channels: 3).pixels, [255, 0, 0, 0, 0, 255, 0, 0, 0])
        p.removeLast(20)  // truncated
        assertDataError(.corrupt, ["<memory>", "PNG"]) { try ImageIO.decode(p) }
    }

    func testJPEGRoundTripIsClose() throws {
        let img = gradientImage(64, 48)
        let bytes = try ImageIO.encodeJPEG(img, quality: 95)
        XCTAssertEqual(ImageFormat.sniff(bytes), .jpeg)
        let back = try ImageIO.decode(bytes)
        XCTAssertEqual(back.size, img.size)
        let diffs = zip(img.pixels, back.pixels).map { abs(Int($0) - Int($1)) }
        let mean = Double(diffs.reduce(0, +)) / Double(diffs.count)
        XCTAssertLessThan(mean, 2.0, "JPEG q95 of a smooth image should be within ~1 level on average")
        XCTAssertLessThan(diffs.max()!, 24)
        XCTAssertNotEqual(back, img, "JPEG is lossy; an exact match means the test image is too easy")
        // Gray JPEG keeps one channel.
        let g = try ImageIO.decode(ImageIO.encodeJPEG(img.converted(toChannels: 1)), channels: 0)
        XCTAssertEqual(g.channels, 1)
        let h = try ImageIO.decode(bytes, channels: 0)
        XCTAssertEqual(h.channels, 3)
    }

    func testMissingCorruptAndUnsupportedFilesAreNamed() throws {
        let dir = try scratchDirectory(self)
        let missing = dir.appendingPathComponent("nope.jpg")
        assertDataError(.missing, ["nope.jpg", "no such file"]) { try ImageIO.read(missing) }

        let jpeg = try ImageIO.encodeJPEG(gradientImage(64, 48))
        let truncated = dir.appendingPathComponent("cut.jpg")
        try ImageIO.writeBytes(Array(jpeg.prefix(jpeg.count / 2)), to: truncated)
        assertDataError(.corrupt, ["cut.jpg", "truncated"]) { try ImageIO.read(truncated) }
        // The header alone still reads; only a full decode finds the damage.
        XCTAssertEqual(try ImageIO.inspect(truncated).size, Size(height: 64, width: 48))
        assertDataError(.corrupt, ["cut.jpg"]) { try ImageIO.inspect(truncated, decode: true) }

        let headerless = dir.appendingPathComponent("bad.jpg")
        try ImageIO.writeBytes([0xFF, 0xD8, 0xFF, 0xE0, 0, 1, 2, 3], to: headerless)
        assertDataError(.corrupt, ["bad.jpg", "JPEG"]) { try ImageIO.read(headerless) }

        let text = dir.appendingPathComponent("text.png")
        try writeText("hello", text)
        assertDataError(.unsupported, ["text.png", "not a PNG or JPEG"]) { try ImageIO.read(text) }

        let empty = dir.appendingPathComponent("empty.png")
        try ImageIO.writeBytes([], to: empty)
        assertDataError(.corrupt, ["empty.png", "empty file"]) { try ImageIO.read(empty) }

        let png = try ImageIO.encodePNG(gradientImage(16, 16))
        var flipped = png
        flipped[png.count / 2] ^= 0xFF  // inside IDAT: CRC or zlib error
        let damaged = dir.appendingPathComponent("damaged.png")
        try ImageIO.writeBytes(flipped, to: damaged)
        assertDataError(.corrupt, ["damaged.png", "PNG"]) { try ImageIO.read(damaged) }

        assertDataError(.unreadable, [dir.path, "not a regular file"]) { try ImageIO.read(dir) }
    }

    func testPaletteLabelMapsKeepTheirIndices() throws {
        let dir = try scratchDirectory(self)
        var labels = Image(height: 10, width: 7, channels: 1)
        for i in 0..<70 { labels.pixels[i] = UInt8(i % 20) }
        let palette: [(UInt8, UInt8, UInt8)] = (0..<20).map { (UInt8($0 * 12), 255 - UInt8($0 * 12), 7) }
        let url = dir.appendingPathComponent("parse.png")
        try ImageIO.writeBytes(ImageIO.encodePalettePNG(indices: labels, palette: palette), to: url)
        XCTAssertEqual(try ImageIO.readLabels(url), labels)
        // Read as a picture, the same file gives the palette colours instead.
        let colours = try ImageIO.read(url)
        XCTAssertEqual(colours[0, 3, 0], palette[3].0)
        XCTAssertEqual(colours[0, 3, 1], palette[3].1)
        // Gray label maps give their values; RGB and JPEG ones are refused.
        let gray = dir.appendingPathComponent("gray.png")
        try ImageIO.write(labels, to: gray)
        XCTAssertEqual(try ImageIO.readLabels(gray), labels)
        let rgb = dir.appendingPathComponent("rgb.png")
        try ImageIO.write(gradientImage(8, 8), to: rgb)
        assertDataError(.unsupported, ["rgb.png", "RGB"]) { try ImageIO.readLabels(rgb) }
        let jpg = dir.appendingPathComponent("labels.jpg")
        try ImageIO.write(labels, to: jpg)
        assertDataError(.unsupported, ["labels.jpg", "JPEG"]) { try ImageIO.readLabels(jpg) }
        let cut = dir.appendingPathComponent("cut.png")
        let bytes = try ImageIO.readBytes(url)
        try ImageIO.writeBytes(Array(bytes.prefix(bytes.count - 30)), to: cut)
        assertDataError(.corrupt, ["cut.png"]) { try ImageIO.readLabels(cut) }
    }

    func testTensorConversions() {
        var img = Image(height: 1, width: 3, channels: 3)
        img.pixels = [0, 255, 128, 255, 0, 0, 64, 64, 64]
        let t = img.tensor(.signed)
        XCTAssertEqual(t.shape, [3, 1, 3])
        XCTAssertEqual(t.scalars[0], -1)
        XCTAssertEqual(t.scalars[1], 1)           // channel 0, pixel 1
        XCTAssertEqual(t.scalars[3], 1)           // channel 1, pixel 0
        XCTAssertEqual(t.scalars[6], 128 / 127.5 - 1, accuracy: 1e-6)
        XCTAssertEqual(Image(tensor: t), img, "[-1, 1] → 8 bits must invert the normalisation exactly")
        XCTAssertEqual(Image(tensor: img.tensor(.unit), range: .unit), img)
        // Masks: ≥ 128 is 1 (JPEG-noisy masks still threshold cleanly).
        let m = Image(height: 1, width: 4, channels: 1, pixels: [0, 127, 128, 250])
        XCTAssertEqual(m.maskTensor().scalars, [0, 0, 1, 1])
        // Out-of-range floats clamp.
        XCTAssertEqual(Image(tensor: Tensor([-3, 5], shape: [1, 1, 2])).pixels, [0, 255])
    }
}
